"""Shapley values of feature groups: sampled over random feature orderings
(``ShapleyValueSampling``) or exact over all coalitions (``ShapleyValues``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.futures import Future

from ._base import PerturbationAttribution
from ._batching import spans
from ._common import (
    AttributionInputError,
    Inputs,
    Target,
    as_tuple,
    check_positive_int,
    format_args,
    format_baselines,
    is_tuple,
)
from ._perturbation import (
    Evaluator,
    FeatureMasks,
    baseline_tensors,
    check_per_eval,
    coalition_inputs,
    evaluate,
    feature_masks,
    floating,
    spread,
)
from ._progress import progress


class ShapleyValueSampling(PerturbationAttribution):
    """Mean marginal contribution of each feature over ``n_samples`` random orderings: walk
    from the baselines to the inputs adding one feature at a time.

    Orderings are ``torch.randperm(max feature id + 1)`` drawn one per sample from the global
    generator, as Captum draws them, so a seeded run follows Captum's orderings; ids absent
    from the mask contribute nothing and cost no forward pass. Attributions have shape
    (*output shape, *input.shape[1:]).
    """

    def __init__(self, forward_func: Callable) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Tensor | tuple[Tensor, ...], baselines: Any = None,
                  target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                  n_samples: int = 25, perturbations_per_eval: int = 1,
                  show_progress: bool = False) -> Tensor | tuple[Tensor, ...]:
        check_positive_int(n_samples, "n_samples")
        return self._attribute(inputs, baselines, target, additional_forward_args,
                               feature_mask, perturbations_per_eval, show_progress, n_samples)

    def attribute_future(self, inputs: Tensor | tuple[Tensor, ...], baselines: Any = None,
                         target: Any = None, additional_forward_args: Any = None,
                         feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                         n_samples: int = 25, perturbations_per_eval: int = 1,
                         show_progress: bool = False) -> Future:
        """As ``attribute`` for a forward function that returns ``torch.futures.Future``:
        every pass is submitted at once; returns a Future of the attributions.
        (``ShapleyValues`` ignores ``n_samples``: it is exact.)"""
        check_positive_int(n_samples, "n_samples")
        return self._attribute(inputs, baselines, target, additional_forward_args,
                               feature_mask, perturbations_per_eval, show_progress, n_samples,
                               asynchronous=True)

    def _attribute(self, inputs: Any, baselines: Any, target: Any, additional_forward_args: Any,
                   feature_mask: Any, perturbations_per_eval: int, show_progress: bool,
                   n_samples: int, asynchronous: bool = False) -> Any:
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        per_eval = check_per_eval(perturbations_per_eval)
        bases = baseline_tensors(xs, format_baselines(baselines, xs))
        masks = self._masks(feature_mask, xs)
        keep, plan = self._coalitions(masks, n_samples)                   # (n_coal, n)
        n = xs[0].shape[0]
        bar = progress(show_progress, 1 + math.ceil(keep.shape[0] / per_eval),
                       f"{self.get_name()} attribution")
        ev = Evaluator(self.forward_func, n, Target.of(target, n),
                       format_args(additional_forward_args), bar, asynchronous)
        chunks = list(spans(keep.shape[0], per_eval))

        def batches() -> Iterator[tuple[Inputs, int]]:
            for start, stop in chunks:
                yield coalition_inputs(xs, bases, masks, keep[start:stop]), stop - start

        def finish(base_out: Tensor, outputs: list[Tensor]) -> Inputs:
            # base_out (n_out,): the baselines' output; outputs (k, n_out) per chunk
            dtype = floating(base_out.dtype)
            values = torch.cat(outputs).to(dtype) if outputs else \
                base_out.new_zeros(0, base_out.numel(), dtype=dtype)
            phi = self._combine(values, base_out.to(dtype), masks, plan)  # (n_features, n_out)
            assert ev.out_shape is not None
            return tuple(a.reshape(*ev.out_shape, *x.shape[1:])
                         for a, x in zip(spread(phi, masks, xs, ev.per_example), xs))

        return evaluate(ev, bases, batches(), finish, was_tuple)

    # Sampling: coalitions are the prefixes of each ordering of the features in the mask.

    def _masks(self, feature_mask: Any, xs: Inputs) -> FeatureMasks:
        return feature_masks(feature_mask, xs, dense=False)

    def _coalitions(self, masks: FeatureMasks, n_samples: int) -> tuple[Tensor, Tensor | None]:
        """Coalitions to evaluate (bool, (n_coalitions, n_features)) and the plan that
        ``_combine`` needs: here the orderings of the used features, (S, F')."""
        n = masks.n_features
        device = masks.present[0].device
        used = torch.stack(masks.present).any(0)                          # (n,)
        perms = torch.stack([torch.randperm(n) for _ in range(n_samples)]).to(device)
        orders = perms[used[perms]].reshape(n_samples, -1)                # (S, F') used ids
        f_used = orders.shape[1]
        rank = torch.full((n_samples, n), n, dtype=torch.long, device=device)
        rank.scatter_(1, orders, torch.arange(f_used, device=device).expand(n_samples, -1))
        steps = torch.arange(f_used, device=device)
        keep = rank.unsqueeze(1) <= steps.view(1, -1, 1)                  # (S, F', n)
        return keep.reshape(n_samples * f_used, n), orders

    def _combine(self, values: Tensor, base_out: Tensor, masks: FeatureMasks,
                 orders: Tensor | None) -> Tensor:
        assert orders is not None
        n_samples, f_used = orders.shape
        v = values.reshape(n_samples, f_used, -1)                         # (S, F', n_out)
        prev = torch.cat([base_out.expand(n_samples, 1, -1), v[:, :-1]], dim=1)
        phi = values.new_zeros(masks.n_features, values.shape[1])
        phi.index_add_(0, orders.reshape(-1), (v - prev).reshape(-1, values.shape[1]))
        return phi / n_samples


class ShapleyValues(ShapleyValueSampling):
    """Exact Shapley values over all 2**F coalitions of the F feature groups in the mask:
    phi_i = sum over coalitions S without i of |S|! (F - |S| - 1)! / F! * (v(S + i) - v(S)).

    Same values as Captum's average over all F! orderings, with 2**F forward passes instead of
    F * F!; more than ``max_features`` groups is refused (use ShapleyValueSampling).
    """

    max_features = 16

    def attribute(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                  baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None,
                  perturbations_per_eval: int = 1, show_progress: bool = False
                  ) -> Tensor | tuple[Tensor, ...]:
        return self._attribute(inputs, baselines, target, additional_forward_args,
                               feature_mask, perturbations_per_eval, show_progress, 0)

    def _masks(self, feature_mask: Any, xs: Inputs) -> FeatureMasks:
        masks = feature_masks(feature_mask, xs, dense=True)
        if masks.n_features > self.max_features:
            raise AttributionInputError(
                f"exact Shapley values need 2**F forward passes; `feature_mask` defines "
                f"{masks.n_features} features, the limit is {self.max_features}. Group the "
                f"features with `feature_mask` or use ShapleyValueSampling"
            )
        return masks

    def _coalitions(self, masks: FeatureMasks, n_samples: int) -> tuple[Tensor, Tensor | None]:
        n = masks.n_features
        device = masks.present[0].device
        codes = torch.arange(2 ** n, device=device)
        bits = 2 ** torch.arange(n, device=device)
        return (codes.unsqueeze(1) & bits) != 0, None                     # (2**n, n)

    def _combine(self, values: Tensor, base_out: Tensor, masks: FeatureMasks,
                 orders: Tensor | None) -> Tensor:
        n = masks.n_features
        device = values.device
        codes = torch.arange(2 ** n, device=device)
        size = torch.zeros_like(codes)
        for f in range(n):
            size += (codes >> f) & 1
        weight = torch.tensor([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
                               for s in range(n)], dtype=values.dtype, device=device)
        phi = values.new_zeros(n, values.shape[1])
        for f in range(n):
            without = codes[((codes >> f) & 1) == 0]
            gain = values[without | (1 << f)] - values[without]           # (2**(n-1), n_out)
            phi[f] = (weight[size[without]].unsqueeze(1) * gain).sum(0)
        return phi
