"""The baseline cache: an LRU with a byte budget. An entry holds a resolved baseline tensor and
the model's outputs on it, so baseline_output and reference sets are computed once per key."""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import numpy as np
from torch import Tensor


@dataclass(frozen=True)
class CachedBaseline:
    tensor: Tensor   # (1, *shape) or (K, *shape)
    outputs: Tensor  # (K, n_outputs): the model's outputs on each baseline row

    @functools.cached_property
    def output_means(self) -> list[float]:
        """The mean output over the rows, per output (float64): a target's baseline output."""
        return self.outputs.detach().double().mean(0).cpu().tolist()

    @functools.cached_property
    def reference(self) -> np.ndarray:
        """``(numel,)`` float64: the baseline row, or the mean of a reference set's rows."""
        t = self.tensor.detach()
        return t.reshape(t.shape[0], -1).double().mean(0).cpu().numpy()

    @property
    def nbytes(self) -> int:
        """What the entry may hold: the tensors, and the derived ``reference`` (float64) and
        ``output_means`` (a list of Python floats: ~32 bytes each, 64 the list), counted whether or not they
        were built yet."""
        row = self.tensor[0].numel() if self.tensor.dim() > 0 and len(self.tensor) else 0
        return (self.tensor.numel() * self.tensor.element_size()
                + self.outputs.numel() * self.outputs.element_size()
                + 8 * row + 64 + 32 * (self.outputs.shape[-1] if self.outputs.dim() else 1))


@dataclass(frozen=True)
class CacheStats:
    hits: int
    misses: int
    entries: int
    nbytes: int

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


class BaselineCache:
    """Keys: (model, version, canonical baseline spec, shape, dtype, device)."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        if max_bytes < 0:
            raise ValueError("`max_bytes` must be >= 0")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, CachedBaseline] = OrderedDict()
        self._nbytes = 0
        self._hits = 0
        self._misses = 0
        self._lock = threading.Lock()

    def get_or_compute(self, key: Hashable,
                       compute: Callable[[], CachedBaseline]) -> tuple[CachedBaseline, bool]:
        """The cached entry and True, or a freshly computed one (stored if it fits) and False."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self._hits += 1
                return entry, True
            self._misses += 1
        entry = compute()
        with self._lock:
            if entry.nbytes <= self.max_bytes and key not in self._entries:
                self._entries[key] = entry
                self._nbytes += entry.nbytes
                while self._nbytes > self.max_bytes:
                    _, old = self._entries.popitem(last=False)
                    self._nbytes -= old.nbytes
        return entry, False

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(self._hits, self._misses, len(self._entries), self._nbytes)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._nbytes = 0
