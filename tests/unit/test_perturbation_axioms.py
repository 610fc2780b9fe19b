"""Axioms as oracles for the perturbation family: Shapley efficiency, symmetry and dummy
features; Occlusion on a model that sees one patch; estimators converging to exact values."""

from __future__ import annotations

import pytest
import torch

from service.attribution import (
    FeatureAblation,
    KernelShap,
    LimeBase,
    Occlusion,
    ShapleyValues,
    ShapleyValueSampling,
)
from service.attribution.linear_model import LinearRegression
from tests.contract.models import MODELS
from tests.contract.models_perturbation import PATCH

D = torch.float64


def game(x):
    """Features 0 and 1 are symmetric, 2 interacts with 3, 4 is a dummy."""
    return torch.relu(x[:, 0] + x[:, 1]) ** 2 + x[:, 2] * x[:, 3] + torch.sin(x[:, 2])


X = torch.tensor([[0.7, 0.7, 1.5, -2.0, 3.0], [-0.2, -0.2, 0.3, 1.0, -1.0]], dtype=D)
BASE = torch.tensor([[0.1, 0.1, -0.5, 0.5, 0.0]], dtype=D)


def test_shapley_efficiency_symmetry_and_dummy():
    phi = ShapleyValues(game).attribute(X, baselines=BASE, perturbations_per_eval=8)
    torch.testing.assert_close(phi.sum(1), game(X) - game(BASE))       # efficiency
    torch.testing.assert_close(phi[:, 0], phi[:, 1])                    # symmetry
    torch.testing.assert_close(phi[:, 4], torch.zeros(2, dtype=D))               # dummy


def test_shapley_efficiency_on_a_network_with_groups():
    spec = MODELS["two_input"]
    model = spec.build()
    x1, x2 = spec.inputs([0, 1, 2])
    args = spec.extra_args([0, 1, 2])
    masks = (torch.tensor([[0, 1, 2, 2]]), torch.tensor([[1, 3, 0]]))   # ids shared
    a1, a2 = ShapleyValues(model).attribute((x1, x2), target=1, feature_mask=masks,
                                            additional_forward_args=args)
    total = a1[:, [0, 1, 2]].sum(1) + a2[:, 1]   # one value per feature: 0, 1, 2, 3
    out = model(x1, x2, *args)[:, 1] - model(torch.zeros_like(x1), torch.zeros_like(x2),
                                             *args)[:, 1]
    torch.testing.assert_close(total, out)


def test_exact_shapley_refuses_too_many_features():
    with pytest.raises(ValueError, match="feature_mask"):
        ShapleyValues(lambda x: x.sum(1)).attribute(torch.ones(1, 17))


def test_sampling_converges_to_exact_values():
    torch.manual_seed(0)
    exact = ShapleyValues(game).attribute(X, baselines=BASE)
    sampled = ShapleyValueSampling(game).attribute(X, baselines=BASE, n_samples=600,
                                                   perturbations_per_eval=16)
    torch.testing.assert_close(sampled, exact, atol=0.08, rtol=0)
    # every sampled ordering is efficient, so the mean is too
    torch.testing.assert_close(sampled.sum(1), game(X) - game(BASE))


def test_kernel_shap_is_exact_for_an_additive_model():
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0], dtype=D)

    def additive(x):
        return (torch.tanh(x) * w).sum(1)

    torch.manual_seed(0)
    exact = ShapleyValues(additive).attribute(X, baselines=BASE)
    ks = KernelShap(additive).attribute(X, baselines=BASE, n_samples=60)
    torch.testing.assert_close(ks, exact, atol=1e-4, rtol=1e-4)


def test_occlusion_puts_the_mass_on_the_patch_the_model_sees():
    spec = MODELS["patch"]
    model = spec.build()
    x = spec.inputs([0, 1])[0]
    attr = Occlusion(model).attribute(x, sliding_window_shapes=(1, 3, 3), strides=(1, 1, 1),
                                      target=0, perturbations_per_eval=10)
    reach = torch.zeros(10, 10, dtype=torch.bool)   # windows overlapping the patch
    reach[2:9, 0:7] = True
    assert attr[:, 0][:, ~reach].abs().max() < 1e-12
    inside = torch.zeros(10, 10, dtype=torch.bool)
    inside[PATCH] = True
    mass = attr[:, 0].abs()                                      # (B, 10, 10)
    rows, cols = torch.meshgrid(torch.arange(10.0), torch.arange(10.0), indexing="ij")
    centre_r = (mass * rows).sum((1, 2)) / mass.sum((1, 2))
    centre_c = (mass * cols).sum((1, 2)) / mass.sum((1, 2))
    assert ((centre_r >= 4) & (centre_r <= 6) & (centre_c >= 2) & (centre_c <= 4)).all()
    ablation = FeatureAblation(model).attribute(x, target=0)
    assert ablation[:, 0][:, ~inside].abs().max() < 1e-12


def test_lime_base_with_a_custom_sampler_and_a_user_transform():
    """Coalitions s scale the input, x * s; for f(x) = w . x the surrogate in s is exactly
    linear with coefficients w * x."""
    torch.manual_seed(0)
    w = torch.tensor([1.0, -2.0, 0.5, 3.0, 0.0], dtype=D)

    def sampler(original, **kwargs):
        return torch.bernoulli(torch.full((1, 5), 0.7, dtype=D))

    lime = LimeBase(lambda x: x @ w, interpretable_model=LinearRegression(),
                    similarity_func=lambda a, b, c, **kw: 1.0, perturb_func=sampler,
                    perturb_interpretable_space=True,
                    from_interp_rep_transform=lambda s, x, **kw: x * s,
                    to_interp_rep_transform=None)
    coefs = lime.attribute(X[:1], n_samples=60, perturbations_per_eval=7)
    torch.testing.assert_close(coefs, (w * X[0]).reshape(1, 5).to(coefs.dtype),
                               atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="from_interp_rep_transform"):
        LimeBase(game, LinearRegression(), lambda *a, **k: 1.0, sampler, True, None, None)
