"""The executor against the engine and captum: fused groups, targets, baselines, the cache,
error isolation and post-processing, on small models built by tests/serving_fixture.py."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from PIL import Image

from service.attribution import DeepLift, GradientShap, IntegratedGradients
from service.runtime import (
    AlgorithmEntry,
    AlgorithmTable,
    BaselineKind,
    BaselineSpec,
    Executor,
    ExplainError,
    ImagePayload,
    InvalidInput,
    LimitExceeded,
    Limits,
    ModelError,
    OutputOptions,
    Request,
    Response,
    TabularPayload,
    TargetKind,
    TargetSpec,
    TensorPayload,
    UnknownAlgorithm,
    default_table,
    load_spec,
)
from service.runtime.loader import load_model
from service.runtime.request import LayerSelector
from tests.serving_fixture import tiny_image, tiny_tabular


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tiny_image(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def tab_dir(tmp_path_factory):
    return tiny_tabular(tmp_path_factory.mktemp("models"))


@pytest.fixture()
def ex(image_dir):
    spec = load_spec(image_dir / "spec.yaml")
    return Executor(load_model(spec, image_dir), spec, image_dir)


@pytest.fixture()
def tab(tab_dir):
    spec = load_spec(tab_dir / "spec.yaml")
    return Executor(load_model(spec, tab_dir), spec, tab_dir)


def xs(n: int, seed: int = 0) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.random((1, 8, 8), dtype=np.float64).astype(np.float32) for _ in range(n)]


def req(x: np.ndarray, explain: bool = True, **kw) -> Request:
    return Request(inputs=TensorPayload(x), explain=explain, **kw)


def ok(outcome) -> Response:
    assert isinstance(outcome, Response), outcome
    return outcome


def test_prediction_matches_the_model(ex):
    inputs = xs(3)
    out = ex.run([req(x, explain=False) for x in inputs])
    logits = ex.model(torch.from_numpy(np.stack(inputs))).detach()
    probs = torch.softmax(logits.double(), 1)
    for o, lg, pr in zip(out, logits, probs):
        r = ok(o)
        assert r.explanations == []
        assert r.prediction.index == int(lg.argmax())
        assert r.prediction.label == ["zero", "one", "two"][int(lg.argmax())]
        assert r.prediction.probability == pytest.approx(float(pr.max()), rel=1e-6)
        np.testing.assert_allclose(r.prediction.output, lg.numpy(), rtol=1e-6)


def test_fused_integrated_gradients_equal_engine_per_request(ex):
    inputs = xs(4)
    targets = [TargetSpec(TargetKind.PREDICTED), TargetSpec(TargetKind.INDEX, index=2),
               TargetSpec(TargetKind.LABEL, label="one"), TargetSpec(TargetKind.TOP_K, k=2)]
    out = [ok(o) for o in ex.run([req(x, target=t) for x, t in zip(inputs, targets)])]
    assert all(r.timings.fused_group_size == 4 for r in out)
    assert [len(r.explanations) for r in out] == [1, 1, 1, 2]
    assert out[1].explanations[0].target == 2 and out[2].explanations[0].target == 1
    ig = IntegratedGradients(ex.model)
    for x, r in zip(inputs, out):
        t = torch.from_numpy(x)[None]
        logits = ex.model(t)[0].detach()
        if r is out[0]:
            assert r.explanations[0].target == int(logits.argmax())
        if r is out[3]:
            assert [e.target for e in r.explanations] == logits.topk(2).indices.tolist()
        for e in r.explanations:
            want, delta = ig.attribute(t, target=e.target, n_steps=16,
                                       return_convergence_delta=True)
            np.testing.assert_allclose(e.attributions, want[0].detach().numpy(),
                                       rtol=1e-4, atol=1e-6)
            assert e.approximation_error == pytest.approx(float(delta), abs=1e-4)
            assert e.instance_output == pytest.approx(float(logits[e.target]), rel=1e-5)
            zero = ex.model(torch.zeros(1, 1, 8, 8))[0, e.target].detach()
            assert e.baseline_output == pytest.approx(float(zero), rel=1e-5)


def test_matches_captum(ex):
    from captum.attr import IntegratedGradients as CaptumIG

    x = xs(1)[0]
    r = ok(ex.run([req(x, params={"n_steps": 24, "method": "riemann_trapezoid"},
                      target=TargetSpec(TargetKind.INDEX, index=1))])[0])
    want = CaptumIG(ex.model).attribute(torch.from_numpy(x)[None], target=1, n_steps=24,
                                        method="riemann_trapezoid")
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-4, atol=1e-6)


def test_groups_split_on_algorithm_and_params(ex):
    inputs = xs(5)
    reqs = [req(inputs[0]), req(inputs[1]), req(inputs[2], params={"n_steps": 8}),
            req(inputs[3], algorithm="Saliency"), req(inputs[4], explain=False)]
    out = [ok(o) for o in ex.run(reqs)]
    assert [r.timings.fused_group_size for r in out] == [2, 2, 1, 1, 0]
    assert [r.algorithm for r in out] == ["IntegratedGradients"] * 3 + ["Saliency", ""]


def test_mixed_batch_each_caller_gets_its_kind(ex):
    inputs = xs(6)
    kinds = [True, False, True, False, False, True]
    out = [ok(o) for o in ex.run([req(x, explain=k) for x, k in zip(inputs, kinds)])]
    assert [bool(r.explanations) for r in out] == kinds


def test_bad_request_fails_alone(ex):
    inputs = xs(4)
    reqs = [req(inputs[0]), req(np.zeros((3, 3), np.float32)),
            req(inputs[2], algorithm="Nope"), req(inputs[3], params={"n_steps": 10_000})]
    out = ex.run(reqs)
    ok(out[0])
    assert isinstance(out[1], InvalidInput) and out[1].field == "inputs.tensor.shape"
    assert isinstance(out[2], UnknownAlgorithm) and out[2].field == "algorithm"
    assert "IntegratedGradients" in out[2].allowed and "Saliency" in out[2].allowed
    assert isinstance(out[3], LimitExceeded) and out[3].field == "params.n_steps"
    assert "64" in str(out[3])  # the spec's max_n_steps


def test_perturbation_features_are_held_to_max_features(image_dir):
    spec = load_spec(image_dir / "spec.yaml")
    limits = dataclasses.replace(Limits.build(spec), max_features=20)
    ex = Executor(load_model(spec, image_dir), spec, image_dir, limits=limits)
    x = xs(1)[0]
    out = ex.run([req(x, algorithm="FeatureAblation", params={"superpixel": 1}),   # 64 pixels
                  req(x, algorithm="FeatureAblation", params={"superpixel": 2}),   # 16 patches
                  req(x, algorithm="FeatureAblation", params={"superpixel": 3})])  # 3 x 3
    assert isinstance(out[0], LimitExceeded) and out[0].field == "params.superpixel"
    assert "64 features" in str(out[0]) and "max_features" in str(out[0])
    assert ok(out[1]).explanations and ok(out[2]).explanations
    assert ex.limits.as_dict()["max_features"] == 20   # what GetModelSpec lists
    # Occlusion: one feature per window position, 7 x 7 at window 2 stride 1 on 8 x 8
    out = ex.run([req(x, algorithm="Occlusion", params={"window": 2, "stride": 1}),
                  req(x, algorithm="Occlusion", params={"window": 2, "stride": 2})])  # 4 x 4
    assert isinstance(out[0], LimitExceeded) and out[0].field == "params.stride"
    assert "49 features" in str(out[0])
    assert ok(out[1]).explanations


@pytest.mark.parametrize("shape, window, stride", [((3, 10, 9), 2, 1), ((3, 10, 9), 3, 2),
                                                   ((3, 10, 9), 4, 3), ((3, 10, 9), 10, 1),
                                                   ((1, 8, 8), 5, 5), ((13,), 3, 2)])
def test_occlusion_windows_counts_the_engines_forwards(shape, window, stride):
    from service.attribution import Occlusion
    from service.runtime.algorithms.perturbation import occlusion_windows

    rows = [0]
    linear = torch.nn.Linear(int(np.prod(shape)), 2)

    def forward(x):
        rows[0] += x.shape[0]
        return linear(x.flatten(1))

    dims = len(shape)
    win = (*shape[:-2], min(window, shape[-2]), min(window, shape[-1])) if dims >= 2 else (
        min(window, shape[0]),)
    strides = (*([1] * (dims - 2)), stride, stride) if dims >= 2 else (stride,)
    Occlusion(forward).attribute(torch.rand(1, *shape), target=0, sliding_window_shapes=win,
                                 strides=strides, perturbations_per_eval=1)
    assert rows[0] - 1 == occlusion_windows(shape, window, stride)  # one forward is the input's


@pytest.mark.parametrize("bad, field", [
    ({"n_steps": 2.5}, "params.n_steps"), ({"n_steps": 0}, "params.n_steps"),
    ({"method": "simpson"}, "params.method"), ({"steps": 3}, "params.steps")])
def test_param_errors_name_the_field(ex, bad, field):
    out = ex.run([req(xs(1)[0], params=bad)])[0]
    assert isinstance(out, InvalidInput) and out.field == field, out


def test_target_errors(ex):
    x = xs(1)[0]
    out = ex.run([req(x, target=TargetSpec(TargetKind.LABEL, label="seven")),
                  req(x, target=TargetSpec(TargetKind.INDEX, index=3)),
                  req(x, target=TargetSpec(TargetKind.TOP_K, k=4))])
    assert out[0].field == "target.label" and out[0].allowed == ("zero", "one", "two")
    assert out[1].field == "target.index"
    assert isinstance(out[2], LimitExceeded) and out[2].field == "target.top_k"


def test_engine_failure_in_fused_group_is_isolated(ex):
    calls = []

    def run(engine, inputs, baselines, targets, params, chunk_rows):
        calls.append(inputs.shape[0])
        if (inputs[:, 0, 0, 0] == 0.5).any():
            raise RuntimeError("poisoned row")
        return inputs * 2

    table = AlgorithmTable([*default_table().values(),
                            AlgorithmEntry(name="_Doubler", build=lambda ctx, p: None, run=run)])
    spec = dataclasses.replace(ex.spec, algorithms=(*ex.spec.algorithms, "_Doubler"))
    ex = Executor(ex.model, spec, ".", table=table)
    inputs = xs(3)
    inputs[1][0, 0, 0] = 0.5
    out = ex.run([req(x, algorithm="_Doubler") for x in inputs])
    assert calls == [3, 1, 1, 1]
    assert isinstance(out[1], ModelError) and "poisoned row" in str(out[1])
    for i in (0, 2):
        np.testing.assert_allclose(ok(out[i]).explanations[0].attributions, inputs[i] * 2)


def test_baselines_and_cache(ex, image_dir):
    x = xs(1)[0]
    mean = torch.load(image_dir / "mean.pt")
    before = ex.cache.stats()
    specs = [BaselineSpec(BaselineKind.NAMED, name="mean"), BaselineSpec(BaselineKind.DATASET_MEAN),
             BaselineSpec(BaselineKind.CONSTANT, value=0.25),
             BaselineSpec(BaselineKind.UNIFORM, low=0.0, high=1.0, seed=7),
             BaselineSpec(BaselineKind.TENSOR, array=mean.numpy()[0]),
             BaselineSpec(BaselineKind.BLUR, sigma=1.0)]
    out = [ok(o) for o in ex.run([req(x, baseline=b, target=TargetSpec(TargetKind.INDEX,
                                                                        index=0))
                                  for b in specs])]
    g = torch.Generator().manual_seed(7)
    uniform = torch.rand((1, 1, 8, 8), generator=g, dtype=torch.float64).float()
    wanted = [mean, mean, torch.full((1, 1, 8, 8), 0.25), uniform, mean]
    ig = IntegratedGradients(ex.model)
    t = torch.from_numpy(x)[None]
    for r, b in zip(out, wanted):
        e = r.explanations[0]
        want = ig.attribute(t, baselines=b, target=0, n_steps=16)
        np.testing.assert_allclose(e.attributions, want[0].detach().numpy(), rtol=1e-4,
                                   atol=1e-6)
        assert e.baseline_output == pytest.approx(float(ex.model(b)[0, 0].detach()), rel=1e-5)
    # IG against the blurred baseline is complete too (the cache does not hold it: input-dependent)
    assert abs(out[5].explanations[0].approximation_error) < 0.05
    assert out[0].timings.fused_group_size == 6  # per-example baselines fuse
    after = ex.cache.stats()
    # named "mean" and dataset_mean share a key; the blurred baseline depends on the input
    assert after.misses - before.misses == 4 and after.hits - before.hits == 1
    again = ok(ex.run([req(x, baseline=specs[0])])[0])
    assert again.timings.baseline_cache_hit
    assert ex.cache.stats().hits == after.hits + 1


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5, 6.0, 40.0])
def test_blur_is_the_edge_repeating_weighted_average(sigma):
    """Every blurred pixel is the normalised Gaussian average of the input with its edge
    pixels repeated outward, written out here pixel by pixel; also for kernels wider than
    the image (the blur once cut such kernels at the image's size without renormalising:
    a constant image came out darker, and wide-blur baselines were wrong)."""
    from service.runtime.baselines import gaussian_blur

    x = torch.rand(2, 3, 5, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    r = max(1, int(np.ceil(3 * sigma)))
    w = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    w /= w.sum()
    a = x.numpy()
    want = np.zeros_like(a)
    for i in range(5):
        for j in range(7):
            for di, wi in zip(range(-r, r + 1), w):
                for dj, wj in zip(range(-r, r + 1), w):
                    want[..., i, j] += wi * wj * a[..., min(max(i + di, 0), 4),
                                                   min(max(j + dj, 0), 6)]
    np.testing.assert_allclose(gaussian_blur(x, sigma).numpy(), want, rtol=1e-10, atol=1e-12)
    flat = torch.full((1, 1, 5, 7), 0.7, dtype=torch.float64)
    torch.testing.assert_close(gaussian_blur(flat, sigma), flat, rtol=0, atol=1e-12)


def test_baseline_errors(ex):
    x = xs(1)[0]
    out = ex.run([req(x, baseline=BaselineSpec(BaselineKind.NAMED, name="nope")),
                  req(x, baseline=BaselineSpec(BaselineKind.TENSOR,
                                               array=np.zeros((2, 2), np.float32))),
                  req(x, algorithm="DeepLiftShap",
                      baseline=BaselineSpec(BaselineKind.ZEROS))])
    assert out[0].field == "baseline.named" and "mean" in out[0].allowed
    assert out[1].field == "baseline.tensor"
    assert out[2].field == "baseline" and "reference" in out[2].allowed


def test_reference_set_methods(ex, image_dir):
    x = xs(2)
    refs = torch.load(image_dir / "reference.pt")
    params = {"n_samples": 8, "seed": 3}
    a = [ok(o) for o in ex.run([req(v, algorithm="GradientShap", params=params,
                                    target=TargetSpec(TargetKind.INDEX, index=1))
                                for v in x])]
    b = ok(ex.run([req(x[0], algorithm="GradientShap", params=params,
                       target=TargetSpec(TargetKind.INDEX, index=1))])[0])
    np.testing.assert_array_equal(a[0].explanations[0].attributions,
                                  b.explanations[0].attributions)  # seeded per request
    torch.manual_seed(3)
    np.random.seed(3)
    want = GradientShap(ex.model).attribute(torch.from_numpy(x[0])[None], refs, n_samples=8,
                                            target=1)
    np.testing.assert_allclose(b.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-4, atol=1e-6)
    out = ok(ex.run([req(x[0], algorithm="DeepLiftShap",
                         target=TargetSpec(TargetKind.INDEX, index=1))])[0])
    e = out.explanations[0]
    base = ex.model(refs)[:, 1].mean().detach()
    assert e.baseline_output == pytest.approx(float(base), rel=1e-5)
    assert abs(e.approximation_error) < 1e-3  # DeepLiftShap is complete w.r.t. the mean


SEEDED = sorted(n for n, e in default_table().items() if e.stochastic)


@pytest.mark.parametrize("algorithm", SEEDED)
def test_seeded_rows_do_not_depend_on_the_other_targets(ex, image_dir, algorithm):
    """A seeded method's answer for a target is the one it gives for that target alone, from
    the request's seed, whatever else the request asks (topK) and however its rows are sliced
    (max_batch_rows): the seeds once applied to the call, so the random draws of a topK
    request's rows were those of a batch of k, and differed from every single-target answer."""
    x = xs(1, seed=5)[0]
    params = {"seed": 7, **({"n_samples": 6} if algorithm in ("GradientShap",
                                                               "ShapleyValueSampling",
                                                               "KernelShap", "Lime") else {})}
    if default_table()[algorithm].family.value == "neuron":
        params["layer"] = LayerSelector(name="conv", neuron=(1, 2, 3))
    layer = {"layer": params.pop("layer")} if "layer" in params else {}
    top = ok(ex.run([req(x, algorithm=algorithm, params=params, **layer,
                         target=TargetSpec(TargetKind.TOP_K, k=3))])[0])
    sliced = ok(ex.run([req(x, algorithm=algorithm, params=params, max_batch_rows=1, **layer,
                            target=TargetSpec(TargetKind.TOP_K, k=3))])[0])
    assert [e.target for e in top.explanations] == [e.target for e in sliced.explanations]
    for e, f in zip(top.explanations, sliced.explanations):
        alone = ok(ex.run([req(x, algorithm=algorithm, params=params, **layer,
                               target=TargetSpec(TargetKind.INDEX, index=e.target))])[0])
        np.testing.assert_allclose(e.attributions, alone.explanations[0].attributions,
                                   rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(f.attributions, alone.explanations[0].attributions,
                                   rtol=1e-6, atol=1e-7)
    if algorithm == "GradientShap":  # and that is the engine's, seeded with the request's seed
        refs = torch.load(image_dir / "reference.pt")
        for e in top.explanations:
            torch.manual_seed(7)
            np.random.seed(7)
            want = GradientShap(ex.model).attribute(torch.from_numpy(x)[None], refs,
                                                    n_samples=6, target=e.target)
            np.testing.assert_allclose(e.attributions, want[0].detach().numpy(), rtol=1e-5,
                                       atol=1e-6)


def test_every_registered_algorithm_runs(ex):
    x = xs(1)[0]
    names = list(ex.spec.algorithms)
    assert set(names) >= {"IntegratedGradients", "Saliency", "InputXGradient", "DeepLift",
                          "DeepLiftShap", "GradientShap", "NoiseTunnel", "GuidedBackprop",
                          "Deconvolution"}
    family = {n: ex.table[n].family.value for n in names}
    out = ex.run([req(x, algorithm=n, layer=LayerSelector(neuron=(1, 4, 4)))
                  if family[n] == "neuron" else req(x, algorithm=n) for n in names])
    for name, o in zip(names, out):
        r = ok(o)
        assert r.algorithm == name
        a = r.explanations[0].attributions
        shape = (4, 8, 8) if family[name] == "layer" else (1, 8, 8)  # the conv layer's output
        assert a.shape == shape and np.isfinite(a).all() and np.abs(a).sum() > 0, name


def test_deeplift_fused_matches_engine(ex):
    inputs = xs(3)
    out = [ok(o) for o in ex.run([req(x, algorithm="DeepLift") for x in inputs])]
    dl = DeepLift(ex.model)
    for x, r in zip(inputs, out):
        e = r.explanations[0]
        want = dl.attribute(torch.from_numpy(x)[None], target=e.target)
        np.testing.assert_allclose(e.attributions, want[0].detach().numpy(), rtol=1e-4,
                                   atol=1e-6)


def test_image_bytes_and_heatmap(ex):
    pixels = (np.arange(64).reshape(8, 8) * 4).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels, "L").save(buf, format="PNG")
    r = ok(ex.run([Request(inputs=ImagePayload(buf.getvalue()), explain=True,
                           outputs=OutputOptions(heatmap=True, top_features=2))])[0])
    want = ok(ex.run([req((pixels / 255.0).astype(np.float32)[None])])[0])
    np.testing.assert_allclose(r.prediction.output, want.prediction.output, rtol=1e-6)
    png = Image.open(io.BytesIO(r.explanations[0].heatmap_png))
    assert png.format == "PNG" and min(png.size) >= 112
    tops = r.explanations[0].top_features
    a = r.explanations[0].attributions.reshape(-1)
    assert [f.attribution for f in tops] == pytest.approx(sorted(a, key=abs)[::-1][:2])
    bad = ex.run([Request(inputs=ImagePayload(b"\x89PNG\r\n\x1a\nbroken"), explain=False)])[0]
    assert isinstance(bad, InvalidInput) and bad.field == "inputs.image"


def test_image_pixel_limit(image_dir):
    from service.runtime import Limits

    spec = load_spec(image_dir / "spec.yaml")
    ex = Executor(load_model(spec, image_dir), spec, image_dir,
                  limits=Limits.build(spec, env={"EXPLAIN_LIMIT_MAX_IMAGE_PIXELS": "100"}))
    buf = io.BytesIO()
    Image.new("L", (20, 20)).save(buf, format="PNG")
    out = ex.run([Request(inputs=ImagePayload(buf.getvalue()), explain=False)])[0]
    assert isinstance(out, LimitExceeded) and "max_image_pixels" in str(out)


def test_tabular_top_features_and_reasons(tab):
    feats = {"watched:Alien": 1.0, "watched:Heat": 0.0, "genre:scifi": 0.9, "age": 30.0}
    r = ok(tab.run([Request(inputs=TabularPayload(feats), explain=True,
                            target=TargetSpec(TargetKind.INDEX, index=0))])[0])
    e = r.explanations[0]
    scaled = (np.array([1.0, 0.0, 0.9, 30.0]) - [0.5, 0.5, 0.2, 40.0]) / [0.5, 0.5, 0.4, 10.0]
    want = IntegratedGradients(tab.model).attribute(
        torch.tensor(scaled, dtype=torch.float32)[None], target=0)[0].detach().numpy()
    np.testing.assert_allclose(e.attributions, want, rtol=1e-4, atol=1e-6)
    order = np.argsort(-np.abs(want))[:2]
    names = ["watched:Alien", "watched:Heat", "genre:scifi", "age"]
    assert [f.name for f in e.top_features] == [names[i] for i in order]
    assert [f.value for f in e.top_features] == [feats[names[i]] for i in order]
    expected = []
    for i in np.argsort(-want):
        # present, above the (zeros) baseline in model space, and pushing the target up
        if want[i] > 0 and feats[names[i]] != 0 and scaled[i] > 0 and names[i] != "age":
            kind, title = names[i].split(":")
            expected.append(f"because you watched {title}" if kind == "watched"
                            else f"because you like {title}")
    assert e.reasons == expected[:2]
    bad = tab.run([Request(inputs=TabularPayload({"height": 1.0}), explain=False)])[0]
    assert bad.field == "inputs.tabular.features['height']" and "age" in bad.allowed


def test_deadline(ex):
    import time

    r = req(xs(1)[0], deadline_ms=1)
    r.received_at = time.monotonic() - 1.0
    out = ex.run([r])[0]
    assert isinstance(out, ExplainError) and out.field == "deadline_ms"


def test_rows_budget_slices_methods_that_do_not_chunk(image_dir):
    from service.attribution import Saliency
    from service.runtime import Limits

    spec = load_spec(image_dir / "spec.yaml")
    model = load_model(spec, image_dir)
    ex = Executor(model, spec, image_dir,
                  limits=Limits.build(spec, env={"EXPLAIN_LIMIT_MAX_BATCH_ROWS": "2"}))
    seen = []
    handle = model.register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    try:
        inputs = xs(5)
        out = [ok(o) for o in ex.run([req(x, algorithm="Saliency") for x in inputs])]
    finally:
        handle.remove()
    # the one-row pass measuring saved bytes per row (once per executor and input shape),
    # one prediction pass, then engine passes of <= 2 rows
    assert seen == [1, 5, 2, 2, 1]
    assert all(r.timings.fused_group_size == 5 for r in out)
    for x, r in zip(inputs, out):
        want = Saliency(model).attribute(torch.from_numpy(x)[None],
                                         target=r.explanations[0].target)
        np.testing.assert_allclose(r.explanations[0].attributions, want[0].numpy(), rtol=1e-5)


@pytest.mark.parametrize(("algorithm", "superpixel"), [
    ("ShapleyValueSampling", 1), ("ShapleyValueSampling", 4), ("KernelShap", 3)])
def test_group_efficient_methods_report_their_sum_rule(ex, algorithm, superpixel):
    """Shapley value sampling and Kernel SHAP sum, over feature groups (superpixels), to the
    output difference; the served error sums each group once (its elements share its value)."""
    x = xs(1, seed=3)[0]
    params = {"superpixel": superpixel, "n_samples": 8 if algorithm == "ShapleyValueSampling"
              else 64, "seed": 2}
    e = ok(ex.run([req(x, algorithm=algorithm, params=params)])[0]).explanations[0]
    # The oracle: the model's own outputs, group sums read from the returned map by hand.
    a = e.attributions.reshape(1, 8, 8)
    groups = {}
    for r in range(8):
        for c in range(8):
            groups.setdefault((r // superpixel, c // superpixel), a[0, r, c])
    diff = e.instance_output - e.baseline_output
    assert abs(diff) > 1e-3
    assert e.approximation_error == pytest.approx(sum(groups.values()) - diff, abs=1e-6)
    assert abs(e.approximation_error) < 1e-4 * max(1.0, abs(diff))


@pytest.mark.parametrize("algorithm", ["Lime", "FeatureAblation", "Occlusion", "Saliency"])
def test_methods_without_a_sum_rule_report_no_error(ex, algorithm):
    e = ok(ex.run([req(xs(1)[0], algorithm=algorithm)])[0]).explanations[0]
    assert e.approximation_error is None
