"""TorchServe's floor, for bench/service_throughput.py's configs (z), (zp), (zpa) and (zph): a
handler that loads nothing and answers every request of a batch with ``{}``. Served under the
same load as our handler, its rate is what TorchServe's frontend, its worker-side IPC and the
load generator allow on this machine with no work done: the rate no handler can exceed.

The archive's spec.yaml may ask it (``null_handler:``) to answer a given ``answer`` text
instead (our handler's answer to the bench's request: what a larger answer costs the
transport) and, with ``headers: true``, to do with TorchServe's context per request what our
handler does (its own ``_meta`` reads the request's headers; then it sets the answer's
Content-Type): the cost of the transport's part of our answer, apart from computing it. For
benchmarking only."""

from __future__ import annotations

import os

import yaml


class NullHandler:
    def initialize(self, context) -> None:
        with open(os.path.join(context.system_properties["model_dir"], "spec.yaml")) as f:
            mode = (yaml.safe_load(f) or {}).get("null_handler") or {}
        self.answer = str(mode.get("answer", "{}"))
        self.meta = None
        if mode.get("headers", False):
            from handlers.explain_handler import ExplainHandler  # its code, not a copy

            self.meta = ExplainHandler._meta
        self.initialized = True

    def handle(self, data: list, context) -> list[str]:
        if self.meta is not None:
            for idx in range(len(data)):
                self.meta(context, idx)
                context.set_response_content_type(idx, "application/json")
        return [self.answer] * len(data)
