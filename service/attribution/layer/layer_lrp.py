"""LayerLRP: LRP's relevance at a layer (or a list of layers), Captum 0.9.0's ``LayerLRP``.

The same single pass as ``LRP``; the relevance that reaches each layer's output (or, with
``attribute_to_layer_input``, the relevance the layer hands to its inputs) is recorded on the
way back and scaled by the targeted output. Any module the model calls once per forward can be
the layer (Captum needs a leaf module with a rule).
"""

from __future__ import annotations

from torch import nn

from .._base import LayerAttribution
from .._common import Target, as_tuple, format_args
from .._layers import LayerSpec, as_layers, format_layer_output
from ..lrp import LRP, convergence_delta, propagate


class LayerLRP(LRP, LayerAttribution):
    def __init__(self, model: nn.Module, layer: LayerSpec) -> None:
        LRP.__init__(self, model)
        layers, self._was_list = as_layers(layer)
        inside = {id(m) for m in model.modules()}
        for i, m in enumerate(layers):
            if id(m) not in inside:
                where = f"`layer[{i}]`" if self._was_list else "`layer`"
                raise ValueError(f"{where} ({type(m).__name__}) is not a module of the model")
        self._layers = layers
        LayerAttribution.__init__(self, model, layer, getattr(model, "device_ids", None))

    def attribute(self, inputs, target=None, additional_forward_args=None,  # type: ignore[override]
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  verbose: bool = False):  # Captum's order: the layer flag before ``verbose``
        xs = as_tuple(inputs)
        found = propagate(self.model, xs, Target.of(target, xs[0].shape[0]),
                          format_args(additional_forward_args), self._layers,
                          attribute_to_layer_input, verbose)
        per_layer = [found.scaled(r) for r in found.layers]
        result = format_layer_output(per_layer, self._was_list)
        if not return_convergence_delta:
            return result
        deltas = [convergence_delta(r, found.output) for r in per_layer]
        return result, (deltas if self._was_list else deltas[0])
