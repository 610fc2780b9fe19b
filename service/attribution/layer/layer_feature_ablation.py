"""LayerFeatureAblation: each neuron (or group of ``layer_mask``) of a layer is set to its
baseline (``layer_baselines``, default 0) in the forward pass; its attribution is the drop of
the targeted output. ``FeatureAblation`` ablates the layer's values through a forward function
that runs the model with the layer's output (or input) replaced."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .._base import LayerAttribution, PerturbationAttribution
from .._common import as_tuple, format_args, format_output
from .._layers import layer_eval, tap
from ..feature_ablation import FeatureAblation


def check_mask(mask: Any, name: str) -> None:
    """An integer tensor, or a tuple of them, of feature ids (None: every element alone)."""
    if mask is None:
        return
    for m in (mask if isinstance(mask, tuple) else (mask,)):
        if not isinstance(m, Tensor) or m.is_floating_point() or m.is_complex():
            raise TypeError(f"`{name}` must be an integer tensor (or a tuple of them) of feature "
                            f"ids, got {type(m).__name__ if not isinstance(m, Tensor) else m.dtype}")


class LayerFeatureAblation(LayerAttribution, PerturbationAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")

    def attribute(self, inputs, layer_baselines=None, target=None, additional_forward_args=None,
                  layer_mask=None, attribute_to_layer_input: bool = False,
                  perturbations_per_eval: int = 1):
        check_mask(layer_mask, "layer_mask")
        xs = as_tuple(inputs)
        args = format_args(additional_forward_args)
        layers = [self.layer]
        values = layer_eval(self.forward_func, layers, xs, args, attribute_to_layer_input)[0]
        n_values = len(values)

        def with_layer(*all_args: Any) -> Any:
            # (layer values..., model inputs..., extra args...), k perturbations stacked
            with tap(layers, attribute_to_layer_input, replace=[all_args[:n_values]]):
                return self.forward_func(*all_args[n_values:])

        attrs = FeatureAblation(with_layer).attribute(
            values, baselines=layer_baselines, target=target,
            additional_forward_args=xs + (args or ()), feature_mask=layer_mask,
            perturbations_per_eval=perturbations_per_eval)
        attrs = as_tuple(attrs, "attributions")
        return format_output(len(attrs) > 1, attrs)
