"""Permutation feature importance: shuffle each feature (group) across the batch and record
the change of the output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from torch.futures import Future

from ._common import AttributionInputError, Inputs
from ._perturbation import FeatureMasks
from .feature_ablation import FeatureAblation


def permute_feature(x: Tensor, feature_mask: Tensor) -> Tensor:
    """The default ``perm_func``: the masked elements of ``x`` (B, *S) take the values of
    another example, under a random permutation of the batch that is not the identity.

    Draws ``torch.randperm(B)`` from the global CPU generator, redrawing the identity, as
    Captum does, so a seeded run shuffles exactly as Captum's."""
    n = x.shape[0]
    if n < 2:
        raise AttributionInputError(
            f"cannot permute a feature across a batch of {n} example(s): FeaturePermutation "
            f"needs at least 2"
        )
    perm = torch.randperm(n)
    identity = torch.arange(n)
    while bool((perm == identity).all()):
        perm = torch.randperm(n)
    return torch.where(feature_mask, x[perm.to(x.device)], x)


class FeaturePermutation(FeatureAblation):
    """Attribution of a feature = F(batch) - F(batch with the feature shuffled across
    examples). A feature held by an input with fewer than 2 examples
    (``_min_examples_per_batch_grouped``) cannot be shuffled: it is skipped with a logged
    warning and gets attribution 0, as in Captum."""

    def __init__(self, forward_func: Callable,
                 perm_func: Callable[[Tensor, Tensor], Tensor] = permute_feature) -> None:
        super().__init__(forward_func)
        if not callable(perm_func):
            raise TypeError(f"`perm_func` must be callable, got {type(perm_func).__name__}")
        self.perm_func = perm_func
        self._min_examples_per_batch_grouped = 2

    def attribute(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                  target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                  perturbations_per_eval: int = 1, show_progress: bool = False,
                  **kwargs: Any) -> Tensor | tuple[Tensor, ...]:
        return self._ablate(inputs, None, target, additional_forward_args, feature_mask,
                            perturbations_per_eval, show_progress, asynchronous=False)

    def attribute_future(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                         target: Any = None, additional_forward_args: Any = None,
                         feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                         perturbations_per_eval: int = 1, show_progress: bool = False,
                         **kwargs: Any) -> Future:
        return self._ablate(inputs, None, target, additional_forward_args, feature_mask,
                            perturbations_per_eval, show_progress, asynchronous=True)

    def _perturb(self, xs: Inputs, bases: Inputs, masks: FeatureMasks,
                 chunk: list[int]) -> Inputs:
        # Draw order as in Captum: inputs in order, then the chunk's features in order; an
        # input holding any feature of the chunk gets a draw for every feature of the chunk.
        chunk_t = torch.tensor(chunk, device=masks.present[0].device)
        out = []
        for x, pos, here in zip(xs, masks.positions, masks.present):
            if x.numel() == 0 or not bool(here[chunk_t].any()):
                out.append(x.repeat(len(chunk), *([1] * (x.dim() - 1))))
                continue
            out.append(torch.cat([self.perm_func(x, pos == p) for p in chunk]))
        return tuple(out)
