"""Feature ablation: replace each feature (group) with its baseline and record the change of
the output. The shared perturbation core lives in ``_perturbation.py``; ``FeatureAblation``
works with any forward function, so layer and neuron variants ablate by wrapping theirs."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.futures import Future

from ._base import PerturbationAttribution
from ._batching import spans
from ._common import Inputs, Target, as_tuple, format_args, format_baselines, is_tuple
from ._perturbation import (
    Evaluator,
    FeatureMasks,
    baseline_tensors,
    check_per_eval,
    coalition_inputs,
    evaluate,
    feature_masks,
    floating,
    logger,
    spread,
)
from ._progress import progress


class FeatureAblation(PerturbationAttribution):
    """Attribution of a feature = F(inputs) - F(inputs with the feature set to its baseline).

    Features are the scalars of the inputs, or the groups of ``feature_mask`` (ids global
    across input tensors). Attributions have shape (n_out, *input.shape[1:]) where n_out is the
    number of targeted output values of the unperturbed batch: one per example for a
    per-example model, a fixed number for a model that aggregates its batch. They have the
    output's dtype (a Python float output gives float64, an int output int64, as in Captum).

    Captum's instance attributes: ``use_weights`` (average over overlapping ablations; gives
    float attributions) and ``_min_examples_per_batch_grouped`` (features in an input with
    fewer examples are skipped: attribution 0). A feature whose inputs are all empty is
    skipped too.
    """

    def __init__(self, forward_func: Callable) -> None:
        super().__init__(forward_func)
        self.use_weights = False
        self._min_examples_per_batch_grouped: int | None = None

    def attribute(self, inputs: Tensor | tuple[Tensor, ...], baselines: Any = None,
                  target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                  perturbations_per_eval: int = 1, show_progress: bool = False,
                  **kwargs: Any) -> Tensor | tuple[Tensor, ...]:
        """Captum 0.9's signature; ``**kwargs`` (e.g. Captum 0.8's
        ``enable_cross_tensor_attribution``: ids are always global) are accepted and unused."""
        return self._ablate(inputs, baselines, target, additional_forward_args, feature_mask,
                            perturbations_per_eval, show_progress, asynchronous=False)

    def attribute_future(self, inputs: Tensor | tuple[Tensor, ...], baselines: Any = None,
                         target: Any = None, additional_forward_args: Any = None,
                         feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                         perturbations_per_eval: int = 1, show_progress: bool = False,
                         **kwargs: Any) -> Future:
        """As ``attribute`` for a forward function that returns ``torch.futures.Future``:
        every pass is submitted at once; returns a Future of the attributions."""
        return self._ablate(inputs, baselines, target, additional_forward_args, feature_mask,
                            perturbations_per_eval, show_progress, asynchronous=True)

    def _ablate(self, inputs: Any, baselines: Any, target: Any, additional_forward_args: Any,
                feature_mask: Any, perturbations_per_eval: int, show_progress: bool,
                asynchronous: bool) -> Any:
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        per_eval = check_per_eval(perturbations_per_eval)
        bases = baseline_tensors(xs, format_baselines(baselines, xs))
        masks = feature_masks(feature_mask, xs, allow_empty=True)
        return self._run(xs, bases, masks, target, format_args(additional_forward_args),
                         per_eval, show_progress, was_tuple, asynchronous)

    def _run(self, xs: Inputs, bases: Inputs, masks: FeatureMasks, target: Any,
             args: tuple | None, per_eval: int, show_progress: bool, was_tuple: bool,
             asynchronous: bool) -> Any:
        order = self._active(xs, masks)
        chunks = [order[start:stop] for start, stop in spans(len(order), per_eval)]
        bar = progress(show_progress, 1 + math.ceil(masks.n_features / per_eval),
                       f"{self.get_name()} attribution")
        n = xs[0].shape[0]
        ev = Evaluator(self.forward_func, n, Target.of(target, n), args, bar, asynchronous)

        def batches() -> Iterator[tuple[Inputs, int]]:
            for chunk in chunks:
                yield self._perturb(xs, bases, masks, chunk), len(chunk)

        def finish(initial: Tensor, outputs: list[Tensor]) -> Inputs:
            # initial (n_out,), outputs (k, n_out) per chunk
            dtype = initial.dtype
            for out in outputs:
                dtype = torch.promote_types(dtype, out.dtype)
            if self.use_weights:
                dtype = floating(dtype)
            diffs = initial.new_zeros(masks.n_features, initial.numel(), dtype=dtype)
            for chunk, out in zip(chunks, outputs):
                diffs[chunk] = (initial.unsqueeze(0) - out).to(dtype)
            return spread(diffs, masks, xs, ev.per_example)

        return evaluate(ev, xs, batches(), finish, was_tuple)

    def _active(self, xs: Inputs, masks: FeatureMasks) -> list[int]:
        """Features to ablate, in Captum's order: those of an input with fewer than
        ``_min_examples_per_batch_grouped`` examples, or only in empty inputs, are skipped."""
        skip = torch.zeros(masks.n_features, dtype=torch.bool, device=xs[0].device)
        filled = torch.zeros_like(skip)
        least = self._min_examples_per_batch_grouped
        for x, here in zip(xs, masks.present):
            if least is not None and x.shape[0] < least:
                skip |= here
            if x.numel():
                filled |= here
        skip |= ~filled
        if bool(skip.any()):
            logger.warning("%s skips feature groups %s: an input holding them has fewer than "
                           "%s examples or is empty", self.get_name(),
                           masks.ids[skip].tolist(), least)
        return [f for f in masks.order if not bool(skip[f])]

    def _perturb(self, xs: Inputs, bases: Inputs, masks: FeatureMasks,
                 chunk: list[int]) -> Inputs:
        """One perturbed copy of the batch per feature in ``chunk``: (k * B, *S) per input."""
        keep = torch.ones(len(chunk), masks.n_features, dtype=torch.bool, device=xs[0].device)
        keep[torch.arange(len(chunk)), chunk] = False
        return coalition_inputs(xs, bases, masks, keep)
