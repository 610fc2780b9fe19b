"""Prediction: one forward pass for every request of the batch (one pass per request when the
batched pass fails), one copy of the outputs to the host, checked and turned into the batch's
predictions at once, then each explanation's targets resolved from its output."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from .errors import InvalidInput, ModelError
from .request import Prediction, Request, TargetKind
from .spec import ModelSpec
from .work import Outcomes, WorkItem, ms, unexpected


@functools.lru_cache(maxsize=64)
def default_target(default: str, class_names: tuple[str, ...]) -> int | None:
    """The class a spec's ``default_target`` names (an index or a label), or None: the
    predicted class (the same for every request of a model: read once)."""
    if default.lstrip("-").isdigit():
        return int(default)
    return class_names.index(default) if default in class_names else None


def targets(spec: ModelSpec, req: Request, output: Tensor, best: int | None = None) -> list[int]:
    """The class indices to explain, given the model's output ``(n_outputs,)`` (and its argmax
    ``best`` when the caller has it already)."""
    t = req.target
    kind = t.kind
    if kind is TargetKind.DEFAULT:
        fixed = default_target(spec.default_target, spec.class_names)
        if fixed is not None:
            return [fixed]
        kind = TargetKind.PREDICTED
    if kind is TargetKind.PREDICTED:
        return [best if best is not None else int(output.argmax())]
    if kind is TargetKind.INDEX:
        return [t.index]
    if kind is TargetKind.LABEL:
        index = spec.class_index(t.label)
        if index is None:  # the validator checked the label
            raise InvalidInput("target.label", f"unknown label {t.label!r}", spec.class_names)
        return [index]
    return [int(i) for i in output.topk(t.k).indices]


def predict(items: list[WorkItem], outcomes: Outcomes, forward: Callable[[Tensor], Tensor],
            spec: ModelSpec,
            describe: Callable[[Tensor], list[Prediction]] | None = None) -> list[WorkItem]:
    """Sets every item's output, (for explanations) targets and, given ``describe`` (the host
    outputs (rows, n_outputs) float64 -> each row's Prediction), prediction; returns the items
    still alive."""
    if not items:
        return items
    t0 = time.perf_counter()
    batch: Tensor | None = None  # (items, n_outputs) when the batched pass gave every output
    try:
        with torch.no_grad():
            outs = forward(torch.cat([i.x for i in items]))
        if outs.shape[0] != len(items):
            raise ModelError("", f"the model gave {outs.shape[0]} rows for {len(items)}")
        took = ms(t0)
        for i, out in zip(items, outs.unbind(0)):
            i.output, i.timings.predict_ms = out, took
        batch = outs
    except Exception:
        for i in items:
            t1 = time.perf_counter()
            try:
                with torch.no_grad():
                    i.output = forward(i.x)[0]
                i.timings.predict_ms = ms(t1)
            except Exception as e:
                outcomes[i.pos] = unexpected(e, i.req, "predict")
    alive = [i for i in items if outcomes[i.pos] is None and i.output is not None]
    finite: list[bool] = []
    best: list[int] = []
    predictions: list[Prediction | None] = [None] * len(alive)
    try:  # one copy to the host, one check and one argmax for the batch: (alive, n_outputs)
        with torch.no_grad():
            stacked = (batch if batch is not None and len(alive) == len(items)
                       else torch.stack([i.output for i in alive]))  # type: ignore[misc]
            host = stacked.detach().double().cpu()  # exact for every float dtype
            finite = np.isfinite(host.numpy()).all(axis=1).tolist()
            explain = any(i.req.explain for i in alive)
            best = stacked.argmax(dim=1).tolist() if explain else [-1] * len(alive)
    except Exception:  # outputs of different sizes (a model's per-request fallback): one by one
        finite = [bool(torch.isfinite(i.output).all()) for i in alive]  # type: ignore[arg-type]
        best = [-1] * len(alive)
    else:
        if describe is not None:
            t1 = time.perf_counter()
            try:
                predictions = list(describe(host))
            except Exception:  # each is then built with its response, failing alone
                predictions = [None] * len(alive)
            share = ms(t1) / max(len(alive), 1)  # the batch's time, shared out
            for i in alive:
                i.timings.postprocess_ms += share
    for i, ok, top, prediction in zip(alive, finite, best, predictions):
        i.prediction = prediction
        try:
            if not ok:
                raise InvalidInput("inputs", "the model's output on this input is not "
                                   "finite (values too large?)")
            if i.req.explain:  # a prediction has no targets
                i.targets = targets(spec, i.req, i.output,  # type: ignore[arg-type]
                                    top if top >= 0 else None)
        except Exception as e:
            outcomes[i.pos] = unexpected(e, i.req, "predict")
    return [i for i in items if outcomes[i.pos] is None]
