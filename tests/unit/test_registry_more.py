"""The perturbation and CAM table entries: served results equal the engine's own call with
the same feature mask / window / layer, and their limits are enforced."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service import attribution as A
from service.runtime import Executor, Request, Response, TensorPayload, load_spec
from service.runtime.algorithms.perturbation import feature_count, feature_mask
from service.runtime.loader import load_model
from tests.serving_fixture import tiny_image


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tiny_image(tmp_path_factory.mktemp("models"))
    spec = load_spec(d / "spec.yaml")
    model = load_model(spec, d)
    return Executor(model, spec, d), model


def _x(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 8, 8)).astype(np.float32)


def _explain(ex: Executor, x: np.ndarray, algorithm: str, **params) -> Response:
    (out,) = ex.run([Request(inputs=TensorPayload(x), explain=True, algorithm=algorithm,
                             params=params)])
    assert isinstance(out, Response), out
    return out


def test_feature_mask_patches() -> None:
    mask = feature_mask(torch.zeros(2, 3, 8, 8), 4)
    assert mask.shape == (1, 3, 8, 8) and int(mask.max()) == 3
    assert torch.equal(mask[0, 0], mask[0, 2])  # one patch id across channels
    assert torch.equal(mask[0, 0, :4, :4], torch.zeros(4, 4, dtype=mask.dtype))
    flat = feature_mask(torch.zeros(1, 5), 4)
    assert flat.tolist() == [[0, 1, 2, 3, 4]]
    # the count the validator holds to max_features (tests/unit/test_runtime_executor.py)
    assert feature_count((3, 8, 8), 4) == int(mask.max()) + 1
    assert feature_count((1, 10, 9), 4) == int(feature_mask(torch.zeros(1, 1, 10, 9), 4).max()) + 1
    assert feature_count((5,), 4) == 5


def test_served_feature_ablation_equals_the_engine(served) -> None:
    ex, model = served
    x = _x(1)
    out = _explain(ex, x, "FeatureAblation", superpixel=2)
    t = out.explanations[0].target
    xt = torch.from_numpy(x)[None]
    want = A.FeatureAblation(model).attribute(xt, target=t, feature_mask=feature_mask(xt, 2))
    np.testing.assert_allclose(out.explanations[0].attributions, want[0].numpy(), atol=1e-6)


def test_served_occlusion_equals_the_engine(served) -> None:
    ex, model = served
    x = _x(2)
    out = _explain(ex, x, "Occlusion", window=3, stride=2)
    t = out.explanations[0].target
    want = A.Occlusion(model).attribute(torch.from_numpy(x)[None], sliding_window_shapes=(1, 3, 3),
                                        strides=(1, 2, 2), target=t)
    np.testing.assert_allclose(out.explanations[0].attributions, want[0].numpy(), atol=1e-6)


def test_served_gradcam_is_the_upsampled_layer_map(served) -> None:
    ex, model = served
    x = _x(3)
    out = _explain(ex, x, "LayerGradCam")
    t = out.explanations[0].target
    cam = A.LayerGradCam(model, model.conv).attribute(torch.from_numpy(x)[None], target=t,
                                                       relu_attributions=True)
    up = A.LayerAttribution.interpolate(cam, (8, 8), "bilinear")
    np.testing.assert_allclose(out.explanations[0].attributions, up[0].detach().numpy(),
                               atol=1e-6)


@pytest.mark.parametrize("name", ["ShapleyValueSampling", "KernelShap", "Lime"])
def test_sampled_methods_are_seeded_and_capped(served, name) -> None:
    ex, _ = served
    x = _x(4)
    a = _explain(ex, x, name, n_samples=20, superpixel=4, seed=3).explanations[0].attributions
    b = _explain(ex, x, name, n_samples=20, superpixel=4, seed=3).explanations[0].attributions
    np.testing.assert_array_equal(a, b)
    assert np.abs(a).sum() > 0
    (refused,) = ex.run([Request(inputs=TensorPayload(x), explain=True, algorithm=name,
                                 params={"n_samples": 10**6})])
    assert getattr(refused, "field", "") == "params.n_samples"
