"""Infidelity: the expected squared error between the attributions' prediction of an output
change, sum(attribution * perturbation), and the actual change F(x) - F(x - perturbation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from service.attribution._common import (
    Target,
    as_tuple,
    expand_args,
    format_args,
    format_baselines,
    run_forward,
)

from ._chunks import expand_target, interleave, perturb_chunks


def _safe_div(num: Tensor, den: Tensor | float, default: float = 1.0) -> Tensor:
    if isinstance(den, Tensor):
        return num / torch.where(den == 0, torch.as_tensor(default, dtype=den.dtype,
                                                           device=den.device), den)
    return num / (den if den != 0 else default)


def infidelity_perturb_func_decorator(multiply_by_inputs: bool = True) -> Callable:
    """Turns a function returning perturbed inputs into one returning (perturbations,
    perturbed inputs); with ``multiply_by_inputs`` the perturbation is divided by the input
    (minus the baseline), for attributions that multiply by inputs."""

    def decorate(perturb_func: Callable) -> Callable:
        def wrapped(inputs: Any, baselines: Any = None) -> tuple[tuple[Tensor, ...], ...]:
            perturbed = as_tuple(perturb_func(inputs, baselines) if baselines is not None
                                 else perturb_func(inputs), "perturbed inputs")
            xs = as_tuple(inputs)
            if baselines is None:
                refs: tuple[Any, ...] = tuple(0 for _ in xs)
            else:
                refs = format_baselines(baselines, xs)
            diffs = tuple(
                _safe_div(x - p, x - b) if multiply_by_inputs else x - p
                for x, p, b in zip(xs, perturbed, refs)
            ) if baselines is not None else tuple(
                _safe_div(x - p, x) if multiply_by_inputs else x - p
                for x, p in zip(xs, perturbed))
            return diffs, perturbed

        return wrapped

    return decorate


def infidelity(forward_func: Callable, perturb_func: Callable, inputs: Any, attributions: Any,
               baselines: Any = None, additional_forward_args: Any = None, target: Any = None,
               n_perturb_samples: int = 10, max_examples_per_batch: int | None = None,
               normalize: bool = False) -> Tensor:
    """Per example: mean over ``n_perturb_samples`` perturbations I of
    (sum(attributions * I) - (F(x) - F(x - I)))**2; with ``normalize`` the attributions are
    first scaled by the least-squares factor that minimises it. ``perturb_func(inputs[,
    baselines])`` returns (perturbations, perturbed inputs) for every example repeated."""
    if not callable(forward_func) or not callable(perturb_func):
        raise TypeError("`forward_func` and `perturb_func` must be callable")
    xs = as_tuple(inputs)
    attrs = as_tuple(attributions, "attributions")
    if len(attrs) != len(xs):
        raise ValueError(f"`attributions` has {len(attrs)} tensors, `inputs` {len(xs)}")
    for i, (x, a) in enumerate(zip(xs, attrs)):
        if x.shape != a.shape:
            raise ValueError(f"`attributions[{i}]` has shape {tuple(a.shape)}, the input "
                             f"{tuple(x.shape)}")
    bases = None if baselines is None else format_baselines(baselines, xs)
    args = format_args(additional_forward_args)
    n = xs[0].shape[0]
    sums: list[Tensor] = []
    with torch.no_grad():
        out = run_forward(forward_func, xs, Target.of(target, n), args)        # (B, ...)
        for k in perturb_chunks(n, n_perturb_samples, max_examples_per_batch):
            reps = tuple(interleave(x, k) for x in xs)
            base_reps = None if bases is None else tuple(
                interleave(b, k) if isinstance(b, Tensor) and b.shape[0] == x.shape[0] > 1
                else b for b, x in zip(bases, xs))
            if base_reps is None:
                res = perturb_func(reps[0] if len(reps) == 1 else reps)
            else:
                res = perturb_func(reps[0] if len(reps) == 1 else reps,
                                   base_reps[0] if len(reps) == 1 else base_reps)
            perturbations = as_tuple(res[0], "perturbations")
            perturbed = as_tuple(res[1], "perturbed inputs")
            if len(perturbations) != len(xs) or len(perturbed) != len(xs):
                raise ValueError("`perturb_func` must return one perturbation and one "
                                 "perturbed input per input tensor")
            tgt = Target.of(expand_target(target, k), n * k)
            out_p = run_forward(forward_func, perturbed, tgt, expand_args(args, k, True))
            fwd_diff = (interleave(out, k) - out_p).reshape(n, -1)            # (B, k)
            pred = sum((interleave(a, k) * p).reshape(n * k, -1).sum(1)
                       for a, p in zip(attrs, perturbations))
            pred = torch.as_tensor(pred).reshape(n, -1)                        # (B, k)
            parts: tuple[Tensor, ...]
            if normalize:
                parts = (pred.pow(2).sum(-1), (pred * fwd_diff).sum(-1), fwd_diff.pow(2).sum(-1))
            else:
                parts = ((pred - fwd_diff).pow(2).sum(-1),)
            sums = list(parts) if not sums else [s + p for s, p in zip(sums, parts)]
    if normalize:
        beta = _safe_div(sums[1], sums[0])
        values = beta * beta * sums[0] - 2 * beta * sums[1] + sums[2]
    else:
        values = sums[0]
    return values / n_perturb_samples
