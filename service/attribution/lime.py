"""LIME: fit a weighted linear surrogate of the model on random coalitions of interpretable
features around each example.

``LimeBase`` is the general algorithm over any sampling function, transforms and surrogate;
``Lime`` specialises it to feature-mask coalitions (an element keeps its input value when its
feature is on, takes the baseline otherwise). Where Captum fits one surrogate per example one
after another, ``Lime`` draws every example's samples in Captum's order, evaluates all
examples together, and fits all surrogates in one batched torch solve.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ._base import PerturbationAttribution
from ._batching import spans
from ._common import (
    Inputs,
    Target,
    as_tuple,
    check_choice,
    check_positive_int,
    expand_args,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
    run_forward,
)
from ._perturbation import (
    Evaluator,
    FeatureMasks,
    baseline_tensors,
    check_per_eval,
    coalition_inputs,
    detach_out,
    feature_masks,
    floating,
    spread,
)
from ._progress import progress
from .linear_model import Lasso, LinearModel

# ---------------------------------------------------------------------------------------------
# Default sampling and similarity


def default_perturb_func(original_inp: Tensor | tuple[Tensor, ...], **kwargs: Any) -> Tensor:
    """A random coalition: each of ``num_interp_features`` features on with probability 1/2,
    (1, F) long. One ``torch.bernoulli`` draw, as Captum's default."""
    n = kwargs.get("num_interp_features")
    if not isinstance(n, int):
        raise ValueError("`num_interp_features` is needed by the default perturb_func")
    device = (original_inp if isinstance(original_inp, Tensor) else original_inp[0]).device
    return torch.bernoulli(torch.full((1, n), 0.5)).to(device=device).long()


class ExpKernelSimilarity:
    """exp(-d^2 / (2 * kernel_width^2)) where d is the cosine or euclidean distance between the
    flattened original and perturbed inputs (computed in float32, as Captum does)."""

    def __init__(self, distance_mode: str = "cosine", kernel_width: float = 1.0) -> None:
        self.distance_mode = check_choice(distance_mode, "distance_mode", ("cosine", "euclidean"))
        self.kernel_width = float(kernel_width)

    def __call__(self, original_inp: Any, perturbed_inp: Any, interpretable_sample: Any,
                 **kwargs: Any) -> float:
        a = torch.cat([t.reshape(-1) for t in as_tuple(original_inp)]).float()
        b = torch.cat([t.reshape(-1) for t in as_tuple(perturbed_inp)]).float()
        return float(self.batched(a.unsqueeze(0), b.view(1, 1, -1))[0, 0])

    def batched(self, original: Tensor, perturbed: Tensor) -> Tensor:
        """original (P, E), perturbed (k, P, E) -> similarities (k, P)."""
        original, perturbed = original.float(), perturbed.float()
        if self.distance_mode == "cosine":
            d = 1 - F.cosine_similarity(perturbed, original.unsqueeze(0), dim=2)
        else:
            d = (perturbed - original.unsqueeze(0)).norm(dim=2)
        return torch.exp(-(d.double() ** 2) / (2 * self.kernel_width ** 2))


def get_exp_kernel_similarity_function(distance_mode: str = "cosine",
                                       kernel_width: float = 1.0) -> ExpKernelSimilarity:
    return ExpKernelSimilarity(distance_mode, kernel_width)


def default_from_interp_rep_transform(curr_sample: Tensor, original_inputs: Any,
                                      **kwargs: Any) -> Any:
    """Model input of one coalition: input where the feature is on, baseline elsewhere."""
    if "feature_mask" not in kwargs or "baselines" not in kwargs:
        raise ValueError("`feature_mask` and `baselines` are needed by the default transform")
    xs = as_tuple(original_inputs)
    masks = as_tuple(kwargs["feature_mask"], "feature_mask")
    bases = kwargs["baselines"] if isinstance(kwargs["baselines"], tuple) else \
        (kwargs["baselines"],)
    on = curr_sample[0].bool()
    out = tuple(torch.where(on[m].to(x.device), x, torch.as_tensor(b, dtype=x.dtype,
                                                                  device=x.device))
                for x, m, b in zip(xs, masks, bases))
    return out if is_tuple(original_inputs) else out[0]


# ---------------------------------------------------------------------------------------------
# LimeBase: the general algorithm


class LimeBase(PerturbationAttribution):
    """Samples with ``perturb_func`` (a function or a generator function), maps samples
    between the interpretable and the input space, weighs them with ``similarity_func`` and
    fits ``interpretable_model`` (Captum's interface: ``fit(DataLoader)``,
    ``representation()``) to the model outputs. Returns the representation."""

    def __init__(self, forward_func: Callable, interpretable_model: Any,
                 similarity_func: Callable, perturb_func: Callable,
                 perturb_interpretable_space: bool,
                 from_interp_rep_transform: Callable | None,
                 to_interp_rep_transform: Callable | None) -> None:
        super().__init__(forward_func)
        for name, value in (("interpretable_model.fit", getattr(interpretable_model, "fit", None)),
                            ("interpretable_model.representation",
                             getattr(interpretable_model, "representation", None)),
                            ("similarity_func", similarity_func), ("perturb_func", perturb_func)):
            if not callable(value):
                raise TypeError(f"`{name}` must be callable")
        if perturb_interpretable_space and from_interp_rep_transform is None:
            raise ValueError("`from_interp_rep_transform` is needed when sampling in the "
                             "interpretable space")
        if not perturb_interpretable_space and to_interp_rep_transform is None:
            raise ValueError("`to_interp_rep_transform` is needed when sampling in the "
                             "input space")
        self.interpretable_model = interpretable_model
        self.similarity_func = similarity_func
        self.perturb_func = perturb_func
        self.perturb_interpretable_space = perturb_interpretable_space
        self.from_interp_rep_transform = from_interp_rep_transform
        self.to_interp_rep_transform = to_interp_rep_transform

    def attribute(self, inputs: Tensor | tuple[Tensor, ...], target: Any = None,
                  additional_forward_args: Any = None, n_samples: int = 50,
                  perturbations_per_eval: int = 1, show_progress: bool = False,
                  **kwargs: Any) -> Tensor:
        check_positive_int(n_samples, "n_samples")
        per_eval = check_per_eval(perturbations_per_eval)
        xs = as_tuple(inputs)
        n = xs[0].shape[0]
        interps, sims, model_inputs = [], [], []
        for interp, model_inp in self._samples(inputs, n_samples, kwargs):
            interps.append(interp)
            model_inputs.append(as_tuple(model_inp))
            sim = self.similarity_func(inputs, model_inp, interp, **kwargs)
            sims.append(sim.reshape(-1) if isinstance(sim, Tensor)
                        else torch.tensor([float(sim)]))
        bar = progress(show_progress, math.ceil(len(model_inputs) / per_eval),
                       f"{self.get_name()} attribution")
        outputs = []
        try:
            with torch.inference_mode():
                tgt, args = Target.of(target, n), format_args(additional_forward_args)
                for start, stop in spans(len(model_inputs), per_eval):
                    k = stop - start
                    batch = tuple(torch.cat(ts) for ts in zip(*model_inputs[start:stop]))
                    out = run_forward(self.forward_func, batch, tgt.expand(k),
                                      expand_args(args, k))
                    bar.update()
                    if out.numel() != k:
                        raise ValueError(
                            f"the forward function must return one value per perturbed input "
                            f"(use a scalar output or a target); got shape {tuple(out.shape)} "
                            f"for {k} perturbed inputs"
                        )
                    outputs.append(out.reshape(-1).clone())
        finally:
            bar.close()
        data = TensorDataset(torch.cat([i.reshape(1, -1) for i in interps]).float(),
                             torch.cat(outputs).float(), torch.cat(sims).float())
        self.interpretable_model.fit(DataLoader(data, batch_size=len(interps)))
        return self.interpretable_model.representation()

    def _samples(self, inputs: Any, n_samples: int, kwargs: dict) -> Iterator[tuple[Any, Any]]:
        """(interpretable sample, model input) pairs, drawn in order."""
        gen = self.perturb_func(inputs, **kwargs) \
            if inspect.isgeneratorfunction(self.perturb_func) else None
        for _ in range(n_samples):
            try:
                sample = next(gen) if gen is not None else self.perturb_func(inputs, **kwargs)
            except StopIteration:
                return
            if self.perturb_interpretable_space:
                assert self.from_interp_rep_transform is not None
                yield sample, self.from_interp_rep_transform(sample, inputs, **kwargs)
            else:
                assert self.to_interp_rep_transform is not None
                yield self.to_interp_rep_transform(sample, inputs, **kwargs), sample

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:
        """Not available for Lime and Kernel SHAP, as in Captum."""
        raise NotImplementedError(
            f"{type(self).__name__} does not support attribute_future (asynchronous forward "
            f"functions)"
        )

    def has_convergence_delta(self) -> bool:
        return False

    @property
    def multiplies_by_inputs(self) -> bool:
        return False


# ---------------------------------------------------------------------------------------------
# Lime: feature-mask coalitions, one surrogate per example, fitted together


class Lime(LimeBase):
    """LIME over the feature groups of ``feature_mask`` (ids shifted to start at 0).

    Defaults: ``Lasso(alpha=0.01)`` solved in torch, an exponential cosine kernel of width 1,
    coalitions with each feature on with probability 1/2: Captum's defaults, drawn from the
    global generator in Captum's order (example by example), so a seeded run samples the same
    coalitions as Captum. A per-example model gets one surrogate per example; a model that
    aggregates its batch gets one surrogate for the batch (attributions with one row).
    """

    def __init__(self, forward_func: Callable, interpretable_model: Any = None,
                 similarity_func: Callable | None = None,
                 perturb_func: Callable | None = None) -> None:
        super().__init__(forward_func,
                         Lasso(alpha=0.01) if interpretable_model is None else interpretable_model,
                         similarity_func or ExpKernelSimilarity(),
                         perturb_func or default_perturb_func,
                         True, default_from_interp_rep_transform, None)

    def attribute(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                  baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None, n_samples: int = 25,
                  perturbations_per_eval: int = 1, return_input_shape: bool = True,
                  show_progress: bool = False) -> Tensor | tuple[Tensor, ...]:
        return self._attribute_kwargs(inputs, baselines, target, additional_forward_args,
                                      feature_mask, n_samples, perturbations_per_eval,
                                      return_input_shape, show_progress)

    def _attribute_kwargs(self, inputs: Tensor | tuple[Tensor, ...], baselines: Any,
                          target: Any, additional_forward_args: Any, feature_mask: Any,
                          n_samples: int, perturbations_per_eval: int,
                          return_input_shape: bool, show_progress: bool,
                          **kwargs: Any) -> Tensor | tuple[Tensor, ...]:
        check_positive_int(n_samples, "n_samples")
        per_eval = check_per_eval(perturbations_per_eval)
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        items = format_baselines(baselines, xs)
        bases = baseline_tensors(xs, items)
        masks = feature_masks(_shift_to_zero(feature_mask), xs, dense=False)
        n = xs[0].shape[0]
        tgt, args = Target.of(target, n), format_args(additional_forward_args)

        bar = progress(show_progress, 1 + math.ceil(n_samples / per_eval),
                       f"{self.get_name()} attribution")
        try:
            with torch.inference_mode():
                ev = Evaluator(self.forward_func, n, tgt, args, bar)
                dtype = floating(ev.initial(xs).dtype)
                per_example = ev.per_example and ev.n_out == n
                if not per_example and ev.n_out != 1:
                    raise ValueError(
                        f"Lime needs one output per example or one for the batch; the model "
                        f"gives shape {ev.out_shape} for {n} examples (give a `target`)"
                    )
                if not per_example and per_eval > 1:
                    raise ValueError("`perturbations_per_eval` must be 1 for a model that "
                                     "aggregates its batch into one output")
                problems = n if per_example else 1
                keep = self._draw(xs, bases, masks, problems, n_samples, was_tuple, kwargs)
                outputs, sims = self._evaluate(ev, xs, bases, masks, keep, per_eval,
                                               problems, was_tuple, kwargs)
        finally:
            bar.close()
        coefs = self._fit(keep, outputs, sims).to(dtype)                   # (P, F)
        if not return_input_shape:
            return coefs
        attrs = spread(coefs.T.contiguous(), masks, xs)                     # (P, *S) each
        return format_output(was_tuple, detach_out(attrs))

    # -- sampling ---------------------------------------------------------------------------

    def _problem(self, xs: Inputs, bases: Inputs, masks: FeatureMasks, p: int, problems: int,
                 was_tuple: bool, kwargs: dict) -> tuple[Any, dict]:
        """The inputs and keyword arguments Captum passes for problem ``p``."""
        rows = slice(p, p + 1) if problems > 1 else slice(None)
        inp = tuple(x[rows] for x in xs)
        base = tuple(b[rows] if b.shape[0] > 1 else b for b in bases)
        mask = tuple(m[rows] if m.shape[0] > 1 else m for m in masks.positions)
        one = (lambda t: t) if was_tuple else (lambda t: t[0])
        kw = {"baselines": one(base), "feature_mask": one(mask),
              "num_interp_features": masks.n_features, **kwargs}
        return one(inp), kw

    def _draw(self, xs: Inputs, bases: Inputs, masks: FeatureMasks, problems: int,
              n_samples: int, was_tuple: bool, kwargs: dict) -> Tensor:
        """Coalitions (S, P, F) bool, every problem's samples drawn in turn."""
        draws: list[Tensor] = []
        for p in range(problems):
            if self.perturb_func is default_perturb_func:
                # One draw of (S, F) gives the same numbers as S draws of (1, F).
                draws.append(torch.bernoulli(torch.full((n_samples, masks.n_features), 0.5)))
                self._fit_draws(masks.n_features)
                continue
            inp, kw = self._problem(xs, bases, masks, p, problems, was_tuple, kwargs)
            gen = self.perturb_func(inp, **kw) \
                if inspect.isgeneratorfunction(self.perturb_func) else None
            rows = []
            for _ in range(n_samples):
                try:
                    rows.append(next(gen) if gen is not None else self.perturb_func(inp, **kw))
                except StopIteration:
                    break
            draws.append(torch.cat([r.reshape(1, -1).cpu() for r in rows]))
            self._fit_draws(masks.n_features)
        return self._stack_draws(draws, xs)

    def _fit_draws(self, n_features: int) -> None:
        """Captum fits each example's surrogate before sampling the next one, and its fit
        draws from the global generator: a DataLoader's base seed, then the initialisation of
        an ``nn.Linear(F, 1)`` that receives the coefficients. With our batched solve, make
        the same draws, so the next example's samples (and the generator's state afterwards)
        are Captum's. A user's model is fitted later through its own DataLoader."""
        if isinstance(self.interpretable_model, LinearModel):
            torch.empty((), dtype=torch.int64).random_()
            torch.nn.Linear(n_features, 1)

    def _stack_draws(self, draws: list[Tensor], xs: Inputs) -> Tensor:
        count = min(d.shape[0] for d in draws)
        keep = torch.stack([d[:count] for d in draws], dim=1)              # (S, P, F)
        return keep.to(device=xs[0].device, dtype=torch.bool)

    def _evaluate(self, ev: Evaluator, xs: Inputs, bases: Inputs, masks: FeatureMasks,
                  keep: Tensor, per_eval: int, problems: int, was_tuple: bool,
                  kwargs: dict) -> tuple[Tensor, Tensor]:
        """Model outputs and similarities of every sample: (S, P) each."""
        n_samples = keep.shape[0]
        outputs = torch.empty(n_samples, problems, dtype=torch.float64, device=xs[0].device)
        sims = torch.empty_like(outputs)
        flat_original = _flatten(xs, problems, 1)[0]                      # (P, E)
        for start, stop in spans(n_samples, per_eval):
            k = stop - start
            batch = coalition_inputs(xs, bases, masks, keep[start:stop])  # (k * B, *S)
            outputs[start:stop] = ev(batch, k).reshape(k, problems).double()
            if isinstance(self.similarity_func, ExpKernelSimilarity):
                sims[start:stop] = self.similarity_func.batched(
                    flat_original, _flatten(batch, problems, k))
            else:
                sims[start:stop] = self._similarities(xs, bases, masks, batch, keep[start:stop],
                                                      problems, was_tuple, kwargs)
        return outputs, sims

    def _similarities(self, xs: Inputs, bases: Inputs, masks: FeatureMasks, batch: Inputs,
                      keep: Tensor, problems: int, was_tuple: bool, kwargs: dict) -> Tensor:
        k, n = keep.shape[0], xs[0].shape[0]
        out = torch.empty(k, problems, dtype=torch.float64)
        for p in range(problems):
            inp, kw = self._problem(xs, bases, masks, p, problems, was_tuple, kwargs)
            for j in range(k):
                rows = slice(j * n + p, j * n + p + 1) if problems > 1 else \
                    slice(j * n, (j + 1) * n)
                pert = tuple(t[rows] for t in batch)
                sim = self.similarity_func(inp, pert if was_tuple else pert[0],
                                           keep[j, p].long().reshape(1, -1), **kw)
                out[j, p] = float(sim.reshape(-1)[0]) if isinstance(sim, Tensor) else float(sim)
        return out.to(keep.device)

    # -- fitting ----------------------------------------------------------------------------

    def _fit(self, keep: Tensor, outputs: Tensor, sims: Tensor) -> Tensor:
        x = keep.transpose(0, 1).double()                                  # (P, S, F)
        y, w = outputs.T, sims.T                                           # (P, S)
        model = self.interpretable_model
        if isinstance(model, LinearModel):
            coef, _ = model.solve(x, y, w)
            return coef.to(outputs.dtype)
        coefs = []
        for p in range(x.shape[0]):
            data = TensorDataset(x[p].float(), y[p].float(), w[p].float())
            model.fit(DataLoader(data, batch_size=x.shape[1]))
            coefs.append(model.representation().reshape(1, -1))
        return torch.cat(coefs)


def _shift_to_zero(feature_mask: Any) -> Any:
    """Captum's Lime numbers features from the smallest id in the mask."""
    if feature_mask is None:
        return None
    masks = feature_mask if isinstance(feature_mask, tuple) else (feature_mask,)
    if not all(isinstance(m, Tensor) for m in masks):
        return feature_mask  # feature_masks() reports the type error
    lows = [int(m.min()) for m in masks
            if m.numel() and not m.is_complex() and m.dtype is not torch.bool]
    if not lows or min(lows) == 0:
        return feature_mask
    low = min(lows)
    shifted = tuple(m - low for m in masks)
    return shifted if isinstance(feature_mask, tuple) else shifted[0]


def _flatten(ts: Inputs, problems: int, k: int) -> Tensor:
    """Rows of ``k`` stacked batches, flattened per problem: (k, P, E) (or (P, E) for k=1
    via ``[0]``), every input tensor's elements concatenated as Captum flattens them."""
    parts = [t.reshape(k, problems, -1) for t in ts]
    return torch.cat(parts, dim=2)
