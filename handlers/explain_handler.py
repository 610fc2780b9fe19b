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

import logging
import os
import pathlib

import torch

from service import wire
from service.runtime import (
    BaselineCache,
    Executor,
    ExplainError,
    InvalidInput,
    Limits,
    load_spec,
)
from service.runtime.loader import load_model

log = logging.getLogger(__name__)

TRUE = ("1", "true", "yes")
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
                                 cache=cache)
        self.initialized = True
        log.info("model %s %s ready on %s (algorithms: %s)", spec.name, spec.version, device,
                 ", ".join(spec.algorithms))

    def handle(self, data: list[dict], context) -> list:
        ex = self.executor
        assert ex is not None, "initialize() was not called"
        max_bytes = ex.limits.max_body_bytes
        requests: list = []
        binary: list[bool] = []
        spec_rows: set[int] = set()
        for idx, row in enumerate(data):
            if row.get("spec") is not None:  # the gateway's GetModelSpec
                spec_rows.add(idx)
                binary.append(True)
                continue
            header = _text(context.get_request_header(idx, "explain")).lower()
            explain = header in TRUE or _text(row.get("explain")).lower() in TRUE
            serialized = row.get("explain_request")
            binary.append(serialized is not None)
            try:
                if serialized is not None:
                    req = wire.request_from_serialized(serialized, explain, max_bytes)
                else:
                    body = row.get("body") if row.get("body") is not None else row.get("data")
                    if body is None and set(row) - {"explain"}:
                        raise InvalidInput("body", "got form fields; send the ExplainRequest "
                                           "JSON with 'Content-Type: application/json', or "
                                           "the image bytes (curl -T image.png)")
                    req = wire.request_from_body(body, explain, max_bytes)
                req.request_id = req.request_id or _text(context.request_ids.get(idx, ""))
                requests.append(req)
            except ExplainError as e:
                requests.append(e)
        outcomes: list = list(ex.run(requests))
        for idx in sorted(spec_rows):
            outcomes.insert(idx, ex.spec)
        replies: list = []
        for idx, (outcome, is_binary) in enumerate(zip(outcomes, binary)):
            content_type = "application/x-protobuf" if is_binary else "application/json"
            context.set_response_content_type(idx, content_type)
            if idx in spec_rows:
                replies.append(wire.reply_to_bytes(outcome))
            elif isinstance(outcome, ExplainError):
                context.set_response_status(wire.http_status(outcome),
                                           wire.status_phrase(outcome), idx)
                replies.append(wire.reply_to_bytes(outcome) if is_binary
                               else wire.error_to_json(outcome))
            else:
                replies.append(wire.reply_to_bytes(outcome) if is_binary
                               else wire.response_to_json(outcome))
        self._metrics(context, [o for i, o in enumerate(outcomes) if i not in spec_rows])
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
