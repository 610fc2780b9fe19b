"""Captum compatibility details that code written for Captum relies on: argument errors that
Captum raises with ``assert`` (ours are ``AttributionInputError``, caught as ``AssertionError``
and as ``ValueError``), ``grad_kwargs``, ``attribute.__wrapped__``, ``attribute_future``."""

from __future__ import annotations

import inspect

import captum.attr as ca
import numpy as np
import pytest
import torch
from torch import nn

import service.attribution as sa


def _model() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 5), nn.ReLU(), nn.Linear(5, 3)).eval()


def test_error_class_is_both_value_and_assertion_error() -> None:
    assert issubclass(sa.AttributionInputError, ValueError)
    assert issubclass(sa.AttributionInputError, AssertionError)


@pytest.mark.parametrize("target", [(0, 1), torch.tensor([0, 1]), [0, 1, 2, 0]])
def test_bad_target_is_caught_as_assertion_like_captum(target) -> None:
    model, x = _model(), torch.randn(3, 4)
    with pytest.raises(AssertionError):  # the oracle: captum asserts on these targets
        ca.Saliency(model).attribute(x, target=target)
    with pytest.raises(sa.AttributionInputError, match="target"):
        sa.Saliency(model).attribute(x, target=target)


def test_out_of_range_target_index_names_the_argument() -> None:
    model, x = _model(), torch.randn(3, 4)
    with pytest.raises(AssertionError, match="`target` index 7"):
        sa.IntegratedGradients(model).attribute(x, target=7)
    with pytest.raises(ValueError, match="`target` has an index outside"):
        sa.Saliency(model).attribute(x, target=[0, 1, 3])


def test_bad_neuron_selector_is_caught_as_assertion() -> None:
    model, x = _model(), torch.randn(3, 4)
    with pytest.raises(AssertionError):  # the oracle: too many indices is a captum assert
        ca.NeuronGradient(model, model[0]).attribute(x, neuron_selector=(1, 2))
    with pytest.raises(sa.AttributionInputError, match="neuron_selector"):
        sa.NeuronGradient(model, model[0]).attribute(x, neuron_selector=(1, 2))
    with pytest.raises(AssertionError, match="out of range"):
        sa.NeuronGradient(model, model[0]).attribute(x, neuron_selector=9)


def test_gradient_shap_baselines_that_are_not_tensors() -> None:
    model, x = _model(), torch.randn(3, 4)

    def as_array(inputs):
        return np.zeros((2, 4), dtype=np.float32)

    with pytest.raises(AssertionError):  # the oracle
        ca.GradientShap(model).attribute(x, baselines=as_array, target=0)
    with pytest.raises(sa.AttributionInputError, match="baselines.*ndarray"):
        sa.GradientShap(model).attribute(x, baselines=as_array, target=0)
    with pytest.raises(AssertionError, match="baselines"):
        sa.LayerGradientShap(model, model[0]).attribute(x, baselines=0.0, target=0)


def test_convergence_delta_with_a_start_point_of_another_batch() -> None:
    model, x = _model(), torch.randn(3, 4)
    attrs = torch.zeros(3, 4)
    with pytest.raises(AssertionError):  # the oracle
        ca.GradientShap(model).compute_convergence_delta(attrs, torch.zeros(2, 4), x, target=0)
    with pytest.raises(sa.AttributionInputError, match="start_point"):
        sa.GradientShap(model).compute_convergence_delta(attrs, torch.zeros(2, 4), x, target=0)


def test_configuring_an_interpretable_embedding_twice() -> None:
    model = nn.Sequential(nn.Embedding(5, 3), nn.Flatten(), nn.Linear(6, 2))
    emb = sa.configure_interpretable_embedding_layer(model, "0")
    with pytest.raises(AssertionError, match="already"):
        sa.configure_interpretable_embedding_layer(model, "0")
    sa.remove_interpretable_embedding_layer(model, emb)
    assert isinstance(model[0], nn.Embedding)


@pytest.mark.parametrize("name", ["Saliency", "IntegratedGradients", "LayerConductance",
                                  "NeuronGradient", "NoiseTunnel", "LayerGradCam"])
def test_attribute_wrapped_has_captums_argument_names(name: str) -> None:
    ours = inspect.getfullargspec(getattr(sa, name).attribute.__wrapped__).args
    theirs = inspect.getfullargspec(getattr(ca, name).attribute.__wrapped__).args
    assert ours == theirs
    assert "__wrapped__" not in vars(getattr(sa, name).attribute.__wrapped__)


@pytest.mark.parametrize("make", [sa.Saliency, sa.InputXGradient, sa.IntegratedGradients,
                                  sa.GradientShap, sa.GuidedBackprop,
                                  lambda m: sa.NoiseTunnel(sa.Saliency(m))])
def test_attribute_future_is_not_offered(make) -> None:
    with pytest.raises(NotImplementedError, match="attribute_future"):
        make(_model()).attribute_future()


def test_grad_kwargs_are_checked() -> None:
    model, x = _model(), torch.randn(3, 4)
    lga = sa.LayerGradientXActivation(model, model[0])
    with pytest.raises(TypeError, match="grad_kwargs"):
        lga.attribute(x, target=0, grad_kwargs=[("materialize_grads", True)])
    with pytest.raises(ValueError, match="grad_kwargs.*inputs"):
        lga.attribute(x, target=0, grad_kwargs={"inputs": x})
    with pytest.raises(ValueError, match="materialize_grads"):
        lga.attribute(x, target=0, grad_kwargs={"materialize_grads": True, "allow_unused": False})


class _UnusedBranch(nn.Module):
    """``side`` runs but does not reach the output: its gradient is unused (None)."""

    def __init__(self) -> None:
        super().__init__()
        self.main, self.side = nn.Linear(4, 3), nn.Linear(4, 2)

    def forward(self, x):
        self.side(x)
        return self.main(x)


@pytest.mark.parametrize("name", ["LayerGradientXActivation", "InternalInfluence",
                                  "LayerIntegratedGradients"])
def test_an_unused_layer_gets_zero_attributions_like_captums_materialize_grads(name) -> None:
    torch.manual_seed(0)
    model, x = _UnusedBranch().eval(), torch.randn(3, 4)
    materialize = {"materialize_grads": True}
    theirs = getattr(ca, name)(model, model.side).attribute(x, target=1, grad_kwargs=materialize)
    assert theirs.shape == (3, 2) and not theirs.any()  # the oracle: zeros
    for grad_kwargs in (None, materialize):  # ours: zeros without asking, too
        ours = getattr(sa, name)(model, model.side).attribute(x, target=1,
                                                              grad_kwargs=grad_kwargs)
        torch.testing.assert_close(ours, theirs)
    # captum 0.9.0's LayerConductance fails here even with materialize_grads; ours gives zeros
    cond = sa.LayerConductance(model, model.side).attribute(x, target=1, grad_kwargs=materialize)
    assert cond.shape == (3, 2) and not cond.any()


def test_a_batch_total_selector_is_for_gradient_methods_only() -> None:
    model, x = _model(), torch.randn(3, 4)
    total = lambda y: y[:, 1:3].sum()  # noqa: E731  (Captum's style of selector)
    ours = sa.NeuronGradient(model, model[1]).attribute(x, total)
    theirs = ca.NeuronGradient(model, model[1]).attribute(x, total)
    torch.testing.assert_close(ours, theirs)
    with pytest.raises(ValueError, match="one value per example"):
        sa.NeuronConductance(model, model[1]).attribute(x, total, target=0)


def test_multiply_gradient_acts_is_the_hook_subclasses_override() -> None:
    model, x = _model(), torch.randn(3, 4)

    class Halved(sa.LayerGradientXActivation):
        def multiply_gradient_acts(self, gradients, evals):
            return tuple(0.5 * t for t in super().multiply_gradient_acts(gradients, evals))

    full = sa.LayerGradientXActivation(model, model[0]).attribute(x, target=2)
    torch.testing.assert_close(Halved(model, model[0]).attribute(x, target=2), 0.5 * full)
    theirs = ca.LayerGradientXActivation(model, model[0], memory_efficient=True).attribute(
        x, target=2)
    ours = sa.LayerGradientXActivation(model, model[0], memory_efficient=True).attribute(
        x, target=2)
    torch.testing.assert_close(ours, theirs)
    assert ours.device.type == "cpu"
