"""How many variants of a batch go into one forward/backward pass.

Given Captum's ``internal_batch_size`` (rows per pass) it is honoured as Captum does. Given None,
the engine picks the pass size itself, from the activation memory the model saves for its
backward pass: it measures the bytes autograd saves per row on the first pass of a (model,
example shape), remembers it, and sizes later passes to a memory budget. On CPU, passes that fit
the caches are much faster than one huge pass (bench/README.md), and peak memory is bounded.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

# Bytes of saved activations per pass when the caller gives no internal_batch_size
# (tuned with bench/engine_vs_captum.py on a 2-core CPU; override with EXPLAIN_PASS_BYTES).
DEFAULT_PASS_BYTES = int(os.environ.get("EXPLAIN_PASS_BYTES", 32 * 2**20))
# At least this many rows per pass once measured: below it, per-pass overhead and poorly used
# convolution kernels cost more than the cache misses a larger pass causes (a ResNet-18 at
# 3x224x224 saves ~21 MiB per row, yet 16 rows per pass beat 1 row per pass).
MIN_PASS_ROWS = int(os.environ.get("EXPLAIN_MIN_PASS_ROWS", 16))
# Before anything is measured: input elements per pass.
DEFAULT_PASS_ELEMENTS = 16 * 3 * 224 * 224

_MEASURED: OrderedDict[tuple, float] = OrderedDict()  # key -> saved bytes per row
_MAX_KEYS = 512
_LOCAL = threading.local()  # .measuring: a measurement is under way in this thread


def check_internal_batch_size(internal_batch_size: object) -> None:
    if internal_batch_size is not None and (
        isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int)
        or internal_batch_size < 1
    ):
        raise ValueError(
            f"`internal_batch_size` must be a positive integer, got {internal_batch_size!r}"
        )


def variants_per_pass(n_variants: int, batch: int, row_numel: int,
                      internal_batch_size: int | None,
                      budget_elements: int | None = None) -> int:
    """Variants of the batch (IG steps, samples) to evaluate per forward pass, >= 1, from
    Captum's ``internal_batch_size`` or an input-element budget."""
    check_internal_batch_size(internal_batch_size)
    if internal_batch_size is not None:
        return max(1, min(n_variants, internal_batch_size // max(batch, 1)))
    budget = DEFAULT_PASS_ELEMENTS if budget_elements is None else budget_elements
    rows = max(1, budget // max(row_numel, 1))
    return max(1, min(n_variants, rows // max(batch, 1)))


def spans(total: int, per_pass: int) -> Iterator[tuple[int, int]]:
    """[start, stop) spans of at most ``per_pass`` covering ``range(total)``."""
    for start in range(0, total, per_pass):
        yield start, min(total, start + per_pass)


class PassPlanner:
    """Plans the passes of one attribution call over ``n_variants`` variants of a batch.

    ``key`` identifies the model and example shape; the saved-activation size per row measured
    on the first pass for a key serves every later call with that key.
    """

    def __init__(self, key: tuple, n_variants: int, batch: int, row_numel: int,
                 internal_batch_size: int | None, budget_bytes: int | None = None,
                 min_rows: int | None = None) -> None:
        check_internal_batch_size(internal_batch_size)
        self.key, self.n_variants, self.batch = key, n_variants, max(batch, 1)
        self.fixed = internal_batch_size is not None
        self.budget = DEFAULT_PASS_BYTES if budget_bytes is None else budget_bytes
        self.min_rows = MIN_PASS_ROWS if min_rows is None else min_rows
        if self.fixed:
            self.per_pass = variants_per_pass(n_variants, batch, row_numel, internal_batch_size)
        elif key in _MEASURED:
            self.per_pass = self._from_bytes(_MEASURED[key])
        else:
            self.per_pass = variants_per_pass(n_variants, batch, row_numel, None)
        # Nested planners (a method calling another) leave the measuring to the outermost.
        self.measure_next = (not self.fixed and key not in _MEASURED
                             and not getattr(_LOCAL, "measuring", False))

    def _from_bytes(self, per_row: float) -> int:
        rows = max(self.min_rows, int(self.budget // max(per_row, 1.0)))
        return max(1, min(self.n_variants, rows // self.batch))

    def passes(self, run: Callable[[int, int], None]) -> None:
        """Calls ``run(start, stop)`` for consecutive spans covering all variants."""
        start = 0
        while start < self.n_variants:
            stop = min(self.n_variants, start + self.per_pass)
            if self.measure_next:
                with _saved_bytes() as saved:
                    run(start, stop)
                self.measure_next = False
                per_row = saved[0] / ((stop - start) * self.batch)
                _remember(self.key, per_row)
                self.per_pass = self._from_bytes(per_row)
            else:
                run(start, stop)
            start = stop


def _remember(key: tuple, per_row: float) -> None:
    _MEASURED[key] = per_row
    _MEASURED.move_to_end(key)
    while len(_MEASURED) > _MAX_KEYS:
        _MEASURED.popitem(last=False)


@contextmanager
def _saved_bytes() -> Iterator[list[int]]:
    """Counts the bytes of distinct non-parameter tensors autograd saves inside the block."""
    total = [0]
    seen: set[int] = set()

    def pack(t: Tensor) -> Tensor:
        if not (t.is_leaf and t.requires_grad):  # parameters are not per-row memory
            storage = t.untyped_storage()
            ptr = storage.data_ptr()
            if ptr not in seen:
                seen.add(ptr)
                total[0] += storage.nbytes()
        return t

    _LOCAL.measuring = True
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            yield total
    finally:
        _LOCAL.measuring = False


def model_key(forward_func: object, inputs: tuple[Tensor, ...]) -> tuple:
    """Identifies a model and the example shape of its inputs for PassPlanner. A function that
    wraps a model (e.g. one neuron of it) names that model in ``plan_identity``."""
    ident = getattr(forward_func, "plan_identity", forward_func)
    return (id(ident),) + tuple((tuple(x.shape[1:]), x.dtype, x.device.type) for x in inputs)


def bytes_per_row(forward_func: Callable[[Tensor], object], example: Tensor) -> float:
    """The bytes autograd saves per row in one forward of ``forward_func`` on ``example``
    (N, *shape), measured now (as the planner measures its first pass). For callers that size
    or refuse work before it runs; the planner's own measurements are left untouched."""
    x = example.detach().clone().requires_grad_(True)
    with torch.enable_grad(), _saved_bytes() as saved:
        forward_func(x)
    return saved[0] / max(1, x.shape[0])
