"""show_progress on every perturbation method: a bar named after the method on stderr, and
the same attributions as without it."""

from __future__ import annotations

import pytest
import torch

import service.attribution as sa

X = torch.tensor([[0.5, -1.0, 2.0, 0.3], [1.5, 0.2, -0.7, 1.0]], dtype=torch.float64)


def f(x):
    return torch.tanh(x).sum(1) + x[:, 0] * x[:, 1]


CASES = [
    (sa.FeatureAblation, {}),
    (sa.FeaturePermutation, {}),
    (sa.Occlusion, {"sliding_window_shapes": (2,)}),
    (sa.ShapleyValueSampling, {"n_samples": 3}),
    (sa.ShapleyValues, {}),
    (sa.Lime, {"n_samples": 10}),
    (sa.KernelShap, {"n_samples": 10}),
]


@pytest.mark.parametrize("cls, kwargs", CASES, ids=lambda c: getattr(c, "__name__", ""))
def test_show_progress(cls, kwargs, capsys):
    torch.manual_seed(0)
    plain = cls(f).attribute(X, **kwargs)
    capsys.readouterr()
    torch.manual_seed(0)
    shown = cls(f).attribute(X, show_progress=True, **kwargs)
    err = capsys.readouterr().err
    assert f"{cls.get_name()} attribution" in err
    torch.testing.assert_close(shown, plain, atol=0, rtol=0)


def test_class_hierarchy_mirrors_captum():
    assert issubclass(sa.KernelShap, sa.Lime) and issubclass(sa.Lime, sa.LimeBase)
    assert issubclass(sa.Occlusion, sa.FeatureAblation)
    assert issubclass(sa.FeaturePermutation, sa.FeatureAblation)
    assert issubclass(sa.ShapleyValues, sa.ShapleyValueSampling)
    for cls in (sa.FeatureAblation, sa.ShapleyValueSampling, sa.LimeBase):
        assert issubclass(cls, sa.PerturbationAttribution)


def test_lime_needs_one_output_per_example():
    with pytest.raises(ValueError, match="target"):
        sa.Lime(lambda x: torch.stack([x.sum(1), x.prod(1)], 1)).attribute(X, n_samples=5)
