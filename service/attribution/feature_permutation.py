"""Permutation feature importance: shuffle each feature (group) across the batch and record
the change of the output."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._common import Inputs, as_tuple, format_args, format_output, is_tuple
from ._perturbation import FeatureMasks, check_per_eval, feature_masks
from .feature_ablation import FeatureAblation


def permute_feature(x: Tensor, feature_mask: Tensor) -> Tensor:
    """The default ``perm_func``: the masked elements of ``x`` (B, *S) take the values of
    another example, under a random permutation of the batch that is not the identity.

    Draws ``torch.randperm(B)`` from the global CPU generator, redrawing the identity, as
    Captum does, so a seeded run shuffles exactly as Captum's."""
    n = x.shape[0]
    perm = torch.randperm(n)
    identity = torch.arange(n)
    while bool((perm == identity).all()):
        perm = torch.randperm(n)
    return torch.where(feature_mask, x[perm.to(x.device)], x)


class FeaturePermutation(FeatureAblation):
    """Attribution of a feature = F(batch) - F(batch with the feature shuffled across
    examples). Needs at least two examples."""

    def __init__(self, forward_func: Callable,
                 perm_func: Callable[[Tensor, Tensor], Tensor] = permute_feature) -> None:
        super().__init__(forward_func)
        if not callable(perm_func):
            raise TypeError(f"`perm_func` must be callable, got {type(perm_func).__name__}")
        self.perm_func = perm_func

    def attribute(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                  target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                  perturbations_per_eval: int = 1, show_progress: bool = False
                  ) -> Tensor | tuple[Tensor, ...]:
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        if xs[0].shape[0] < 2:
            raise ValueError(
                f"`inputs` has {xs[0].shape[0]} example; FeaturePermutation shuffles features "
                f"across the batch and needs at least 2"
            )
        per_eval = check_per_eval(perturbations_per_eval)
        masks = feature_masks(feature_mask, xs)
        attrs = self._run(xs, xs, masks, target, format_args(additional_forward_args),
                          per_eval, show_progress)
        return format_output(was_tuple, attrs)

    def _perturb(self, xs: Inputs, bases: Inputs, masks: FeatureMasks,
                 chunk: list[int]) -> Inputs:
        # Draw order as in Captum: inputs in order, then the chunk's features in order; an
        # input holding any feature of the chunk gets a draw for every feature of the chunk.
        chunk_t = torch.tensor(chunk, device=masks.present[0].device)
        out = []
        for x, pos, here in zip(xs, masks.positions, masks.present):
            if not bool(here[chunk_t].any()):
                out.append(x.repeat(len(chunk), *([1] * (x.dim() - 1))))
                continue
            out.append(torch.cat([self.perm_func(x, pos == p) for p in chunk]))
        return tuple(out)
