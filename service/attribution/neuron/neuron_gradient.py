"""NeuronGradient: the gradient of one neuron of a layer with respect to the inputs."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .._base import GradientAttribution, NeuronAttribution
from .._common import Target, as_tuple, format_args, format_output, is_tuple
from .._gradients import input_gradients
from .._layers import NeuronSelector, neuron_forward


class NeuronGradient(NeuronAttribution, GradientAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)

    def attribute(self, inputs, neuron_selector: NeuronSelector, additional_forward_args=None,
                  attribute_to_neuron_input: bool = False):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        neuron = neuron_forward(self.forward_func, self.layer, neuron_selector,
                                attribute_to_neuron_input, gradient_only=True)
        grads = input_gradients(neuron, xs, Target(), format_args(additional_forward_args))
        return format_output(was_tuple, grads)
