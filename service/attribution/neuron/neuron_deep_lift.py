"""NeuronDeepLift and NeuronDeepLiftShap: DeepLift of one neuron of a layer (the rescale rules
of DeepLift, differentiating the neuron instead of a model output)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._base import GradientAttribution, NeuronAttribution
from .._common import (
    Target,
    as_tuple,
    call_with_arity,
    check_baselines,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
    tensorize_baselines,
)
from .._layers import NeuronSelector, neuron_forward
from ..deep_lift import DistributionPairs, deeplift_multipliers


class NeuronDeepLift(NeuronAttribution, GradientAttribution):
    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True,
                 eps: float = 1e-10) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module for NeuronDeepLift")
        super().__init__(model, layer)
        self.model = model
        self.eps = eps
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, neuron_selector: NeuronSelector, baselines=None,
                  additional_forward_args=None, attribute_to_neuron_input: bool = False,
                  custom_attribution_func: Callable | None = None):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        bs = format_baselines(baselines, xs)
        check_baselines(xs, bs)
        bt = tensorize_baselines(xs, bs)
        neuron = neuron_forward(self.model, self.layer, neuron_selector,
                                attribute_to_neuron_input)
        grads = deeplift_multipliers(self.model, xs, bt, Target(),
                                     format_args(additional_forward_args), self.eps,
                                     forward=neuron)
        with torch.no_grad():
            if custom_attribution_func is not None:
                attrs = tuple(call_with_arity(custom_attribution_func, grads, xs, bt,
                                              name="custom_attribution_func"))
            elif self._multiply_by_inputs:
                attrs = tuple((x - b) * g for x, b, g in zip(xs, bt, grads))
            else:
                attrs = grads
        return format_output(was_tuple, attrs)

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


class NeuronDeepLiftShap(NeuronDeepLift):
    """NeuronDeepLift averaged over a distribution of baselines."""

    # captum's signature: baselines are required (a distribution), unlike NeuronDeepLift's
    def attribute(self, inputs, neuron_selector: NeuronSelector,  # type: ignore[override]
                  baselines, additional_forward_args=None, attribute_to_neuron_input: bool = False,
                  custom_attribution_func: Callable | None = None):
        was_tuple = is_tuple(inputs)
        pairs = DistributionPairs.of(inputs, baselines, None, additional_forward_args,
                                     "NeuronDeepLift")
        attrs = NeuronDeepLift.attribute(
            self, pairs.inputs, neuron_selector, pairs.baselines,
            additional_forward_args=pairs.args,
            attribute_to_neuron_input=attribute_to_neuron_input,
            custom_attribution_func=custom_attribution_func)
        return format_output(was_tuple, pairs.mean(as_tuple(attrs, "attributions")))
