"""TorchServe handler: a thin adapter from TorchServe's context to service.runtime.

Per request it reads the kind of answer asked for (the ``explain`` request header set by the
frontend: False on /predictions, True on /explanations; or an ``explain`` key in a gRPC input
map), decodes the row (service.wire.rows: ExplainRequest JSON, raw PNG/JPEG bytes, a serialized
ExplainRequest, or the gateway's spec marker), runs the batch through the runtime's executor,
and gives every request its own status with ``context.set_response_status(code, message, idx)``.
A serialized request is answered with a serialized ExplainReply (response or error), because
TorchServe's gRPC frontend drops per-request statuses. A text request with ``stream_tokens``
gets its parts first, each sent for that request alone with TorchServe's intermediate response
(its batch-mates are untouched).
This file defines exactly one class: TorchServe refuses handler modules with more.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pathlib
import time

import torch

from service import wire
from service.runtime import (
    BaselineCache,
    Executor,
    ExplainError,
    Limits,
    Request,
    default_table,
    load_spec,
    malloc,
)
from service.runtime.errors import internal
from service.runtime.loader import load_model
from service.runtime.spec import InputKind
from service.runtime.text import TextExecutor
from service.wire.rows import Row, SpecAsked, decode_row, encode_outcome, encode_part, streams

log = logging.getLogger(__name__)

CACHE_BYTES_ENV = "EXPLAIN_BASELINE_CACHE_BYTES"
CHANNELS_LAST_ENV = "EXPLAIN_CHANNELS_LAST"  # 1 | 0 | unset: the executor decides
CACHE_METRICS_EVERY_S = 1.0


class ExplainHandler:
    """Predictions and explanations for one model archive carrying a spec.yaml."""

    def __init__(self) -> None:
        self.executor: Executor | TextExecutor | None = None
        self.initialized = False
        self._cache_metrics_at = -math.inf   # when the cache's metrics were last written

    def initialize(self, context) -> None:
        props = context.system_properties
        model_dir = pathlib.Path(props["model_dir"])
        spec = load_spec(model_dir / "spec.yaml")
        gpu_id = props.get("gpu_id")
        device = (torch.device(f"cuda:{gpu_id}")
                  if gpu_id is not None and torch.cuda.is_available() else torch.device("cpu"))
        malloc.tune_worker(spec.input_shape)
        limits = Limits.build(spec)
        cache = BaselineCache(int(os.environ.get(CACHE_BYTES_ENV, 256 * 1024 * 1024)))
        model = load_model(spec, model_dir, device)
        if spec.input_kind is InputKind.TEXT:
            self.executor = TextExecutor(model, spec, model_dir, limits=limits, device=device)
        else:
            layout = os.environ.get(CHANNELS_LAST_ENV, "").strip()
            self.executor = Executor(model, spec, model_dir, limits=limits, device=device,
                                     cache=cache, table=default_table(),
                                     channels_last=None if layout == "" else layout == "1")
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

    def _handle(self, data: list[dict], context) -> list:
        ex = self.executor
        assert ex is not None, "initialize() was not called"
        rows: list[Row] = []
        for idx, body in enumerate(data):
            explain, request_id, content_type, accept = self._meta(context, idx)
            rows.append(decode_row(body, explain, request_id, ex.limits, content_type, accept))
        work: list[tuple[int, Request | ExplainError]] = [
            (idx, r.item) for idx, r in enumerate(rows) if not isinstance(r.item, SpecAsked)]
        outcomes: list = [r.item for r in rows]
        sent: set[int] = set()   # rows that were sent parts

        def on_part(pos: int, part) -> None:
            idx = work[pos][0]
            context.set_response_content_type(idx, rows[idx].content_type)
            send_part(context, idx, encode_part(part, rows[idx].answer))
            sent.add(idx)

        items = [item for _, item in work]
        results = ex.run(items, on_part) if isinstance(ex, TextExecutor) else ex.run(items)
        for (idx, _), outcome in zip(work, results):
            outcomes[idx] = outcome
        replies: list = []
        for idx, (outcome, row) in enumerate(zip(outcomes, rows)):
            context.set_response_content_type(idx, row.content_type)
            payload, error = encode_outcome(outcome, row.answer, ex.spec, ex.limits, ex.table,
                                            ex.layers, streams(row), idx in sent)
            if error is not None:
                context.set_response_status(wire.http_status(error), wire.status_phrase(error),
                                            idx)
            if row.stream_call:   # StreamPredictions fails the worker on a final without it
                context.set_response_header(idx, "ts_stream_next", "false")
            replies.append(payload)
        if any(isinstance(item, Request) and item.explain for _, item in work):
            self._metrics(context, [o for o in outcomes if not isinstance(o, SpecAsked)])
        return replies

    @staticmethod
    def _meta(context, idx: int) -> tuple[object, object, str, str]:
        """The request's ``explain`` header, TorchServe request id, Content-Type and Accept
        headers ("" when unreadable; HTTP header names in any case)."""
        try:
            headers: dict = getattr(context, "get_all_request_header", lambda i: {})(idx) or {}
            http = {str(k).lower(): v for k, v in headers.items() if isinstance(v, str)}
            return (context.get_request_header(idx, "explain"), context.request_ids.get(idx, ""),
                    http.get("content-type", ""), http.get("accept", ""))
        except Exception:
            log.warning("request %d: unreadable headers", idx, exc_info=True)
            return "", "", "", ""

    def _metrics(self, context, outcomes: list) -> None:
        """Per-algorithm latency and group size once per fused group (its members share both:
        a gauge per request repeated the same value), and the baseline cache's hit rate at most
        once a second (cumulative figures), for a batch that asked for explanations
        (predictions change none of them). TorchServe writes every metric as a log line that
        its frontend parses: one per request cost ~8 % of a tabular batch's worker time."""
        metrics = getattr(context, "metrics", None)
        if metrics is None or self.executor is None:
            return
        try:
            from ts.metrics.dimension import Dimension

            seen_groups = set()
            for o in outcomes:
                if isinstance(o, ExplainError) or not o.explanations:
                    continue
                key = (o.algorithm, o.timings.explain_ms)  # members of a group share both
                if key in seen_groups:
                    continue
                seen_groups.add(key)
                dims = [Dimension("Algorithm", o.algorithm)]
                metrics.add_time("ExplainLatency", o.timings.explain_ms, dimensions=dims)
                metrics.add_metric("FusedGroupSize", o.timings.fused_group_size, "count",
                                   dimensions=dims)
            now = time.monotonic()
            if now - self._cache_metrics_at >= CACHE_METRICS_EVERY_S:
                self._cache_metrics_at = now
                stats = self.executor.cache.stats()
                metrics.add_percent("BaselineCacheHitRate", 100.0 * stats.hit_rate)
                metrics.add_metric("BaselineCacheHits", stats.hits, "count")
                metrics.add_metric("BaselineCacheMisses", stats.misses, "count")
        except Exception:  # metrics must never fail a request
            log.warning("metrics export failed", exc_info=True)


def send_part(context, idx: int, payload: bytes | str) -> None:
    """One intermediate response for request ``idx`` of the batch alone (TorchServe 0.12)."""
    from ts.handler_utils.utils import send_intermediate_predict_response

    send_intermediate_predict_response({idx: payload}, {idx: context.request_ids[idx]},
                                       "Intermediate response", 200, context)
