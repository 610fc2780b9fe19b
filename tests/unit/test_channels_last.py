"""Image models run channels-last in the executor (executor.prefers_channels_last): every
served algorithm gives the same answer as with the model's contiguous (NCHW) weights, up to float
rounding; tabular models are left as they are."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.runtime import Executor, Request, TensorPayload, load_spec
from service.runtime.algorithms import Family
from service.runtime.loader import load_model
from service.runtime.request import LayerSelector
from tests.serving_fixture import tiny_image, tiny_tabular


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tiny_image(tmp_path_factory.mktemp("models"))
    spec = load_spec(d / "spec.yaml")
    return (Executor(load_model(spec, d), spec, d),
            Executor(load_model(spec, d), spec, d, channels_last=False))


def test_image_models_run_channels_last_and_tabular_do_not(pair, tmp_path) -> None:
    auto, plain = pair
    assert auto.channels_last and not plain.channels_last
    outs = {}
    for name, ex in (("auto", auto), ("plain", plain)):
        with torch.no_grad():
            outs[name] = ex.model.conv(torch.rand(2, 1, 8, 8))  # the input as requests send it
    assert outs["auto"].is_contiguous(memory_format=torch.channels_last)
    assert not outs["auto"].is_contiguous()
    assert outs["plain"].is_contiguous()
    d = tiny_tabular(tmp_path)
    spec = load_spec(d / "spec.yaml")
    assert not Executor(load_model(spec, d), spec, d).channels_last


def _request(ex: Executor, name: str, x: np.ndarray) -> Request:
    family = ex.table[name].family
    layer = None
    if family is Family.NEURON:
        layer = LayerSelector("conv", False, (1, 3, 4))
    elif family in (Family.LAYER, Family.CAM):
        layer = LayerSelector("conv")
    return Request(inputs=TensorPayload(x), explain=True, algorithm=name,
                   params={"seed": 3} if ex.table[name].stochastic else {},
                   layer=layer)


def test_every_algorithm_answers_the_same_channels_last(pair) -> None:
    auto, plain = pair
    x = np.random.default_rng(0).random((1, 8, 8), dtype=np.float32)
    names = list(auto.spec.algorithms)
    assert len(names) > 30
    for name in names:
        a = auto.run([_request(auto, name, x)])[0]
        b = plain.run([_request(plain, name, x)])[0]
        assert type(a) is type(b), (name, a, b)
        if not hasattr(a, "explanations"):
            assert str(a) == str(b), name
            continue
        for ea, eb in zip(a.explanations, b.explanations, strict=True):
            np.testing.assert_allclose(ea.attributions, eb.attributions, rtol=1e-4,
                                       atol=1e-6 * (1 + float(np.abs(eb.attributions).max())),
                                       err_msg=name)


def test_channels_last_is_as_close_to_float64_as_nchw(tmp_path) -> None:
    """Where float32 answers are ill-conditioned (DeepLift's rescale multipliers divide
    near-zero differences), the two layouts differ from each other; neither is further from
    the float64 answer than float32 rounding allows."""
    import copy

    from service import attribution as A
    d = tiny_image(tmp_path)
    spec = load_spec(d / "spec.yaml")
    model = load_model(spec, d).eval()
    nhwc = copy.deepcopy(model).to(memory_format=torch.channels_last)
    f64 = copy.deepcopy(model).double()
    g = torch.Generator().manual_seed(5)
    x, refs = torch.rand(6, 1, 8, 8, generator=g), torch.rand(5, 1, 8, 8, generator=g)
    t = model(x).argmax(1)
    for cls, kw in ((A.DeepLiftShap, {"baselines": refs}), (A.DeepLift, {}),
                    (A.IntegratedGradients, {"n_steps": 16})):
        truth = cls(f64).attribute(x.double(), target=t,
                                   **{k: v.double() for k, v in kw.items()} if kw.get("baselines")
                                   is not None else kw)
        errs = [float((cls(m).attribute(x, target=t, **kw).double() - truth).abs().max())
                for m in (model, nhwc)]
        scale = float(truth.abs().max())
        assert errs[1] <= 2 * errs[0] + 1e-6 * scale, (cls.__name__, errs, scale)
