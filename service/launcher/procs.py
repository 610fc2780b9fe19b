"""Process facts from Linux's /proc, without extra packages: liveness, children, resident memory.
Used to find an instance's own TorchServe workers and to measure memory in the soak."""

from __future__ import annotations

import os
import pathlib

PROC = pathlib.Path("/proc")


def alive(pid: int) -> bool:
    """The process exists and is not a zombie."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        state = (PROC / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: trust kill(0)
    return state != "Z"


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's children list)."""
    out: list[int] = []
    try:
        tasks = list((PROC / str(pid) / "task").iterdir())
    except OSError:
        return out
    for task in tasks:
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return sorted(set(out))


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` in the process tree."""
    seen: list[int] = []
    todo = children(pid)
    while todo:
        p = todo.pop()
        if p not in seen:
            seen.append(p)
            todo += children(p)
    return sorted(seen)


def rss_bytes(pid: int) -> int | None:
    """Resident set size, or None when the process is gone."""
    try:
        for line in (PROC / str(pid) / "status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def cmdline(pid: int) -> list[str]:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().decode(errors="replace").split("\0")[:-1]
    except OSError:
        return []
