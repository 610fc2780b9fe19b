"""LayerIntegratedGradients: Integrated Gradients in the space of a layer's activations.

The model runs on the inputs with the layer's output (or input) replaced by points on the
straight path from the layer's value on the baselines to its value on the inputs; the gradient
is taken with respect to those points. For text models the layer is the embedding and the
baselines are reference token ids (``TokenReferenceBase``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .._base import GradientAttribution, LayerAttribution
from .._batching import model_key
from .._common import (
    Inputs,
    Target,
    as_tuple,
    expand_args,
    format_args,
    tensorize_baselines,
)
from .._layers import LayerSpec, as_layers, format_layer_output, layer_eval, layer_gradients, regroup
from ..integrated_gradients import path_integral, validate_path_args


class LayerIntegratedGradients(LayerAttribution, GradientAttribution):
    _has_delta = True

    def __init__(self, forward_func: Callable, layer: LayerSpec,
                 device_ids: list[int] | None = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids)
        as_layers(layer)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  n_steps: int = 50, method: str = "gausslegendre",
                  internal_batch_size: int | None = None,
                  return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False, grad_kwargs: dict | None = None):
        xs = as_tuple(inputs)
        bs = tensorize_baselines(xs, validate_path_args(xs, baselines, n_steps, method))
        batch = xs[0].shape[0]
        tgt = Target.of(target, batch)
        args = format_args(additional_forward_args)
        layers, was_list = as_layers(self.layer)
        to_input = attribute_to_layer_input
        at_inputs = layer_eval(self.forward_func, layers, xs, args, to_input)
        at_bases = layer_eval(self.forward_func, layers, bs, args, to_input)
        flat_inputs = tuple(t for ts in at_inputs for t in ts)
        flat_bases = tuple(t for ts in at_bases for t in ts)

        def gradients(points: Inputs, t: Target, a: tuple | None) -> Inputs:
            steps = points[0].shape[0] // max(batch, 1)
            model_inputs = expand_args(xs, steps)  # (steps * B, ...) step-major, like points
            assert model_inputs is not None
            grads, _ = layer_gradients(self.forward_func, layers, model_inputs, t, a, to_input,
                                       replace=regroup(points, at_inputs), grad_kwargs=grad_kwargs)
            return tuple(g for gs in grads for g in gs)

        key = ("layer_ig", id(self.forward_func), tuple(id(m) for m in layers), to_input,
               model_key(self.forward_func, xs)[1:])
        totals = path_integral(gradients, flat_inputs, flat_bases, tgt, args, n_steps, method,
                               internal_batch_size, key=key)
        with torch.no_grad():
            attrs = (tuple(g * (x - b) for g, x, b in zip(totals, flat_inputs, flat_bases))
                     if self._multiply_by_inputs else totals)
        return self._with_delta(format_layer_output(regroup(attrs, at_inputs), was_list),
                                return_convergence_delta, attrs, bs, xs, target,
                                additional_forward_args)
