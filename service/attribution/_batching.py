"""How many variants of a batch go into one forward/backward pass.

Given Captum's ``internal_batch_size`` (rows per pass) it is honoured as Captum does; given None,
the engine picks the chunk itself within an element budget: on CPU, passes that fit the caches
are faster than one huge pass, and peak memory is bounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

# Input elements (rows x features) per pass when the caller gives no internal_batch_size.
# Measured on a 2-core CPU (bench/engine_vs_captum.py): ~16 rows of 3x224x224 per pass is
# the fastest setting for a ResNet-18-sized model, and small models fit whole in one pass.
DEFAULT_CHUNK_ELEMENTS = int(os.environ.get("EXPLAIN_CHUNK_ELEMENTS", 16 * 3 * 224 * 224))


def variants_per_pass(n_variants: int, batch: int, row_numel: int,
                      internal_batch_size: int | None,
                      budget_elements: int | None = None) -> int:
    """Variants of the batch (IG steps, samples) to evaluate per forward pass, >= 1."""
    if internal_batch_size is not None:
        if isinstance(internal_batch_size, bool) or not isinstance(internal_batch_size, int) \
                or internal_batch_size < 1:
            raise ValueError(
                f"`internal_batch_size` must be a positive integer, got {internal_batch_size!r}"
            )
        return max(1, min(n_variants, internal_batch_size // max(batch, 1)))
    budget = DEFAULT_CHUNK_ELEMENTS if budget_elements is None else budget_elements
    rows = max(1, budget // max(row_numel, 1))
    return max(1, min(n_variants, rows // max(batch, 1)))


def spans(total: int, per_pass: int) -> Iterator[tuple[int, int]]:
    """[start, stop) spans of at most ``per_pass`` covering ``range(total)``."""
    for start in range(0, total, per_pass):
        yield start, min(total, start + per_pass)
