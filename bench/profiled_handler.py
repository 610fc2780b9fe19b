"""Bench only: our handler with stage timers (bench/stages.py), for the per-stage profile of one
TorchServe worker under the bench load (bench/service_throughput.py, config ``p``).

Per batch it adds up the handler's stages, and between two batches the worker thread's CPU time
(``time.thread_time``: TorchServe's own IPC on the worker side: reading the frame from the
socket, its ``json.loads`` of application/json bodies, building and sending the reply) and the
wall time it waited for the next batch. Every second it writes the totals as JSON to
``$EXPLAIN_PROFILE_DIR/<model>-<pid>.json``. The served code is unchanged: the timers wrap it.
This file defines exactly one class (TorchServe refuses handler modules with more).
"""

from __future__ import annotations

import json
import os
import pathlib
import time

from bench.stages import StageClock
from handlers.explain_handler import ExplainHandler

PROFILE_DIR_ENV = "EXPLAIN_PROFILE_DIR"
IDLE_S = 1.0


class ProfiledHandler(ExplainHandler):
    def initialize(self, context) -> None:
        super().initialize(context)
        self.clock = StageClock().install()
        self.batches = self.requests = 0
        self.ipc_cpu = self.waited = 0.0
        self.last_end: tuple[float, float] | None = None  # (perf_counter, thread_time)
        self.last_dump = time.monotonic()
        out = os.environ.get(PROFILE_DIR_ENV)
        name = context.manifest.get("model", {}).get("modelName", "model") \
            if isinstance(getattr(context, "manifest", None), dict) else "model"
        self.out = pathlib.Path(out) / f"{name}-{os.getpid()}.json" if out else None

    def handle(self, data: list[dict], context) -> list:
        start = (time.perf_counter(), time.thread_time())
        if self.last_end is not None:
            cpu = start[1] - self.last_end[1]
            self.ipc_cpu += cpu
            gap = start[0] - self.last_end[0] - cpu
            if gap < IDLE_S:  # longer: the endpoint sat idle between windows, not under load
                self.waited += max(0.0, gap)
        with self.clock.stage("handler: other"):
            replies = super().handle(data, context)
        self.batches += 1
        self.requests += len(data)
        self.last_end = (time.perf_counter(), time.thread_time())
        if self.out is not None and time.monotonic() - self.last_dump > 1.0:
            self.last_dump = time.monotonic()
            self._dump()
        return replies

    def _dump(self) -> None:
        assert self.out is not None
        totals = {**self.clock.snapshot(), "TorchServe IPC (worker side)": self.ipc_cpu}
        tmp = self.out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"batches": self.batches, "requests": self.requests,
                                   "totals_s": totals, "waited_s": self.waited,
                                   "missing": self.clock.missing}))
        tmp.replace(self.out)
