"""Argument errors that Captum raises with ``assert``: ours are ``AttributionInputError``, which
code written for Captum catches as ``AssertionError`` and our callers as ``ValueError``."""

from __future__ import annotations

import captum.attr as ca
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
