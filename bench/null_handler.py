"""TorchServe's floor, for bench/service_throughput.py's config (z): a handler that loads
nothing and answers every request of a batch with ``{}``. Served under the same load as our
handler, its rate is what TorchServe's frontend, its worker-side IPC and the load generator
allow on this machine with no work done: the rate no handler can exceed. For benchmarking
only."""

from __future__ import annotations


class NullHandler:
    def initialize(self, context) -> None:
        self.initialized = True

    def handle(self, data: list, context) -> list[str]:
        return ["{}"] * len(data)
