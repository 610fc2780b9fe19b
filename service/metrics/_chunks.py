"""How the perturbation samples of a metric are split into forward passes; Captum's split,
so a seeded perturbation function sees the same calls with the same sizes."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import Tensor

from service.attribution._common import TargetType, check_positive_int


def perturb_chunks(batch: int, n_perturb_samples: int,
                   max_examples_per_batch: int | None) -> Iterator[int]:
    """Samples per example in each pass: ``max_examples_per_batch // batch`` (at least 1, at
    most ``n_perturb_samples``), the last pass taking the remainder."""
    check_positive_int(n_perturb_samples, "n_perturb_samples")
    if max_examples_per_batch is None:
        per_pass = n_perturb_samples
    else:
        check_positive_int(max_examples_per_batch, "max_examples_per_batch")
        per_pass = min(max(max_examples_per_batch // batch, 1), n_perturb_samples)
    done = 0
    while done < n_perturb_samples:
        step = min(per_pass, n_perturb_samples - done)
        done += step
        yield step


def interleave(t: Tensor, n: int) -> Tensor:
    """Each row repeated ``n`` times in place (example-major)."""
    return t.repeat_interleave(n, dim=0)


def expand_target(target: TargetType, n: int) -> TargetType:
    """A per-example target for ``n`` consecutive copies of every example."""
    if isinstance(target, list):
        return [t for t in target for _ in range(n)]
    if isinstance(target, Tensor) and target.numel() > 1:
        return target.repeat_interleave(n)
    return target


__all__ = ["perturb_chunks", "interleave", "expand_target", "torch"]
