"""Explanation metrics on request (``outputs.metrics``): Captum's infidelity and
sensitivity_max (``service.metrics``) on the attributions a request gets back, with the
perturbations defined here. Both scale with the input's spread ``s``: the standard deviation of
the example's elements in the model's input space (1 when it is 0 or undefined).

- ``infidelity``: perturbations I ~ N(0, (INFIDELITY_SCALE * s)^2) per element, perturbed
  inputs x - I; the mean over samples of (sum(attributions * I) - (f(x) - f(x - I)))^2 for
  the target's output (not normalised).
- ``sensitivity``: the algorithm re-run with its resolved params (and noise tunnel) on x plus
  uniform noise in [-SENSITIVITY_RADIUS * s, SENSITIVITY_RADIUS * s] per element; the max
  over samples of ||attr(x') - attr(x)|| / ||attr(x)|| (Frobenius norm).

Each metric runs seeded from the same seed (the run module seeds it), after the explanation
and outside its fused call; sample counts are capped by ``max_metric_samples``."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from service import metrics as M

from .algorithms import AlgorithmEntry, Family
from .errors import InvalidInput, LimitExceeded, shown
from .limits import Limits
from .request import OutputOptions

NAMES = ("infidelity", "sensitivity")
DEFAULT_SAMPLES = 8
INFIDELITY_SCALE = 0.1
SENSITIVITY_RADIUS = 0.02


def check(outputs: OutputOptions, limits: Limits, entry: AlgorithmEntry) -> None:
    """The metrics a request asks of ``entry``'s answer: known names, samples within the
    limit, and no infidelity for a layer method (it perturbs the input and needs attributions
    of the input's shape)."""
    for k, name in enumerate(outputs.metrics):
        if name not in NAMES:
            raise InvalidInput("outputs.metrics", f"unknown metric {shown(name)} (at [{k}])",
                               NAMES)
    if "infidelity" in outputs.metrics and entry.family is Family.LAYER:
        raise InvalidInput("outputs.metrics", f"infidelity perturbs the input and needs "
                           f"attributions of its shape; {entry.name} attributes to a layer",
                           ["sensitivity"])
    if outputs.metric_samples > limits.max_metric_samples:
        raise LimitExceeded("outputs.metric_samples", f"{outputs.metric_samples} is above the "
                            f"limit {limits.max_metric_samples} (max_metric_samples)")


def requested(outputs: OutputOptions) -> tuple[str, ...]:
    """The metric names asked for, each once, in NAMES' order."""
    return tuple(n for n in NAMES if n in outputs.metrics)


def samples(outputs: OutputOptions, limits: Limits) -> int:
    return outputs.metric_samples or min(DEFAULT_SAMPLES, limits.max_metric_samples)


def spread(x: Tensor) -> float:
    """``s``: the standard deviation of the elements of ``x`` (1, *shape), 1 when it is 0."""
    s = float(x.double().std()) if x.numel() > 1 else 0.0
    return s if math.isfinite(s) and s > 0 else 1.0


def gaussian_perturbation(sigma: float) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
    """Infidelity's perturbation: (I, x - I) with I ~ N(0, sigma^2) per element, drawn from
    torch's global generator in the input's dtype and device."""
    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = sigma * _randn(inputs)
        return noise, inputs - noise
    return perturb


def _randn(like: Tensor) -> Tensor:
    return torch.randn(like.shape, dtype=like.dtype, device=like.device)


def infidelity(forward: Callable[[Tensor], Tensor], rows: Tensor, attributions: Tensor,
               targets: list[int], n: int, budget: int) -> Tensor:
    """(T,) infidelity of ``attributions`` (T, *shape) for ``rows`` (T, *shape), one target
    each."""
    sigma = INFIDELITY_SCALE * spread(rows[:1])
    return M.infidelity(forward, gaussian_perturbation(sigma), rows, attributions,
                        target=targets, n_perturb_samples=n, max_examples_per_batch=budget)


def sensitivity(explain: Callable[..., Tensor], rows: Tensor, targets: list[int], n: int,
                budget: int) -> Tensor:
    """(T,) max-sensitivity of ``explain(inputs, target=...)`` around ``rows`` (T, *shape)."""
    radius = SENSITIVITY_RADIUS * spread(rows[:1])
    return M.sensitivity_max(explain, rows, perturb_radius=radius, n_perturb_samples=n,
                             max_examples_per_batch=budget, target=targets)
