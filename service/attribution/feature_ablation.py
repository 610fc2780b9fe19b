"""Feature ablation: replace each feature (group) with its baseline and record the change of
the output. The shared perturbation core lives in ``_perturbation.py``; ``FeatureAblation``
works with any forward function, so layer and neuron variants ablate by wrapping theirs."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from ._base import PerturbationAttribution
from ._batching import spans
from ._common import (
    Inputs,
    Target,
    as_tuple,
    check_baselines,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
)
from ._perturbation import (
    Evaluator,
    FeatureMasks,
    baseline_tensors,
    check_per_eval,
    coalition_inputs,
    detach_out,
    feature_masks,
    spread,
)
from ._progress import progress


class FeatureAblation(PerturbationAttribution):
    """Attribution of a feature = F(inputs) - F(inputs with the feature set to its baseline).

    Features are the scalars of the inputs, or the groups of ``feature_mask`` (ids global
    across input tensors). Attributions have shape (n_out, *input.shape[1:]) where n_out is the
    number of targeted output values of the unperturbed batch: one per example for a
    per-example model, a fixed number for a model that aggregates its batch.
    """

    def __init__(self, forward_func: Callable) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Tensor | tuple[Tensor, ...], baselines: Any = None,
                  target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                  perturbations_per_eval: int = 1, show_progress: bool = False
                  ) -> Tensor | tuple[Tensor, ...]:
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        items = format_baselines(baselines, xs)
        check_baselines(xs, items)
        per_eval = check_per_eval(perturbations_per_eval)
        masks = feature_masks(feature_mask, xs)
        attrs = self._run(xs, baseline_tensors(xs, items), masks, target,
                          format_args(additional_forward_args), per_eval, show_progress)
        return format_output(was_tuple, attrs)

    def _run(self, xs: Inputs, bases: Inputs, masks: FeatureMasks, target: Any,
             args: tuple | None, per_eval: int, show_progress: bool) -> Inputs:
        n_passes = 1 + math.ceil(masks.n_features / per_eval)
        bar = progress(show_progress, n_passes, f"{self.get_name()} attribution")
        try:
            with torch.inference_mode():
                ev = Evaluator(self.forward_func, xs[0].shape[0], Target.of(target, xs[0].shape[0]),
                               args, bar)
                initial = ev.initial(xs)                                  # (n_out,)
                diffs = initial.new_zeros(masks.n_features, initial.numel())
                order = masks.order
                for start, stop in spans(len(order), per_eval):
                    chunk = order[start:stop]
                    out = ev(self._perturb(xs, bases, masks, chunk), len(chunk))  # (k, n_out)
                    diffs[chunk] = initial.unsqueeze(0) - out
                attrs = spread(diffs, masks, xs)
        finally:
            bar.close()
        return detach_out(attrs)

    def _perturb(self, xs: Inputs, bases: Inputs, masks: FeatureMasks,
                 chunk: list[int]) -> Inputs:
        """One perturbed copy of the batch per feature in ``chunk``: (k * B, *S) per input."""
        keep = torch.ones(len(chunk), masks.n_features, dtype=torch.bool, device=xs[0].device)
        keep[torch.arange(len(chunk)), chunk] = False
        return coalition_inputs(xs, bases, masks, keep)
