"""FeatureAblation and the shared perturbation core: argument errors, global mask ids,
inference mode, output modes and the progress bar."""

from __future__ import annotations

import pytest
import torch

from service.attribution import FeatureAblation


def _model(x1, x2):
    return (x1 * torch.tensor([1.0, 2.0, 3.0])).sum(1) + (x2 ** 2).sum(1)


X1 = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
X2 = torch.tensor([[2.0, 1.0], [1.0, 3.0]])


def test_same_id_in_two_tensors_is_one_feature():
    m1, m2 = torch.tensor([[0, 1, 1]]), torch.tensor([[1, 2]])
    a1, a2 = FeatureAblation(_model).attribute((X1, X2), feature_mask=(m1, m2))
    # Feature 1 = x1[1], x1[2] and x2[0] ablated together, one attribution for all of them.
    full = _model(X1, X2)
    z1, z2 = X1.clone(), X2.clone()
    z1[:, 1:] = 0
    z2[:, 0] = 0
    expected = full - _model(z1, z2)
    torch.testing.assert_close(a1[:, 1], expected)
    torch.testing.assert_close(a1[:, 2], expected)
    torch.testing.assert_close(a2[:, 0], expected)
    torch.testing.assert_close(a1[:, 0], X1[:, 0])
    torch.testing.assert_close(a2[:, 1], X2[:, 1] ** 2)


def test_attributions_are_ordinary_tensors():
    a = FeatureAblation(lambda x: x.sum(1)).attribute(X1)
    assert not a.is_inference()
    w = torch.ones(3, requires_grad=True)
    (a * w).sum().backward()  # usable with autograd afterwards
    assert w.grad is not None


def test_forward_runs_in_inference_mode():
    seen = []

    def f(x):
        seen.append(torch.is_inference_mode_enabled())
        return x.sum(1)

    FeatureAblation(f).attribute(X1, perturbations_per_eval=2)
    assert seen and all(seen)


def test_perturbations_per_eval_batches_forwards():
    rows = []

    def f(x):
        rows.append(x.shape[0])
        return x.sum(1)

    FeatureAblation(f).attribute(X1, perturbations_per_eval=2)
    assert rows == [2, 4, 2]  # initial pass, then 2 + 1 features


def test_scalar_output_model():
    a = FeatureAblation(lambda x: x.sum()).attribute(X1)
    assert a.shape == (1, 3)
    torch.testing.assert_close(a[0], X1.sum(0))


def test_aggregate_model_rejects_several_perturbations_per_eval():
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        FeatureAblation(lambda x: x.sum()).attribute(X1, perturbations_per_eval=2)


@pytest.mark.parametrize("kwargs, err, match", [
    ({"feature_mask": torch.tensor([[0.0, 0.5, 1.0]])}, TypeError, "feature_mask"),
    ({"feature_mask": torch.zeros(1, 4, dtype=torch.long)}, ValueError, "feature_mask"),
    ({"feature_mask": torch.tensor([[0, -1, 1]])}, ValueError, "negative"),
    ({"perturbations_per_eval": 0}, ValueError, "perturbations_per_eval"),
    ({"baselines": torch.zeros(3, 3)}, ValueError, "baselines"),
])
def test_bad_arguments_name_the_argument(kwargs, err, match):
    with pytest.raises(err, match=match):
        FeatureAblation(lambda x: x.sum(1)).attribute(X1, **kwargs)


def test_show_progress_reports_every_pass(capsys):
    FeatureAblation(lambda x: x.sum(1)).attribute(X1, show_progress=True)
    err = capsys.readouterr().err
    assert "Feature Ablation attribution" in err
    assert "4/4" in err
