"""LayerGradientShap: expected gradients with respect to a layer, at random points between the
inputs and baselines drawn from a distribution, times the layer's input-baseline difference.

Like GradientShap it is a NoiseTunnel (smoothgrad) over ``LayerInputBaselineXGradient``, with
Captum's random stream.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .._base import GradientAttribution, LayerAttribution
from .._common import (
    Target,
    as_tuple,
    check_baselines,
    check_positive_int,
    distribution_baselines,
    expand_args,
    format_args,
    format_baselines,
    format_output,
    tensorize_baselines,
)
from .._layers import layer_eval, layer_gradients
from ..noise_tunnel import NoiseTunnel


class LayerGradientShap(LayerAttribution, GradientAttribution):
    _has_delta = True

    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines, n_samples: int = 5,
                  stdevs: float | tuple[float, ...] = 0.0, target=None,
                  additional_forward_args=None, return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False):
        check_positive_int(n_samples, "n_samples")
        bs = distribution_baselines(baselines, inputs, "LayerGradientShap")
        inner = LayerInputBaselineXGradient(self.forward_func, self.layer, self.device_ids,
                                            self._multiply_by_inputs)
        return NoiseTunnel(inner).attribute(
            inputs, nt_type="smoothgrad", nt_samples=n_samples, stdevs=stdevs,
            draw_baseline_from_distrib=True, baselines=bs, target=target,
            additional_forward_args=additional_forward_args,
            return_convergence_delta=return_convergence_delta,
            attribute_to_layer_input=attribute_to_layer_input)


class LayerInputBaselineXGradient(LayerAttribution, GradientAttribution):
    """The layer gradient at one uniformly random point between input and baseline, times the
    layer's value on the input minus its value on the baseline."""

    _has_delta = True

    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  grad_kwargs: dict | None = None):
        xs = as_tuple(inputs)
        bs = format_baselines(baselines, xs)
        check_baselines(xs, bs)
        bt = tensorize_baselines(xs, bs)
        n = xs[0].shape[0]
        args = format_args(additional_forward_args)
        layers = [self.layer]
        coef = torch.tensor(np.random.uniform(0.0, 1.0, n), device=xs[0].device,
                            dtype=xs[0].dtype)
        points = tuple(c * x.detach() + (1.0 - c) * b for x, b in zip(xs, bt)
                       for c in (coef.view(-1, *([1] * (x.dim() - 1))),))
        grads, _ = layer_gradients(self.forward_func, layers, points, Target.of(target, n), args,
                                   attribute_to_layer_input, grad_kwargs=grad_kwargs)
        attrs = grads[0]
        if self._multiply_by_inputs:
            joined = tuple(torch.cat([x, b.expand_as(x)]) for x, b in zip(xs, bt))
            values = layer_eval(self.forward_func, layers, joined, expand_args(args, 2),
                                attribute_to_layer_input)[0]
            with torch.no_grad():
                attrs = tuple((v[:n] - v[n:]) * g for v, g in zip(values, attrs))
        return self._with_delta(format_output(len(attrs) > 1, attrs), return_convergence_delta,
                                attrs, bt, xs, target, additional_forward_args)
