"""TorchServe handler: a thin adapter from TorchServe's context to service.runtime.

Per request it reads the kind of answer asked for (the ``explain`` request header set by the
frontend: False on /predictions, True on /explanations; or an ``explain`` key in a gRPC input
map), decodes the body (ExplainRequest JSON, raw PNG/JPEG bytes, or a serialized ExplainRequest
under the input key ``explain_request``), runs the batch through the runtime's executor, and
gives every request its own status with ``context.set_response_status(code, message, idx)``.
A serialized request is answered with a serialized ExplainReply (response or error), because
TorchServe's gRPC frontend drops per-request statuses; an input map carrying ``spec`` (the gRPC
gateway's GetModelSpec) is answered with the model's spec.
This file defines exactly one class: TorchServe refuses handler modules with more.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pathlib
from typing import cast

import torch

from service import wire
from service.runtime import (
    BaselineCache,
    Executor,
    ExplainError,
    InvalidInput,
    Limits,
    Request,
    default_table,
    load_spec,
)
from service.runtime.errors import internal
from service.runtime.loader import load_model

log = logging.getLogger(__name__)

TRUE = ("1", "true", "yes")
SPEC = "spec"  # the decoded form of the gateway's GetModelSpec marker
CACHE_BYTES_ENV = "EXPLAIN_BASELINE_CACHE_BYTES"


def _text(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


class ExplainHandler:
    """Predictions and explanations for one model archive carrying a spec.yaml."""

    def __init__(self) -> None:
        self.executor: Executor | None = None
        self.initialized = False

    def initialize(self, context) -> None:
        props = context.system_properties
        model_dir = pathlib.Path(props["model_dir"])
        spec = load_spec(model_dir / "spec.yaml")
        gpu_id = props.get("gpu_id")
        device = (torch.device(f"cuda:{gpu_id}")
                  if gpu_id is not None and torch.cuda.is_available() else torch.device("cpu"))
        limits = Limits.build(spec)
        cache = BaselineCache(int(os.environ.get(CACHE_BYTES_ENV, 256 * 1024 * 1024)))
        model = load_model(spec, model_dir, device)
        self.executor = Executor(model, spec, model_dir, limits=limits, device=device,
                                 cache=cache, table=default_table())
        self.initialized = True
        log.info("model %s %s ready on %s (algorithms: %s)", spec.name, spec.version, device,
                 ", ".join(spec.algorithms))

    def handle(self, data: list[dict], context) -> list:
        """One reply per request; never raises (an exception escaping here would fail every
        request of the batch with TorchServe's 503)."""
        try:
            return self._handle(data, context)
        except Exception as e:
            log.exception("handler failed for a batch of %d; every request answered 500",
                          len(data))
            error = internal(e, "handler")
            replies = []
            for idx in range(len(data)):
                with contextlib.suppress(Exception):
                    context.set_response_status(wire.http_status(error),
                                                wire.status_phrase(error), idx)
                replies.append(wire.error_to_json(error))
            return replies

    def _decode(self, idx: int, row: object, context) -> tuple[object, bool]:
        """(a Request, the spec marker, or an ExplainError; True for the serialized path)."""
        ex = self.executor
        assert ex is not None
        if not isinstance(row, dict):
            return InvalidInput("body", "unreadable request"), False
        if row.get("spec") is not None:  # the gateway's GetModelSpec
            return SPEC, True
        serialized = row.get("explain_request")
        try:
            header = _text(context.get_request_header(idx, "explain")).lower()
            explain = header in TRUE or _text(row.get("explain")).lower() in TRUE
            if serialized is not None:
                req = wire.request_from_serialized(serialized, explain, limits=ex.limits)
            else:
                body = row.get("body") if row.get("body") is not None else row.get("data")
                if body is None and set(row) - {"explain"}:
                    raise InvalidInput("body", "got form fields; send the ExplainRequest "
                                       "JSON with 'Content-Type: application/json', or "
                                       "the image bytes (curl -T image.png)")
                req = wire.request_from_body(body, explain, limits=ex.limits)
            req.request_id = req.request_id or _text(context.request_ids.get(idx, ""))
            return req, serialized is not None
        except ExplainError as e:
            return e, serialized is not None
        except Exception as e:
            log.exception("decoding request %d failed", idx)
            return internal(e, "decode"), serialized is not None

    def _encode(self, idx: int, outcome: object, is_binary: bool, context) -> bytes | str:
        ex = self.executor
        assert ex is not None
        try:
            if outcome is SPEC:
                return wire.reply_to_bytes(ex.spec, ex.limits, ex.table)
            if isinstance(outcome, ExplainError):
                context.set_response_status(wire.http_status(outcome),
                                            wire.status_phrase(outcome), idx)
                return (wire.reply_to_bytes(outcome) if is_binary
                        else wire.error_to_json(outcome))
            return (wire.reply_to_bytes(outcome) if is_binary  # type: ignore[arg-type]
                    else wire.response_to_json(outcome))  # type: ignore[arg-type]
        except Exception as e:
            log.exception("encoding the answer to request %d failed", idx)
            error = internal(e, "encode")
            context.set_response_status(wire.http_status(error), wire.status_phrase(error), idx)
            return wire.reply_to_bytes(error) if is_binary else wire.error_to_json(error)

    def _handle(self, data: list[dict], context) -> list:
        ex = self.executor
        assert ex is not None, "initialize() was not called"
        decoded = [self._decode(idx, row, context) for idx, row in enumerate(data)]
        work = [(idx, d) for idx, (d, _) in enumerate(decoded) if d is not SPEC]
        outcomes: list = [d for d, _ in decoded]
        batch = cast("list[Request | ExplainError]", [d for _, d in work])
        for (idx, _), outcome in zip(work, ex.run(batch)):
            outcomes[idx] = outcome
        replies: list = []
        for idx, (outcome, (_, is_binary)) in enumerate(zip(outcomes, decoded)):
            content_type = "application/x-protobuf" if is_binary else "application/json"
            context.set_response_content_type(idx, content_type)
            replies.append(self._encode(idx, outcome, is_binary, context))
        self._metrics(context, [o for o in outcomes if o is not SPEC])
        return replies

    def _metrics(self, context, outcomes: list) -> None:
        """Per-algorithm latency, fused group sizes and the baseline cache hit rate."""
        metrics = getattr(context, "metrics", None)
        if metrics is None or self.executor is None:
            return
        try:
            from ts.metrics.dimension import Dimension

            seen_groups = set()
            for o in outcomes:
                if isinstance(o, ExplainError) or not o.explanations:
                    continue
                dims = [Dimension("Algorithm", o.algorithm)]
                metrics.add_time("ExplainLatency", o.timings.explain_ms, dimensions=dims)
                key = (o.algorithm, o.timings.explain_ms)  # members of a group share both
                if key not in seen_groups:
                    seen_groups.add(key)
                    metrics.add_metric("FusedGroupSize", o.timings.fused_group_size, "count",
                                       dimensions=dims)
            stats = self.executor.cache.stats()
            metrics.add_percent("BaselineCacheHitRate", 100.0 * stats.hit_rate)
            metrics.add_metric("BaselineCacheHits", stats.hits, "count")
            metrics.add_metric("BaselineCacheMisses", stats.misses, "count")
        except Exception:  # metrics must never fail a request
            log.warning("metrics export failed", exc_info=True)
