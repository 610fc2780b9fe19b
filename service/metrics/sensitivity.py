"""Max-sensitivity: the largest relative change of an explanation under small input
perturbations."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from service.attribution._common import as_tuple, expand_args, format_args, format_baselines

from ._chunks import expand_target, interleave, perturb_chunks


def default_perturb_func(inputs: Any, perturb_radius: float = 0.02) -> tuple[Tensor, ...]:
    """Uniform noise in [-radius, radius] added to every element, drawn in float32 on the CPU
    from the global generator (Captum's draws), then moved to the input's device."""
    return tuple(x + torch.empty(x.shape, dtype=torch.float32).uniform_(
        -perturb_radius, perturb_radius).to(x.device) for x in as_tuple(inputs))


def _norm(t: Tensor, ord: Any) -> Tensor:
    return torch.linalg.norm(t, dim=1, keepdim=True) if ord == "fro" else \
        torch.norm(t, p=ord, dim=1, keepdim=True)


def sensitivity_max(explanation_func: Callable, inputs: Any,
                    perturb_func: Callable = default_perturb_func, perturb_radius: float = 0.02,
                    n_perturb_samples: int = 10, norm_ord: str = "fro",
                    max_examples_per_batch: int | None = None, **kwargs: Any) -> Tensor:
    """Per example: max over perturbed inputs x' of ||E(x) - E(x')|| / ||E(x)||, E being
    ``explanation_func(inputs, **kwargs)`` (e.g. an attribution method's ``attribute``).
    ``target``, ``additional_forward_args`` and per-example ``baselines`` in ``kwargs``
    are repeated with the examples."""
    if not callable(explanation_func) or not callable(perturb_func):
        raise TypeError("`explanation_func` and `perturb_func` must be callable")
    xs = as_tuple(inputs)
    n = xs[0].shape[0]
    takes_radius = len(inspect.signature(perturb_func).parameters) > 1
    with torch.no_grad():
        expl = as_tuple(explanation_func(xs, **kwargs), "explanation")
        flat = torch.cat([e.reshape(n, -1) for e in expl], dim=1)
        ref_norm = _norm(flat, norm_ord)
        ref_norm = torch.where(ref_norm == 0, torch.ones_like(ref_norm), ref_norm)
        best: Tensor | None = None
        for k in perturb_chunks(n, n_perturb_samples, max_examples_per_batch):
            reps = tuple(interleave(x, k) for x in xs)
            arg = reps[0] if len(reps) == 1 else reps
            perturbed = perturb_func(arg, perturb_radius) if takes_radius else perturb_func(arg)
            expl_p = as_tuple(explanation_func(perturbed, **_expand_kwargs(kwargs, xs, k)),
                              "explanation")
            diff = torch.cat([(interleave(e, k) - p).reshape(n * k, -1)
                              for e, p in zip(expl, expl_p)], dim=1)
            sens = (_norm(diff, norm_ord) / interleave(ref_norm, k)).reshape(n, -1).max(1).values
            best = sens if best is None else torch.max(best, sens)
    assert best is not None
    return best


def _expand_kwargs(kwargs: dict, xs: tuple[Tensor, ...], k: int) -> dict:
    out = dict(kwargs)
    if "target" in out:
        out["target"] = expand_target(out["target"], k)
    if out.get("additional_forward_args") is not None:
        out["additional_forward_args"] = expand_args(format_args(out["additional_forward_args"]),
                                                     k, interleave=True)
    if "baselines" in out and out["baselines"] is not None:
        bases = format_baselines(out["baselines"], xs)
        if isinstance(bases[0], Tensor) and bases[0].shape == xs[0].shape:
            expanded = tuple(interleave(b, k) if isinstance(b, Tensor) else b for b in bases)
            out["baselines"] = expanded if isinstance(out["baselines"], tuple) else expanded[0]
    return out
