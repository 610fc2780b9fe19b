"""infidelity and sensitivity_max against captum.metrics on the same perturbations (same seed,
same split into passes), and argument errors."""

from __future__ import annotations

import captum.attr as ca
import captum.metrics as cm
import pytest
import torch

import service.attribution as sa
from service.metrics import infidelity, infidelity_perturb_func_decorator, sensitivity_max
from tests.contract.models import MODELS

ROWS = [0, 1, 2, 3]


def _noise(inputs, baselines=None):
    xs = inputs if isinstance(inputs, tuple) else (inputs,)
    noise = tuple(0.1 * torch.randn_like(x) for x in xs)
    perturbed = tuple(x - n for x, n in zip(xs, noise))
    if isinstance(inputs, tuple):
        return noise, perturbed
    return noise[0], perturbed[0]


def _setup(name):
    spec = MODELS[name]
    model = spec.build()
    xs = spec.inputs(ROWS)
    inputs = xs[0] if len(xs) == 1 else xs
    args = spec.extra_args(ROWS)
    target = [r % spec.n_outputs for r in ROWS]
    attrs = sa.IntegratedGradients(model).attribute(inputs, target=target,
                                                     additional_forward_args=args, n_steps=8)
    return model, inputs, attrs, target, args


@pytest.mark.parametrize("name", ["mlp", "cnn", "two_input"])
@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("max_examples", [None, 9])
def test_infidelity_matches_captum(name, normalize, max_examples):
    model, inputs, attrs, target, args = _setup(name)
    kw = dict(target=target, additional_forward_args=args, n_perturb_samples=5,
              max_examples_per_batch=max_examples, normalize=normalize)
    torch.manual_seed(0)
    ours = infidelity(model, _noise, inputs, attrs, **kw)
    torch.manual_seed(0)
    theirs = cm.infidelity(model, _noise, inputs, attrs, **kw)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["mlp", "two_input"])
def test_infidelity_decorated_perturbation_with_baselines_matches_captum(name):
    model, inputs, attrs, target, args = _setup(name)
    xs = inputs if isinstance(inputs, tuple) else (inputs,)
    bases = tuple(0.1 * torch.ones_like(x) for x in xs)
    bases = bases if isinstance(inputs, tuple) else bases[0]
    kw = dict(baselines=bases, target=target, additional_forward_args=args, n_perturb_samples=4)
    torch.manual_seed(1)
    ours = infidelity(model, infidelity_perturb_func_decorator(True)(_raw_scaled), inputs,
                      attrs, **kw)
    torch.manual_seed(1)
    theirs = cm.infidelity(model, cm.infidelity_perturb_func_decorator(True)(_raw_scaled),
                           inputs, attrs, **kw)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def _raw_scaled(inputs, baselines=None):
    xs = inputs if isinstance(inputs, tuple) else (inputs,)
    out = tuple(x + 0.05 * torch.randn_like(x) for x in xs)
    return out if isinstance(inputs, tuple) else out[0]


@pytest.mark.parametrize("name", ["mlp", "cnn", "two_input"])
@pytest.mark.parametrize("max_examples", [None, 6])
def test_sensitivity_max_matches_captum(name, max_examples):
    model, inputs, _, target, args = _setup(name)
    explain = sa.Saliency(model).attribute
    kw = dict(target=target, n_perturb_samples=4, max_examples_per_batch=max_examples)
    if args is not None:
        kw["additional_forward_args"] = args
    torch.manual_seed(2)
    ours = sensitivity_max(explain, inputs, perturb_radius=0.1, **kw)
    torch.manual_seed(2)
    theirs = cm.sensitivity_max(explain, inputs, perturb_radius=0.1, **kw)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_sensitivity_max_with_per_example_baselines_matches_captum():
    model, inputs, _, target, _ = _setup("mlp")
    bases = 0.1 * torch.ones_like(inputs)
    torch.manual_seed(3)
    ours = sensitivity_max(sa.FeatureAblation(model).attribute, inputs, baselines=bases,
                           target=target, n_perturb_samples=3)
    torch.manual_seed(3)
    theirs = cm.sensitivity_max(ca.FeatureAblation(model).attribute, inputs, baselines=bases,
                                target=target, n_perturb_samples=3)
    torch.testing.assert_close(ours, theirs, rtol=1e-9, atol=1e-12)


def test_metric_errors_name_the_argument():
    model, inputs, attrs, target, _ = _setup("mlp")
    with pytest.raises(ValueError, match="attributions"):
        infidelity(model, _noise, inputs, attrs[:, :3], target=target)
    with pytest.raises(ValueError, match="n_perturb_samples"):
        infidelity(model, _noise, inputs, attrs, target=target, n_perturb_samples=0)
    with pytest.raises(ValueError, match="max_examples_per_batch"):
        sensitivity_max(sa.Saliency(model).attribute, inputs, target=target,
                        max_examples_per_batch=0)
