"""A worker's glibc malloc threshold, refined per model (the launcher's MEMORY_ENV sets one for
every TorchServe process; see service/launcher/torchserve.py).

MEMORY_ENV fixes glibc's mmap threshold at 128 KiB: every tensor above it is mmap'ed and given
back to the system when freed, which keeps a large image model's worker from holding freed
activations as heap fragments (bench/README.md, "Soak": resnet18's RSS). It also makes every
such tensor page-fault its memory in again on each use: a small CNN's fused passes (digits'
13 MB activations of 256 rows) ran at 0.45x the rate. A worker whose model takes small examples
raises the threshold to glibc's own ceiling, 32 MiB, and the trim threshold to twice that (what
glibc's dynamic scheme reaches by itself): its passes' tensors come from the heap and are reused
instead of being returned and faulted in again at every batch (digits: 1.8x the rate, measured
in process). Such workers' RSS stayed flat under glibc's default, which rises to the same
values (the soaks before MEMORY_ENV: 0.0% growth after minute 1). A model whose examples are
larger keeps the fixed threshold.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import math
import os
from collections.abc import Sequence

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
SMALL_EXAMPLE_ELEMENTS = 65_536  # at most this many input elements per example: a small model
RAISED_THRESHOLD = 32 * 2**20    # glibc's maximum dynamic mmap threshold (DEFAULT_MMAP_THRESHOLD_MAX)
ENV = "MALLOC_MMAP_THRESHOLD_"


def threshold_for(input_shape: Sequence[int], env: dict[str, str] | None = None) -> int | None:
    """The mmap threshold a worker of a model with per-example ``input_shape`` should use, or
    None to leave malloc as the environment set it (no fixed threshold was set: glibc's
    dynamic one is in force; or the examples are large)."""
    env = dict(os.environ) if env is None else env
    if not env.get(ENV):
        return None
    if math.prod(input_shape) > SMALL_EXAMPLE_ELEMENTS:
        return None
    return max(RAISED_THRESHOLD, int(env[ENV]))


def tune_worker(input_shape: Sequence[int]) -> int | None:
    """Applies ``threshold_for`` in this process (glibc only); the threshold set, or None."""
    value = threshold_for(input_shape)
    if value is None:
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if libc.mallopt(M_MMAP_THRESHOLD, value) != 1:
            return None
        libc.mallopt(M_TRIM_THRESHOLD, 2 * value)
    except (OSError, AttributeError):  # not glibc
        return None
    log.info("malloc mmap threshold raised to %d bytes (small examples)", value)
    return value
