"""The vocabulary the executor's stages share: one request's work item, its deadline, and the
way an unexpected exception becomes that request's outcome."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import Tensor

from .algorithms import AlgorithmEntry
from .algorithms.tunnel import NoiseOptions
from .cache import CachedBaseline
from .errors import DeadlineExceeded, ExplainError, internal
from .layers import LayerChoice
from .limits import Limits
from .request import Prediction, Request, Response, Timings

Outcome = Response | ExplainError
Outcomes = list[Outcome | None]  # by request position; None while the request is still going
log = logging.getLogger("service.runtime.executor")


@dataclass
class WorkItem:
    """One valid request on its way through the batch."""

    pos: int
    req: Request
    x: Tensor                 # (1, *shape)
    shown: np.ndarray         # (numel,) values as the caller sent them
    entry: AlgorithmEntry | None = None
    params: dict[str, Any] = field(default_factory=dict)
    targets: list[int] = field(default_factory=list)
    output: Tensor | None = None  # (n_outputs,)
    baseline: CachedBaseline | None = None
    baseline_key: tuple | None = None
    layer: LayerChoice | None = None  # the layer of a layer, neuron or CAM method
    attributions: list[Tensor] = field(default_factory=list)
    noise: NoiseOptions | None = None  # the request's noise tunnel, resolved
    metrics: list[dict[str, float]] = field(default_factory=list)  # per target, by name
    layer_values: list[Tensor] = field(default_factory=list)  # LAYER family: (*layer shape)
    prediction: Prediction | None = None  # built for the batch (Responder.predictions)
    timings: Timings = field(default_factory=Timings)


def ms(t0: float) -> float:
    """Milliseconds since ``t0`` (a ``time.perf_counter()`` reading)."""
    return (time.perf_counter() - t0) * 1e3


def deadline_ms(req: Request, limits: Limits) -> int:
    """The request's deadline, capped by (and by default) ``max_deadline_ms``."""
    cap = limits.max_deadline_ms
    return min(req.deadline_ms, cap) if req.deadline_ms and req.deadline_ms > 0 else cap


def expires_at(req: Request, limits: Limits) -> float:
    """The ``time.monotonic()`` reading at which the request's deadline passes."""
    return req.received_at + deadline_ms(req, limits) / 1e3


def check_deadline(req: Request, limits: Limits) -> None:
    waited = (time.monotonic() - req.received_at) * 1e3
    if waited > deadline_ms(req, limits):
        raise DeadlineExceeded("deadline_ms", f"{waited:.0f} ms passed, the deadline "
                               f"was {deadline_ms(req, limits)} ms")


def unexpected(e: Exception, req: Request, stage: str) -> ExplainError:
    """An exception that is not an ExplainError: logged with its traceback, answered as a
    ModelError."""
    if isinstance(e, ExplainError):
        return e
    log.error("%s failed for request %r (algorithm %s)", stage, req.request_id,
              req.algorithm, exc_info=e)
    return internal(e, stage)
