"""A progress bar for long perturbation runs: tqdm when it is installed, a plain line on stderr
otherwise, nothing when disabled."""

from __future__ import annotations

import sys
from typing import Any


class _Plain:
    """Prints ``desc: done/total`` on one stderr line, rewritten in place."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.done = total, desc, 0
        self._write()

    def update(self, n: int = 1) -> None:
        self.done += n
        self._write()

    def _write(self) -> None:
        sys.stderr.write(f"\r{self.desc}: {self.done}/{self.total}")
        sys.stderr.flush()

    def close(self) -> None:
        sys.stderr.write("\n")
        sys.stderr.flush()


class _Null:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(enabled: bool, total: int, desc: str) -> Any:
    """An object with ``update(n)`` and ``close()``; ``total`` counts forward passes."""
    if not enabled:
        return _Null()
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Plain(total, desc)
    return tqdm(total=total, desc=desc, file=sys.stderr)
