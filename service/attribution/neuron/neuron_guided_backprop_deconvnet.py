"""NeuronGuidedBackprop and NeuronDeconvolution: the modified-ReLU gradients of one neuron."""

from __future__ import annotations

from torch import nn

from .._base import GradientAttribution, NeuronAttribution
from .._common import Target, as_tuple, format_args, format_output, is_tuple
from .._gradients import input_gradients
from .._hooks import call_rules
from .._layers import NeuronSelector, neuron_forward
from ..guided_backprop_deconvnet import relu_rules


class _NeuronModifiedRelu(NeuronAttribution, GradientAttribution):
    _deconv = False

    def __init__(self, model: nn.Module, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module")
        super().__init__(model, layer, device_ids)
        self.model = model

    def attribute(self, inputs, neuron_selector: NeuronSelector, additional_forward_args=None,
                  attribute_to_neuron_input: bool = False):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        neuron = neuron_forward(self.model, self.layer, neuron_selector,
                                attribute_to_neuron_input, gradient_only=True)
        with call_rules(self.model, relu_rules(self._deconv)):
            grads = input_gradients(neuron, xs, Target(), format_args(additional_forward_args))
        return format_output(was_tuple, grads)


class NeuronGuidedBackprop(_NeuronModifiedRelu):
    _deconv = False


class NeuronDeconvolution(_NeuronModifiedRelu):
    _deconv = True
