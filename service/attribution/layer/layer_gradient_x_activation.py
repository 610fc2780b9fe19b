"""LayerGradientXActivation: the layer's activation times the gradient of the target with
respect to it."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from .._base import GradientAttribution, LayerAttribution
from .._common import Target, as_tuple, format_args
from .._layers import LayerSpec, as_layers, format_layer_output, layer_gradients


class LayerGradientXActivation(LayerAttribution, GradientAttribution):
    def __init__(self, forward_func: Callable, layer: LayerSpec,
                 device_ids: list[int] | None = None, multiply_by_inputs: bool = True,
                 memory_efficient: bool = False) -> None:
        super().__init__(forward_func, layer, device_ids)
        as_layers(layer)
        self._multiply_by_inputs = multiply_by_inputs
        self._memory_efficient = memory_efficient

    def attribute(self, inputs, target=None, additional_forward_args=None,
                  attribute_to_layer_input: bool = False, grad_kwargs: dict | None = None):
        xs = as_tuple(inputs)
        layers, was_list = as_layers(self.layer)
        grads, values = layer_gradients(self.forward_func, layers, xs,
                                        Target.of(target, xs[0].shape[0]),
                                        format_args(additional_forward_args),
                                        attribute_to_layer_input, grad_kwargs=grad_kwargs,
                                        offload_to_cpu=self._memory_efficient)
        with torch.no_grad():
            attrs = [self.multiply_gradient_acts(gs, vs) for gs, vs in zip(grads, values)]
        return format_layer_output(attrs, was_list)

    def multiply_gradient_acts(self, gradients: tuple[Tensor, ...],
                               evals: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """Per tensor of one layer: gradient x activation, or the gradient alone without
        ``multiply_by_inputs`` (Captum's hook for subclasses)."""
        if not self.multiplies_by_inputs:
            return tuple(gradients)
        return tuple(g * v for g, v in zip(gradients, evals))
