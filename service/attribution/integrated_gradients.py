"""Integrated Gradients (Sundararajan et al., 2017) and the shared path integral."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._base import GradientAttribution
from ._batching import PassPlanner, model_key
from ._common import (
    Baselines,
    Inputs,
    Target,
    as_tuple,
    check_baselines,
    check_positive_int,
    expand_args,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
)
from ._gradients import input_gradients
from ._quadrature import nodes_tensor, parse_method

# gradients(points, target, args) -> d(targeted outputs)/d(points), one tensor per input
GradientFn = Callable[[Inputs, Target, "tuple | None"], Inputs]


def path_points(inputs: Inputs, baselines: Baselines, alphas: Tensor) -> Inputs:
    """Points baseline + alpha * (input - baseline), step-major: (len(alphas) * B, *shape[1:])."""
    points = []
    for x, b in zip(inputs, baselines):
        a = alphas.view(-1, *([1] * x.dim()))  # (S, 1, ..., 1)
        diff = x - b
        points.append((b + a * diff).reshape(-1, *x.shape[1:]))
    return tuple(points)


def path_integral(gradients: GradientFn, inputs: Inputs, baselines: Baselines, target: Target,
                  args: tuple | None, n_steps: int, method: str,
                  internal_batch_size: int | None, key: tuple | None = None) -> Inputs:
    """Sum over quadrature nodes of weight * gradient at the path point; one tensor per input,
    of the input's shape (not yet multiplied by input - baseline). ``key`` (see
    ``_batching.model_key``) lets the pass size adapt to the model's activation memory."""
    x0 = inputs[0]
    batch = x0.shape[0]
    alphas, weights = nodes_tensor(method, n_steps, x0.dtype, x0.device)
    row_numel = sum(x[0].numel() for x in inputs) if batch else 1
    planner = PassPlanner(key if key is not None else ("path", id(gradients)), n_steps, batch,
                          row_numel, internal_batch_size)
    totals: list[Tensor] = []

    def run(start: int, stop: int) -> None:
        steps = stop - start
        points = path_points(inputs, baselines, alphas[start:stop])
        grads = gradients(points, target.expand(steps), expand_args(args, steps))
        w = weights[start:stop]
        # (S, B, *shape[1:]) contracted with the step weights -> (B, *shape[1:])
        part = [torch.tensordot(w.to(g.dtype), g.reshape(steps, batch, *g.shape[1:]), dims=1)
                for g in grads]
        if totals:
            for t, p in zip(totals, part):
                t.add_(p)
        else:
            totals.extend(part)

    planner.passes(run)
    return tuple(totals)


def validate_path_args(inputs: Inputs, baselines: object, n_steps: int, method: str) -> Baselines:
    formatted = format_baselines(baselines, inputs)
    check_baselines(inputs, formatted)
    parse_method(method)
    check_positive_int(n_steps, "n_steps", 1 if method == "gausslegendre" else 2)
    return formatted


class IntegratedGradients(GradientAttribution):
    """Integrates the gradient along the straight path from the baseline to the input."""

    _has_delta = True

    def __init__(self, forward_func: Callable, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  n_steps: int = 50, method: str = "gausslegendre",
                  internal_batch_size: int | None = None,
                  return_convergence_delta: bool = False):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        bs = validate_path_args(xs, baselines, n_steps, method)
        tgt = Target.of(target, xs[0].shape[0])
        args = format_args(additional_forward_args)

        def gradients(points: Inputs, t: Target, a: tuple | None) -> Inputs:
            return input_gradients(self.forward_func, points, t, a)

        totals = path_integral(gradients, xs, bs, tgt, args, n_steps, method, internal_batch_size,
                               key=model_key(self.forward_func, xs))
        with torch.no_grad():
            if self._multiply_by_inputs:
                attrs = tuple(g * (x - b) for g, x, b in zip(totals, xs, bs))
            else:
                attrs = totals
        return self._with_delta(format_output(was_tuple, attrs), return_convergence_delta,
                                attrs, bs, xs, target, additional_forward_args)
