"""LayerFeatureAblation: each neuron (or group of ``layer_mask``) of a layer is set to its
baseline (``layer_baselines``, default 0) in the forward pass; its attribution is the drop of
the targeted output."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .._ablation import ablation
from .._base import LayerAttribution, PerturbationAttribution
from .._common import (
    Inputs,
    Target,
    as_tuple,
    check_baselines,
    expand_args,
    format_args,
    format_baselines,
    format_output,
    run_forward,
)
from .._gradients import output_for_grad
from .._layers import layer_eval, regroup, tap


class LayerFeatureAblation(LayerAttribution, PerturbationAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")

    def attribute(self, inputs, layer_baselines=None, target=None, additional_forward_args=None,
                  layer_mask=None, attribute_to_layer_input: bool = False,
                  perturbations_per_eval: int = 1):
        xs = as_tuple(inputs)
        batch = xs[0].shape[0]
        tgt = Target.of(target, batch)
        args = format_args(additional_forward_args)
        layers = [self.layer]
        values = layer_eval(self.forward_func, layers, xs, args, attribute_to_layer_input)[0]
        bases = format_baselines(layer_baselines, values, "layer_baselines")
        check_baselines(values, bases, "layer_baselines")
        masks = (None,) * len(values) if layer_mask is None else as_tuple(layer_mask, "layer_mask")
        if len(masks) != len(values):
            raise ValueError(f"`layer_mask` has {len(masks)} tensors for a layer with "
                             f"{len(values)}")

        def forward(layer_values: Inputs, n: int) -> Tensor:
            with tap(layers, attribute_to_layer_input, replace=regroup(layer_values, [values])):
                out = run_forward(self.forward_func, tuple(expand_args(xs, n) or ()),
                                  tgt.expand(n), expand_args(args, n))
            return _per_row(out)

        attrs = ablation(forward, values, bases, masks, perturbations_per_eval, "layer_mask")
        return format_output(len(attrs) > 1, attrs)


def _per_row(selected: Tensor) -> Tensor:
    """The targeted output as one value per row (checked as for gradients)."""
    output_for_grad(selected)
    return selected.reshape(selected.shape[0] if selected.dim() else 1)
