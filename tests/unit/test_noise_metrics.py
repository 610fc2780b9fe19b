"""The request options ``noise_tunnel`` and ``outputs.metrics``: parsing and validation, and
served answers equal to the engine called in-process under the same seed (NoiseTunnel over the
method; infidelity / sensitivity_max with the perturbations the proto defines)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from service import attribution as A
from service.metrics import infidelity, sensitivity_max
from service.runtime import (
    AlgorithmEntry,
    AlgorithmTable,
    BaselineKind,
    BaselineSpec,
    DeadlineExceeded,
    Executor,
    InvalidInput,
    LimitExceeded,
    OutputOptions,
    Request,
    Response,
    TabularPayload,
    TargetKind,
    TargetSpec,
    TensorPayload,
    default_table,
    load_spec,
)
from service.runtime.algorithms.perturbation import feature_mask
from service.runtime.loader import load_model
from service.runtime.request import LayerSelector, NoiseTunnelSpec
from service.wire import convert
from service.wire.errors import json_field
from tests.serving_fixture import tiny_image, tiny_tabular


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    return tiny_image(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def ex(image_dir):
    spec = load_spec(image_dir / "spec.yaml")
    return Executor(load_model(spec, image_dir), spec, image_dir)


@pytest.fixture(scope="module")
def tab(tmp_path_factory):
    d = tiny_tabular(tmp_path_factory.mktemp("models"))
    spec = load_spec(d / "spec.yaml")
    return Executor(load_model(spec, d), spec, d)


def image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 8, 8)).astype(np.float32)


def ask(ex: Executor, x: np.ndarray, **kw) -> Response:
    out = ex.run([Request(inputs=TensorPayload(x), explain=True, **kw)])[0]
    assert isinstance(out, Response), out
    return out


def refused(ex: Executor, x: np.ndarray, **kw):
    out = ex.run([Request(inputs=TensorPayload(x), explain=True, **kw)])[0]
    assert not isinstance(out, Response), out
    return out


def seed_all(seed: int) -> None:
    """What the server does before a seeded call (torch's and numpy's global generators)."""
    torch.manual_seed(seed)
    np.random.seed(seed)


def nt(type: str = "smoothgrad", samples: int = 4, stdevs: float | None = 0.1,
       batch: int = 0) -> NoiseTunnelSpec:
    return NoiseTunnelSpec(type, samples, stdevs, batch)


def t(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).unsqueeze(0)  # (1, 1, 8, 8)


# -- parsing ----------------------------------------------------------------------------------

def test_noise_tunnel_and_metrics_parse_from_protobuf_json():
    body = {"inputs": {"tabular": {"features": {"age": 30}}}, "algorithm": "Saliency",
            "noiseTunnel": {"type": "vargrad", "samples": 8, "stdevs": 0.25,
                            "samplesBatchSize": 2},
            "outputs": {"metrics": ["infidelity", "sensitivity"], "metricSamples": 6}}
    r = convert.request_from_dict(body, explain=True)
    assert r.noise_tunnel == NoiseTunnelSpec("vargrad", 8, 0.25, 2)
    assert r.outputs.metrics == ("infidelity", "sensitivity") and r.outputs.metric_samples == 6
    bare = convert.request_from_dict({**body, "noiseTunnel": {}}, explain=True)
    assert bare.noise_tunnel == NoiseTunnelSpec("", 0, None, 0)  # stdevs unset, not 0
    assert convert.request_from_dict({"algorithm": "Saliency"}, True).noise_tunnel is None
    # the serialized path (gRPC) reads the same
    m = convert.pb.ExplainRequest()
    convert.json_format.ParseDict(body, m)
    assert convert.request_from_serialized(m.SerializeToString(), True).noise_tunnel == \
        r.noise_tunnel


def test_metrics_map_round_trips_through_the_wire(ex):
    r = ask(ex, image(), algorithm="Saliency",
            outputs=OutputOptions(metrics=("infidelity",), metric_samples=2))
    back = convert.response_from_proto(convert.response_to_proto(r))
    assert back.explanations[0].metrics == r.explanations[0].metrics
    assert set(r.explanations[0].metrics) == {"infidelity"}
    plain = convert.response_to_json(ask(ex, image(), algorithm="Saliency"))
    assert '"metrics"' not in plain  # no empty map in answers that asked for none


# -- validation -------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, error, field", [
    (nt(type="smooth"), InvalidInput, "noise_tunnel.type"),
    (nt(samples=65), LimitExceeded, "noise_tunnel.samples"),
    (nt(stdevs=-0.5), InvalidInput, "noise_tunnel.stdevs"),
    (nt(stdevs=float("inf")), InvalidInput, "noise_tunnel.stdevs"),
])
def test_bad_noise_tunnel_is_refused_naming_the_field(ex, spec, error, field):
    e = refused(ex, image(), algorithm="Saliency", noise_tunnel=spec)
    assert isinstance(e, error) and e.field == field
    if field.endswith(".type"):
        assert list(e.allowed) == ["smoothgrad", "smoothgrad_sq", "vargrad"]
    assert json_field(e.field) == field.replace("noise_tunnel", "noiseTunnel")


def test_samples_limit_follows_max_nt_samples(ex):
    small = Executor(ex.model, ex.spec, ".", limits=dataclasses.replace(ex.limits,
                                                                        max_nt_samples=3))
    e = refused(small, image(), algorithm="Saliency", noise_tunnel=nt(samples=4))
    assert isinstance(e, LimitExceeded) and "max_nt_samples" in str(e)
    ask(small, image(), algorithm="Saliency", noise_tunnel=nt(samples=3))


def test_seed_param_is_taken_by_every_algorithm_under_a_noise_tunnel_only(ex):
    ask(ex, image(), algorithm="Saliency", params={"seed": 7}, noise_tunnel=nt())
    e = refused(ex, image(), algorithm="Saliency", params={"seed": 7})
    assert isinstance(e, InvalidInput) and e.field == "params.seed"
    e = refused(ex, image(), algorithm="Saliency", params={"seed": -1}, noise_tunnel=nt())
    assert isinstance(e, InvalidInput) and e.field == "params.seed"


def test_noise_tunnel_around_the_noise_tunnel_entry_is_refused(ex):
    e = refused(ex, image(), algorithm="NoiseTunnel", noise_tunnel=nt())
    assert isinstance(e, InvalidInput) and e.field == "noise_tunnel"


def test_unknown_metric_and_too_many_samples_are_refused(ex):
    e = refused(ex, image(), algorithm="Saliency",
                outputs=OutputOptions(metrics=("infidelity", "faithfulness")))
    assert isinstance(e, InvalidInput) and e.field == "outputs.metrics"
    assert list(e.allowed) == ["infidelity", "sensitivity"] and "faithfulness" in str(e)
    e = refused(ex, image(), algorithm="Saliency",
                outputs=OutputOptions(metrics=("infidelity",), metric_samples=17))
    assert isinstance(e, LimitExceeded) and e.field == "outputs.metric_samples"
    assert json_field(e.field) == "outputs.metricSamples"
    assert ex.limits.as_dict()["max_metric_samples"] == 16


# -- noise tunnel: served == engine -----------------------------------------------------------

def test_saliency_under_smoothgrad_equals_the_engine(ex):
    x = image(1)
    r = ask(ex, x, algorithm="Saliency", params={"seed": 3}, noise_tunnel=nt(samples=8),
            target=TargetSpec(TargetKind.INDEX, index=2))
    seed_all(3)
    want = A.NoiseTunnel(A.Saliency(ex.model)).attribute(
        t(x), nt_type="smoothgrad", nt_samples=8, stdevs=0.1, target=2, abs=True)
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-6, atol=1e-7)
    assert r.timings.fused_group_size == 1


def test_integrated_gradients_under_vargrad_equals_the_engine_and_has_no_error(ex):
    x = image(2)
    r = ask(ex, x, algorithm="IntegratedGradients", params={"seed": 5},
            noise_tunnel=nt("vargrad", samples=3, stdevs=0.2))
    e = r.explanations[0]
    seed_all(5)
    want = A.NoiseTunnel(A.IntegratedGradients(ex.model)).attribute(
        t(x), nt_type="vargrad", nt_samples=3, stdevs=0.2, target=e.target,
        baselines=torch.zeros(1, 1, 8, 8), n_steps=16)  # the spec's n_steps
    np.testing.assert_allclose(e.attributions, want[0].detach().numpy(), rtol=1e-5, atol=1e-8)
    assert e.approximation_error is None  # no sum rule under a noise tunnel
    plain = ask(ex, x, algorithm="IntegratedGradients").explanations[0]
    assert plain.approximation_error is not None


def test_perturbation_and_cam_methods_under_a_noise_tunnel_equal_the_engine(ex):
    x = image(3)
    mask = feature_mask(t(x), 4)
    fa = ask(ex, x, algorithm="FeatureAblation", noise_tunnel=nt("smoothgrad_sq", 3, 0.1))
    seed_all(0)  # the default seed
    want = A.NoiseTunnel(A.FeatureAblation(ex.model)).attribute(
        t(x), nt_type="smoothgrad_sq", nt_samples=3, stdevs=0.1, target=fa.explanations[0].target,
        baselines=torch.zeros(1, 1, 8, 8), feature_mask=mask)
    np.testing.assert_allclose(fa.explanations[0].attributions, want[0].numpy(), rtol=1e-6,
                               atol=1e-7)

    ks = ask(ex, x, algorithm="KernelShap", params={"seed": 2, "n_samples": 24},
             noise_tunnel=nt(samples=2))
    seed_all(2)
    want = A.NoiseTunnel(A.KernelShap(ex.model)).attribute(
        t(x), nt_type="smoothgrad", nt_samples=2, stdevs=0.1, target=ks.explanations[0].target,
        baselines=torch.zeros(1, 1, 8, 8), feature_mask=mask, n_samples=24)
    np.testing.assert_allclose(ks.explanations[0].attributions, want[0].numpy(), rtol=1e-5,
                               atol=1e-6)

    cam = ask(ex, x, algorithm="LayerGradCam", noise_tunnel=nt(samples=3, stdevs=0.3))
    seed_all(0)
    layer_map = A.NoiseTunnel(A.LayerGradCam(ex.model, ex.model.conv)).attribute(
        t(x), nt_type="smoothgrad", nt_samples=3, stdevs=0.3,
        target=cam.explanations[0].target, relu_attributions=True)
    up = A.LayerAttribution.interpolate(layer_map, (8, 8), "bilinear")  # as served
    np.testing.assert_allclose(cam.explanations[0].attributions, up[0].detach().numpy(),
                               rtol=1e-5, atol=1e-7)


def test_reference_set_method_draws_one_reference_per_noisy_copy(ex, image_dir):
    x = image(4)
    r = ask(ex, x, algorithm="GradientShap", params={"seed": 9, "n_samples": 4},
            baseline=BaselineSpec(BaselineKind.REFERENCE_SET, name="reference"),
            noise_tunnel=nt(samples=3, stdevs=0.05))
    refs = torch.load(image_dir / "reference.pt")  # (6, 1, 8, 8)
    seed_all(9)
    want = A.NoiseTunnel(A.GradientShap(ex.model)).attribute(
        t(x), nt_type="smoothgrad", nt_samples=3, stdevs=0.05, draw_baseline_from_distrib=True,
        target=r.explanations[0].target, baselines=refs, n_samples=4)
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-5, atol=1e-7)


def test_each_target_under_a_noise_tunnel_is_its_own_seeded_call(ex):
    """topK under a tunnel: each target's answer is the tunnel's call for that target alone,
    from the request's seed (not a share of one call's random draws), so it equals asking for
    that target by index."""
    x = image(5)
    r = ask(ex, x, algorithm="Saliency", noise_tunnel=nt(samples=4, batch=2),
            target=TargetSpec(TargetKind.TOP_K, k=2))
    for e in r.explanations:
        seed_all(0)
        want = A.NoiseTunnel(A.Saliency(ex.model)).attribute(
            t(x), nt_type="smoothgrad", nt_samples=4, nt_samples_batch_size=2, stdevs=0.1,
            target=e.target, abs=True)
        np.testing.assert_allclose(e.attributions, want[0].detach().numpy(), rtol=1e-6,
                                   atol=1e-7)
        alone = ask(ex, x, algorithm="Saliency", noise_tunnel=nt(samples=4, batch=2),
                    target=TargetSpec(TargetKind.INDEX, index=e.target))
        np.testing.assert_array_equal(alone.explanations[0].attributions, e.attributions)


def test_the_noise_tunnel_entry_equals_the_engine(ex):
    """The compatibility entry runs through the same tunnel."""
    x = image(6)
    r = ask(ex, x, algorithm="NoiseTunnel",
            params={"base": "IntegratedGradients", "nt_type": "smoothgrad", "nt_samples": 3,
                    "stdevs": 0.1, "base_n_steps": 8, "seed": 4})
    seed_all(4)
    want = A.NoiseTunnel(A.IntegratedGradients(ex.model)).attribute(
        t(x), nt_type="smoothgrad", nt_samples=3, stdevs=0.1, n_steps=8,
        target=r.explanations[0].target, baselines=torch.zeros(1, 1, 8, 8))
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-5, atol=1e-8)


def test_every_enabled_algorithm_works_under_a_noise_tunnel(ex):
    """Without noise (stdevs 0), smoothgrad is the method itself and vargrad is 0, for every
    deterministic entry; every entry answers finite attributions of the shape it answers without
    the tunnel (the input's, or the layer's for the layer family; neuron methods on a neuron of
    the conv layer)."""
    x = image(7)
    for name in ex.spec.algorithms:
        if name == "NoiseTunnel":
            continue
        entry = ex.table[name]
        kw = ({"layer": LayerSelector(name="conv", neuron=(1, 2, 3))}
              if entry.family.value == "neuron" else {})
        zero = ask(ex, x, algorithm=name, noise_tunnel=nt(samples=2, stdevs=0.0), **kw)
        a = zero.explanations[0].attributions
        plain = ask(ex, x, algorithm=name, **kw).explanations[0].attributions
        assert a.shape == plain.shape and np.isfinite(a).all(), name
        if entry.stochastic or entry.baselines.value == "reference_set":
            continue  # random draws differ with and without the tunnel
        np.testing.assert_allclose(a, plain, rtol=1e-5, atol=1e-6, err_msg=name)
        var = ask(ex, x, algorithm=name, noise_tunnel=nt("vargrad", samples=2, stdevs=0.0), **kw)
        np.testing.assert_allclose(var.explanations[0].attributions, 0, atol=1e-6, err_msg=name)


def test_an_entry_with_its_own_run_function_is_tunnelled_inside_it(ex):
    """A test table's entry that post-processes its engine's answer: the tunnel wraps the
    engine object, so the post-processing applies to the tunnelled attributions."""
    def run(engine, inputs, baselines, targets, params, chunk_rows):
        return 2 * engine.attribute(inputs, target=targets, abs=False)

    table = AlgorithmTable([*default_table().values(),
                            AlgorithmEntry(name="_TwiceGradient", engine=A.Saliency, run=run)])
    spec = dataclasses.replace(ex.spec, algorithms=(*ex.spec.algorithms, "_TwiceGradient"))
    mine = Executor(ex.model, spec, ".", table=table)
    x = image(8)
    r = ask(mine, x, algorithm="_TwiceGradient", params={"seed": 1}, noise_tunnel=nt(samples=5))
    seed_all(1)
    want = 2 * A.NoiseTunnel(A.Saliency(ex.model)).attribute(
        t(x), nt_samples=5, stdevs=0.1, target=r.explanations[0].target, abs=False)
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-6, atol=1e-7)


def test_noise_tunnel_requests_are_not_fused_and_answer_as_alone(ex):
    x1, x2 = image(10), image(11)
    reqs = [Request(inputs=TensorPayload(x), explain=True, algorithm="InputXGradient",
                    noise_tunnel=nt(samples=3)) for x in (x1, x2)]
    together = ex.run(reqs)
    for r, x in zip(together, (x1, x2)):
        assert isinstance(r, Response) and r.timings.fused_group_size == 1
        alone = ask(ex, x, algorithm="InputXGradient", noise_tunnel=nt(samples=3))
        np.testing.assert_array_equal(r.explanations[0].attributions,
                                      alone.explanations[0].attributions)


@pytest.mark.parametrize("kind, signed", [("smoothgrad", True), ("smoothgrad_sq", False),
                                          ("vargrad", False)])
def test_reasons_follow_the_noise_tunnel_type(tab, kind, signed):
    payload = TabularPayload({"watched:Alien": 1.0, "genre:scifi": 1.0, "age": 30.0})
    r = tab.run([Request(inputs=payload, explain=True, algorithm="IntegratedGradients",
                         noise_tunnel=nt(kind, 3, 0.05))])[0]
    assert isinstance(r, Response)
    e = r.explanations[0]
    if signed:
        assert e.reasons_note == ""
    else:
        assert e.reasons == [] and kind in e.reasons_note and "IntegratedGradients" in \
            e.reasons_note
        assert (e.attributions >= -1e-7).all()  # magnitudes


# -- metrics: served == engine ----------------------------------------------------------------

def spread(x: torch.Tensor) -> float:
    return float(x.double().std())


def gaussian(sigma: float):
    def perturb(inputs):
        noise = sigma * torch.randn(inputs.shape, dtype=inputs.dtype)
        return noise, inputs - noise
    return perturb


def test_metrics_of_saliency_equal_infidelity_and_sensitivity_max_in_process(ex):
    x = image(12)
    r = ask(ex, x, algorithm="Saliency",
            outputs=OutputOptions(metrics=("sensitivity", "infidelity"), metric_samples=5))
    e = r.explanations[0]
    attr = torch.from_numpy(e.attributions).unsqueeze(0)
    s = spread(t(x))
    seed_all(0)
    inf = infidelity(ex.model, gaussian(0.1 * s), t(x), attr, target=[e.target],
                     n_perturb_samples=5)
    seed_all(0)
    sens = sensitivity_max(A.Saliency(ex.model).attribute, t(x), perturb_radius=0.02 * s,
                           n_perturb_samples=5, target=[e.target], abs=True)
    assert set(e.metrics) == {"infidelity", "sensitivity"}
    assert e.metrics["infidelity"] == pytest.approx(float(inf), rel=1e-5, abs=1e-9)
    assert e.metrics["sensitivity"] == pytest.approx(float(sens), rel=1e-5, abs=1e-9)
    assert e.metrics["sensitivity"] > 0 and e.metrics["infidelity"] > 0


def test_metrics_of_a_seeded_stochastic_method_with_a_reference_set(ex, image_dir):
    x = image(13)
    r = ask(ex, x, algorithm="GradientShap", params={"seed": 6, "n_samples": 3},
            baseline=BaselineSpec(BaselineKind.REFERENCE_SET, name="reference"),
            outputs=OutputOptions(metrics=("infidelity", "sensitivity"), metric_samples=3),
            target=TargetSpec(TargetKind.TOP_K, k=2))
    refs = torch.load(image_dir / "reference.pt")
    targets = [e.target for e in r.explanations]
    rows = t(x).repeat(2, 1, 1, 1)
    attrs = torch.from_numpy(np.stack([e.attributions for e in r.explanations]))
    s = spread(t(x))
    seed_all(6)
    inf = infidelity(ex.model, gaussian(0.1 * s), rows, attrs, target=targets,
                     n_perturb_samples=3)
    gs = A.GradientShap(ex.model)
    seed_all(6)
    sens = sensitivity_max(lambda inp, target: gs.attribute(inp, refs, n_samples=3,
                                                            target=target),
                           rows, perturb_radius=0.02 * s, n_perturb_samples=3, target=targets)
    for e, i, v in zip(r.explanations, inf.tolist(), sens.tolist()):
        assert e.metrics["infidelity"] == pytest.approx(i, rel=1e-5, abs=1e-9)
        assert e.metrics["sensitivity"] == pytest.approx(v, rel=1e-5, abs=1e-9)


def test_sensitivity_reruns_the_noise_tunnel_too(ex):
    x = image(14)
    r = ask(ex, x, algorithm="DeepLift", params={"seed": 2}, noise_tunnel=nt(samples=2),
            outputs=OutputOptions(metrics=("sensitivity",), metric_samples=2))
    e = r.explanations[0]
    tunnel = A.NoiseTunnel(A.DeepLift(ex.model))
    seed_all(2)
    sens = sensitivity_max(
        lambda inp, target: tunnel.attribute(inp, nt_samples=2, stdevs=0.1, target=target,
                                             baselines=torch.zeros(1, 1, 8, 8)),
        t(x), perturb_radius=0.02 * spread(t(x)), n_perturb_samples=2, target=[e.target])
    assert e.metrics == {"sensitivity": pytest.approx(float(sens), rel=1e-5, abs=1e-9)}


def test_the_deadline_covers_the_metric_passes(ex, monkeypatch):
    import time

    from service.runtime import metrics

    real = metrics.infidelity

    def slow(*args, **kwargs):
        time.sleep(0.4)
        return real(*args, **kwargs)  # its first forward pass meets the deadline hook

    ask(ex, image(), algorithm="Saliency")  # warm
    monkeypatch.setattr(metrics, "infidelity", slow)
    e = refused(ex, image(), algorithm="Saliency", deadline_ms=300,
                outputs=OutputOptions(metrics=("infidelity",)))
    assert isinstance(e, DeadlineExceeded) and "metrics" in str(e)


def test_gradient_shap_keeps_its_own_stdevs_at_zero_under_a_noise_tunnel(ex):
    e = refused(ex, image(), algorithm="GradientShap", params={"stdevs": 0.5},
                baseline=BaselineSpec(BaselineKind.REFERENCE_SET, name="reference"),
                noise_tunnel=nt())
    assert isinstance(e, InvalidInput) and e.field == "params.stdevs"


def test_client_builds_the_noise_tunnel_and_metrics_fields():
    from service.client import build_request

    m = build_request("tiny", tensor=image(), algorithm="Saliency",
                      noise_tunnel={"type": "vargrad", "samples": 8, "stdevs": 0.1},
                      metrics=["infidelity"], metric_samples=3, outputs={"heatmap": True})
    r = convert.request_from_serialized(m.SerializeToString(), True)
    assert r.noise_tunnel == NoiseTunnelSpec("vargrad", 8, 0.1, 0)
    assert r.outputs.metrics == ("infidelity",) and r.outputs.metric_samples == 3
    assert r.outputs.heatmap
    assert build_request("tiny", tensor=image(), noise_tunnel="smoothgrad_sq").noise_tunnel.type \
        == "smoothgrad_sq"
    assert not build_request("tiny", tensor=image()).HasField("noise_tunnel")


def test_every_enabled_algorithm_gets_both_metrics(ex):
    """Both metrics for every input-shaped answer; sensitivity only for the layer family (its
    attributions are not in the input's shape, which infidelity needs: refused up front)."""
    x = image(15)
    for name in ex.spec.algorithms:
        family = ex.table[name].family.value
        kw = {"layer": LayerSelector(name="conv", neuron=(1, 2, 3))} if family == "neuron" else {}
        names = ("sensitivity",) if family == "layer" else ("infidelity", "sensitivity")
        if family == "layer":
            err = refused(ex, x, algorithm=name, outputs=OutputOptions(metrics=("infidelity",)))
            assert err.field == "outputs.metrics" and list(err.allowed) == ["sensitivity"], name
        r = ask(ex, x, algorithm=name, outputs=OutputOptions(metrics=names, metric_samples=1),
                **kw)
        m = r.explanations[0].metrics
        assert set(m) == set(names), name
        assert all(np.isfinite(v) and v >= 0 for v in m.values()), (name, m)


def test_layer_and_neuron_methods_under_a_noise_tunnel_equal_the_engine(ex):
    """The tunnel wraps the layer-bound engine; the layer keywords reach the inner method."""
    x = image(21)
    r = ask(ex, x, algorithm="LayerIntegratedGradients", params={"n_steps": 8, "seed": 3},
            layer=LayerSelector(name="conv"), noise_tunnel=nt(samples=3, stdevs=0.2))
    seed_all(3)
    want = A.NoiseTunnel(A.LayerIntegratedGradients(ex.model, ex.model.conv)).attribute(
        t(x), nt_type="smoothgrad", nt_samples=3, stdevs=0.2, n_steps=8,
        target=r.explanations[0].target, baselines=torch.zeros(1, 1, 8, 8))
    assert r.explanations[0].attributed_to == "layer_output"
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-5, atol=1e-7)
    r = ask(ex, x, algorithm="NeuronGradient", params={"seed": 5},
            layer=LayerSelector(name="conv", neuron=(2, 3, 4)),
            noise_tunnel=nt("smoothgrad_sq", samples=4, stdevs=0.3))
    seed_all(5)
    want = A.NoiseTunnel(A.NeuronGradient(ex.model, ex.model.conv)).attribute(
        t(x), nt_type="smoothgrad_sq", nt_samples=4, stdevs=0.3, neuron_selector=(2, 3, 4))
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-5, atol=1e-7)
