"""NeuronGradientShap: GradientShap of one neuron of a layer."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .._base import GradientAttribution, NeuronAttribution
from .._layers import NeuronSelector, neuron_forward
from ..gradient_shap import GradientShap


class NeuronGradientShap(NeuronAttribution, GradientAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, neuron_selector: NeuronSelector, baselines, n_samples: int = 5,
                  stdevs: float = 0.0, additional_forward_args=None,
                  attribute_to_neuron_input: bool = False):
        neuron = neuron_forward(self.forward_func, self.layer, neuron_selector,
                                attribute_to_neuron_input, gradient_only=True)
        return GradientShap(neuron, self._multiply_by_inputs).attribute(
            inputs, baselines, n_samples=n_samples, stdevs=stdevs, target=None,
            additional_forward_args=additional_forward_args)
