"""GradientShap: expected gradients over random points between the input and baselines drawn
from a reference distribution, with optional input noise (a SmoothGrad of InputBaselineXGradient).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ._base import GradientAttribution
from ._common import (
    Target,
    as_tuple,
    check_baselines,
    check_positive_int,
    distribution_baselines,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
)
from ._gradients import input_gradients
from .noise_tunnel import NoiseTunnel


class GradientShap(GradientAttribution):
    _has_delta = True

    def __init__(self, forward_func: Callable, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines, n_samples: int = 5,
                  stdevs: float | tuple[float, ...] = 0.0, target=None,
                  additional_forward_args=None, return_convergence_delta: bool = False):
        check_positive_int(n_samples, "n_samples")
        bs = distribution_baselines(baselines, inputs, "GradientShap")
        inner = InputBaselineXGradient(self.forward_func, self._multiply_by_inputs)
        return NoiseTunnel(inner).attribute(
            inputs, nt_type="smoothgrad", nt_samples=n_samples, stdevs=stdevs,
            draw_baseline_from_distrib=True, baselines=bs, target=target,
            additional_forward_args=additional_forward_args,
            return_convergence_delta=return_convergence_delta)


class InputBaselineXGradient(GradientAttribution):
    """(input - baseline) x gradient at one uniformly random point between them."""

    _has_delta = True

    def __init__(self, forward_func: Callable, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        bs = format_baselines(baselines, xs)
        check_baselines(xs, bs)
        x0 = xs[0]
        coef = torch.tensor(np.random.uniform(0.0, 1.0, x0.shape[0]), device=x0.device,
                            dtype=x0.dtype)
        points = []
        for x, b in zip(xs, bs):
            c = coef.view(-1, *([1] * (x.dim() - 1)))
            points.append(c * x.detach() + (1.0 - c) * b)
        grads = input_gradients(self.forward_func, tuple(points), Target.of(target, x0.shape[0]),
                                format_args(additional_forward_args))
        with torch.no_grad():
            attrs = (tuple((x - b) * g for x, b, g in zip(xs, bs, grads))
                     if self._multiply_by_inputs else grads)
        return self._with_delta(format_output(was_tuple, attrs), return_convergence_delta,
                                attrs, bs, xs, target, additional_forward_args)
