"""LayerFeaturePermutation: permutation feature importance of a layer's neurons. Each neuron
(or group of ``layer_mask``) of the layer's output is shuffled across the batch in the forward
pass; its attribution is the drop of the targeted output. ``FeaturePermutation`` shuffles the
layer's values through a forward function that runs the model with the layer's output
replaced, as ``LayerFeatureAblation`` does for ablation."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from .._base import LayerAttribution
from .._common import as_tuple, format_args, format_output
from .._layers import layer_eval, tap
from ..feature_permutation import FeaturePermutation
from .layer_feature_ablation import check_mask


class LayerFeaturePermutation(LayerAttribution, FeaturePermutation):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        # LayerAttribution's init does not chain (captum's internal classes call it directly):
        # FeaturePermutation's init sets the default perm_func, then the layer is recorded.
        FeaturePermutation.__init__(self, forward_func)
        LayerAttribution.__init__(self, forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")

    def attribute(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                  target: Any = None, additional_forward_args: Any = None,
                  layer_mask: Tensor | tuple[Tensor, ...] | None = None,
                  perturbations_per_eval: int = 1) -> Tensor | tuple[Tensor, ...]:
        """Attributions of the layer's output values: shape (n_out, *layer_output.shape[1:])
        per output tensor, n_out one per example for a per-example model; a tuple when the
        layer gives several tensors."""
        check_mask(layer_mask, "layer_mask")
        xs = as_tuple(inputs)
        args = format_args(additional_forward_args)
        layers = [self.layer]
        values = layer_eval(self.forward_func, layers, xs, args, False)[0]  # (B, *S) each
        n_values = len(values)

        def with_layer(*all_args: Any) -> Any:
            # (layer values..., model inputs..., extra args...), k perturbations stacked
            with tap(layers, False, replace=[all_args[:n_values]]):
                return self.forward_func(*all_args[n_values:])

        attrs = self.attributor(with_layer, perm_func=self.perm_func).attribute(
            values, target=target, additional_forward_args=xs + (args or ()),
            feature_mask=layer_mask, perturbations_per_eval=perturbations_per_eval)
        attrs = as_tuple(attrs, "attributions")
        return format_output(len(attrs) > 1, attrs)

    @property
    def attributor(self) -> type[FeaturePermutation]:
        """The perturbation method run on the layer's values."""
        return FeaturePermutation
