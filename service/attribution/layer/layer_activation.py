"""LayerActivation: the layer's own output (or input) as its attribution."""

from __future__ import annotations

from collections.abc import Callable

from .._base import LayerAttribution
from .._common import as_tuple, format_args
from .._layers import LayerSpec, as_layers, format_layer_output, layer_eval


class LayerActivation(LayerAttribution):
    _multiply_by_inputs = True

    def __init__(self, forward_func: Callable, layer: LayerSpec,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)
        as_layers(layer)

    def attribute(self, inputs, additional_forward_args=None,
                  attribute_to_layer_input: bool = False):
        layers, was_list = as_layers(self.layer)
        values = layer_eval(self.forward_func, layers, as_tuple(inputs),
                            format_args(additional_forward_args), attribute_to_layer_input)
        return format_layer_output(values, was_list)
