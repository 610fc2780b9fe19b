"""Attribution of a metric computed over a whole dataloader (Captum's ``DataLoaderAttribution``).

Feature ablation where one evaluation is a full pass over the data: the forward outputs of
every batch are folded by ``reduce`` and turned into a metric tensor by ``to_metric``; each
feature (group of ``feature_mask``, the same for every batch) is set to its baseline in every
batch, and its attribution is the drop of each metric value. One traversal gives the
unperturbed metric, then each traversal evaluates ``perturbations_per_pass`` features, calling
the forward once per batch and perturbation.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from enum import IntEnum
from typing import Any

import torch
from torch import Tensor

from ._base import Attribution
from ._batching import spans
from ._common import (
    AttributionInputError,
    check_baselines,
    check_positive_int,
    format_baselines,
    format_output,
)
from ._perturbation import FeatureMasks, detach_out, feature_masks, spread
from ._progress import progress
from .feature_ablation import FeatureAblation


class InputRole(IntEnum):
    """What each element of a dataloader's batch is for."""

    need_attr = 0      # passed to the forward and attributed (a tensor)
    need_forward = 1   # passed to the forward, not attributed (e.g. a mask or lengths)
    no_forward = 2     # not passed to the forward (e.g. the label); still given to ``reduce``


def concat_outputs(accum: Tensor | None, output: Tensor, inputs: tuple) -> Tensor:
    """The default ``reduce``: the outputs of all batches concatenated along dim 0."""
    return output if accum is None else torch.cat([accum, output])


SUPPORTED_METHODS = (FeatureAblation,)


class DataLoaderAttribution(Attribution):
    """Wraps a ``FeatureAblation`` so its ``attribute`` takes a dataloader."""

    def __init__(self, attr_method: Attribution) -> None:
        if type(attr_method) not in SUPPORTED_METHODS:
            raise AttributionInputError(
                f"`attr_method` must be a FeatureAblation, got {type(attr_method).__name__}")
        super().__init__(attr_method.forward_func)
        self.attr_method = attr_method

    def attribute(self, dataloader: Iterable, input_roles: tuple[int, ...] | None = None,
                  baselines: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                  reduce: Callable | None = None, to_metric: Callable | None = None,
                  perturbations_per_pass: int = 1, show_progress: bool = False,
                  return_input_shape: bool = True) -> Tensor | tuple[Tensor, ...]:
        """Attributions of the metric to the features of the attributed batch elements.

        ``baselines`` and ``feature_mask`` have one entry per attributed element (role 0), each
        a number or a tensor of one example (1, *element.shape[1:]); mask ids are global across
        elements, 0..n_features-1. ``reduce(accum, output, batch) -> accum`` folds each batch's
        forward output (default: concatenation); ``to_metric(accum) -> Tensor`` (default: the
        accumulation itself). Returns, with M metric values, a tensor (M, *element.shape[1:])
        per attributed element (a tuple when batches are tuples or lists), or with
        ``return_input_shape=False`` one tensor (M, n_features).
        """
        first = next(iter(dataloader), None)
        if first is None:
            raise ValueError("`dataloader` yields no batch")
        was_tuple, batch = _as_batch(first)
        roles = _check_roles(input_roles, len(batch))
        attr_idx = [i for i, r in enumerate(roles) if r == InputRole.need_attr]
        attr_inputs = tuple(batch[i] for i in attr_idx)
        for i, x in zip(attr_idx, attr_inputs):
            if not isinstance(x, Tensor):
                raise TypeError(f"batch element {i} has role need_attr (0) but is a "
                                f"{type(x).__name__}, not a tensor")
        items = format_baselines(baselines, attr_inputs)
        check_baselines(attr_inputs, items)
        for i, b in enumerate(items):
            if isinstance(b, Tensor) and b.shape[0] != 1:
                raise AttributionInputError(
                    f"`baselines[{i}]` has {b.shape[0]} rows; a tensor baseline must be one "
                    f"example (1, *shape) broadcast to every batch")
        masks = feature_masks(feature_mask, attr_inputs, dense=False)
        for i, pos in enumerate(masks.positions):
            if pos.shape[0] != 1:
                raise AttributionInputError(
                    f"`feature_mask[{i}]` has {pos.shape[0]} rows; it must be one mask "
                    f"(1, *shape) used for every batch")
        per_pass = check_positive_int(perturbations_per_pass, "perturbations_per_pass")
        run = _Traversal(self.forward_func, dataloader, roles, attr_idx, items, masks,
                         reduce or concat_outputs, to_metric)

        active = sorted(masks.order)                       # the ids that occur in a mask
        bar = progress(show_progress, 1 + math.ceil(len(active) / per_pass),
                       f"{self.get_name()} attribution")
        try:
            with torch.inference_mode():
                initial = run([None])[0].reshape(-1)                       # (M,)
                bar.update()
                diffs = initial.new_zeros(masks.n_features, initial.numel())  # (n_features, M)
                for start, stop in spans(len(active), per_pass):
                    chunk = active[start:stop]
                    metrics = run(chunk)
                    for f, metric in zip(chunk, metrics):
                        if metric.numel() != initial.numel():
                            raise ValueError(
                                f"the metric has {metric.numel()} values with feature {f} "
                                f"ablated but {initial.numel()} unperturbed; it must keep its size")
                        diffs[f] = initial - metric.reshape(-1)
                    bar.update()
                if return_input_shape:
                    attrs = spread(diffs, masks, attr_inputs)
                else:
                    attrs = (diffs.T,)                                      # (M, n_features)
        finally:
            bar.close()
        attrs = detach_out(attrs)
        if not return_input_shape:
            return attrs[0]
        return format_output(was_tuple, attrs)

    def attribute_future(self) -> Callable:
        raise NotImplementedError("attribute_future is not implemented for DataLoaderAttribution")


class _Traversal:
    """One pass over the dataloader evaluating several perturbations (a feature id to ablate,
    or None for the unperturbed data); returns one metric tensor per perturbation."""

    def __init__(self, forward_func: Callable, dataloader: Iterable, roles: tuple[int, ...],
                 attr_idx: list[int], baselines: tuple, masks: FeatureMasks,
                 reduce: Callable, to_metric: Callable | None) -> None:
        self.forward_func, self.dataloader = forward_func, dataloader
        self.roles, self.attr_idx = roles, attr_idx
        self.baselines, self.masks = baselines, masks
        self.reduce, self.to_metric = reduce, to_metric

    def __call__(self, features: Sequence[int | None]) -> list[Tensor]:
        accums: list[Any] = [None] * len(features)
        for raw in self.dataloader:
            _, batch = _as_batch(raw)
            if len(batch) != len(self.roles):
                raise ValueError(f"every batch must have {len(self.roles)} elements (one per "
                                 f"input role), got {len(batch)}")
            for j, f in enumerate(features):
                perturbed = batch if f is None else self._ablate(batch, f)
                forward_inputs = tuple(x for x, r in zip(perturbed, self.roles)
                                       if r != InputRole.no_forward)
                output = self.forward_func(*forward_inputs)
                accums[j] = self.reduce(accums[j], output, perturbed)
        metrics = []
        for accum in accums:
            metric = self.to_metric(accum) if self.to_metric is not None else accum
            if not isinstance(metric, Tensor):
                raise AttributionInputError(
                    f"the metric to attribute must be a Tensor, got {type(metric).__name__}: "
                    f"give a `to_metric` (or a `reduce`) that returns one")
            metrics.append(metric)
        return metrics

    def _ablate(self, batch: tuple, feature: int) -> tuple:
        """``batch`` with the elements of ``feature`` set to their baselines."""
        out = list(batch)
        for k, i in enumerate(self.attr_idx):
            if not bool(self.masks.present[k][feature]):
                continue
            x = batch[i]                                                   # (B, *S)
            b = torch.as_tensor(self.baselines[k], device=x.device)
            b = b.to(torch.result_type(x, b))        # an int input with a float baseline: float
            where = self.masks.positions[k] == feature                     # (1, *S)
            out[i] = torch.where(where, b, x)
        return tuple(out)


def _as_batch(raw: Any) -> tuple[bool, tuple]:
    """(was_tuple, elements) of one batch: a tensor, or a tuple or list of elements."""
    if isinstance(raw, Tensor):
        return False, (raw,)
    if isinstance(raw, (tuple, list)) and raw:
        return True, tuple(raw)
    raise TypeError(f"the dataloader must yield a tensor or a non-empty tuple or list, got "
                    f"{type(raw).__name__}")


def _check_roles(input_roles: Any, n: int) -> tuple[int, ...]:
    if not input_roles:
        return (InputRole.need_attr,) * n
    roles = tuple(input_roles)
    if len(roles) != n:
        raise AttributionInputError(
            f"`input_roles` has {len(roles)} entries but each batch has {n} elements")
    allowed = {int(r) for r in InputRole}
    for i, r in enumerate(roles):
        if isinstance(r, bool) or not isinstance(r, int) or int(r) not in allowed:
            raise AttributionInputError(f"`input_roles[{i}]` must be 0 (need_attr), 1 "
                                        f"(need_forward) or 2 (no_forward), got {r!r}")
    if InputRole.need_attr not in roles:
        raise AttributionInputError(
            f"`input_roles` {roles} must mark at least one element need_attr (0)")
    return roles

