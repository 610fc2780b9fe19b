"""InternalInfluence (Leino et al., 2018): the gradient of the target with respect to a layer,
integrated along the input-space path from the baselines to the inputs."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .._base import GradientAttribution, LayerAttribution
from .._batching import model_key
from .._common import Inputs, Target, as_tuple, format_args, format_output
from .._gradients import grad_ready
from .._layers import layer_gradients
from ..integrated_gradients import path_integral, validate_path_args


class InternalInfluence(LayerAttribution, GradientAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  n_steps: int = 50, method: str = "gausslegendre",
                  internal_batch_size: int | None = None,
                  attribute_to_layer_input: bool = False, grad_kwargs: dict | None = None):
        xs = as_tuple(inputs)
        grad_ready(xs)
        bs = validate_path_args(xs, baselines, n_steps, method)
        tgt = Target.of(target, xs[0].shape[0])
        args = format_args(additional_forward_args)

        def gradients(points: Inputs, t: Target, a: tuple | None) -> Inputs:
            grads, _ = layer_gradients(self.forward_func, [self.layer], points, t, a,
                                       attribute_to_layer_input, grad_kwargs=grad_kwargs)
            return grads[0]

        key = ("internal_influence", id(self.forward_func), id(self.layer),
               attribute_to_layer_input, model_key(self.forward_func, xs)[1:])
        totals = path_integral(gradients, xs, bs, tgt, args, n_steps, method,
                               internal_batch_size, key=key)
        return format_output(len(totals) > 1, totals)
