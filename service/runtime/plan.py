"""Planning fused groups: the memory a request's engine passes need (refused before it runs
when its smallest pass is above ``max_pass_bytes``), the rows each pass may hold, and the
grouping of requests that can share one engine call (same algorithm, params, input shape, rows
budget, reference set and layer choice, neuron included; one request per group for methods that
cannot fuse)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from service.attribution._batching import bytes_per_row

from .algorithms import BaselineMode
from .errors import LimitExceeded
from .limits import Limits
from .work import Outcomes, WorkItem, check_deadline, unexpected

MIB = 1024 * 1024


class PassBudget:
    """Rows and bytes of one engine pass, for one model."""

    def __init__(self, forward: Callable[[Tensor], Tensor], limits: Limits) -> None:
        self.forward, self.limits = forward, limits
        self._bytes_per_row: dict[tuple, float] = {}

    def row_bytes(self, x: Tensor) -> float:
        """Saved-activation bytes per row of one backward-taping pass, measured once per
        input shape."""
        key = tuple(x.shape[1:])
        if key not in self._bytes_per_row:
            self._bytes_per_row[key] = bytes_per_row(self.forward, x[:1])
        return self._bytes_per_row[key]

    @staticmethod
    def min_pass_rows(i: WorkItem) -> int:
        """Rows the smallest engine pass of this request holds: a reference set of K rows is
        evaluated K rows per example in one pass."""
        assert i.entry is not None
        if (i.entry.baseline_mode(i.params) is BaselineMode.REFERENCE_SET
                and i.baseline is not None):
            return int(i.baseline.tensor.shape[0])
        return 1

    def check(self, i: WorkItem) -> None:
        """LimitExceeded when the request's smallest pass is above ``max_pass_bytes``."""
        if i.entry is None:
            return
        per_row = self.row_bytes(i.x)
        rows = self.min_pass_rows(i)
        need = rows * per_row
        if need > self.limits.max_pass_bytes:
            raise LimitExceeded("baseline" if rows > 1 else "inputs",
                                f"one engine pass needs about {need / MIB:.0f} MiB ({rows} rows "
                                f"x {per_row / MIB:.1f} MiB), above the limit "
                                f"{self.limits.max_pass_bytes / MIB:.0f} MiB (max_pass_bytes)")

    def chunk_rows(self, i: WorkItem) -> int:
        """Rows per engine pass: the server's limit, the client's hint, and as many rows as
        ``max_pass_bytes`` holds (never below the request's smallest pass)."""
        hint = i.req.max_batch_rows
        rows = min(self.limits.max_batch_rows, hint) if hint else self.limits.max_batch_rows
        fit = int(self.limits.max_pass_bytes // max(1.0, self.row_bytes(i.x)))
        return max(1, self.min_pass_rows(i), min(rows, fit))


def group_key(i: WorkItem, budget: PassBudget) -> tuple:
    assert i.entry is not None
    key: tuple = (i.entry.name, tuple(sorted(i.params.items())), tuple(i.x.shape),
                  budget.chunk_rows(i), i.baseline_key, i.layer)
    if not i.entry.fusable or i.noise is not None:  # noise draws depend on the call's rows
        key += (("request", i.pos),)
    return key


def plan(items: list[WorkItem], budget: PassBudget, outcomes: Outcomes) -> list[list[WorkItem]]:
    """The fused groups of the explanation requests still alive, in arrival order; a request
    whose deadline passed, or that cannot be planned, gets its outcome here."""
    groups: dict[tuple, list[WorkItem]] = {}
    for i in items:
        try:
            check_deadline(i.req, budget.limits)
            key = group_key(i, budget)
        except Exception as e:
            outcomes[i.pos] = unexpected(e, i.req, "explain")
            continue
        groups.setdefault(key, []).append(i)
    return list(groups.values())
