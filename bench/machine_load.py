"""How busy the machine was during a measurement, and how much of it was somebody else.

``LoadMeter(run_dir)`` reads ``/proc/stat`` (all cores) and the CPU time of the processes the
benchmark started: the TorchServe frontend and workers of the instance in ``run_dir`` (found by
their command line naming ``run_dir``, and their children), this process and the locust runs it
waited for. ``other`` = machine busy share - ours: a round with a large ``other`` was disturbed.
``server_cpu_s``, the CPU time of the instance's processes alone, divided by the requests a
window completed is a cost per request that other processes' load moves far less than the
throughput.
Linux only; elsewhere every figure is NaN.
"""

from __future__ import annotations

import os
import pathlib
import resource
from dataclasses import dataclass

CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
NCPU = os.cpu_count() or 1


def _machine_jiffies() -> tuple[float, float]:
    """(busy, total) jiffies over all cores since boot."""
    with open("/proc/stat") as f:
        parts = [float(v) for v in f.readline().split()[1:]]
    idle = parts[3] + (parts[4] if len(parts) > 4 else 0.0)  # idle + iowait
    return sum(parts) - idle, sum(parts)


def _proc_cpu(pid: int) -> float:
    """utime + stime of one process in seconds (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (float(fields[11]) + float(fields[12])) / CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def instance_pids(run_dir: pathlib.Path) -> set[int]:
    """The processes of the TorchServe instance (and gateway) whose command line names run_dir,
    with their children."""
    needle = str(run_dir.resolve()).encode()
    found: set[int] = set()
    parents: dict[int, int] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.add(pid)
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            parents[pid] = int(stat[1])
        except (OSError, IndexError, ValueError):
            continue
    grew = True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in found and pid not in found:
                found.add(pid)
                grew = True
    return found


def _own_cpu() -> float:
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@dataclass(frozen=True)
class Load:
    loadavg_1m: float     # /proc/loadavg at the end of the window
    busy: float           # share of all cores busy during the window (0..1)
    ours: float           # share used by the benchmark's own processes
    other: float          # busy - ours: other processes on the machine
    server_cpu_s: float = float("nan")  # CPU seconds of the instance's processes (no locust)

    def describe(self) -> str:
        return (f"machine busy {100 * self.busy:.0f}% (ours {100 * self.ours:.0f}%, "
                f"other {100 * self.other:.0f}%), loadavg {self.loadavg_1m:.2f}")


class LoadMeter:
    def __init__(self, run_dir: pathlib.Path) -> None:
        self.run_dir = run_dir
        self._start: tuple[float, float, float, dict[int, float]] | None = None

    def _ours(self, pids: set[int]) -> dict[int, float]:
        return {pid: _proc_cpu(pid) for pid in pids}

    def start(self) -> None:
        busy, total = _machine_jiffies()
        self._start = (busy, total, _own_cpu(), self._ours(instance_pids(self.run_dir)))

    def stop(self) -> Load:
        nan = float("nan")
        if self._start is None:
            return Load(nan, nan, nan, nan)
        busy0, total0, own0, procs0 = self._start
        busy1, total1 = _machine_jiffies()
        procs1 = self._ours(set(procs0) | instance_pids(self.run_dir))
        window = max(total1 - total0, 1.0) / CLK  # core-seconds
        server = sum(procs1[p] - procs0.get(p, 0.0) for p in procs1
                     if procs1[p] >= procs0.get(p, 0.0))
        ours = (_own_cpu() - own0) + server
        busy = (busy1 - busy0) / CLK / window
        ours_share = min(ours / window, busy)
        try:
            loadavg = float(pathlib.Path("/proc/loadavg").read_text().split()[0])
        except OSError:
            loadavg = nan
        return Load(loadavg, busy, ours_share, max(busy - ours_share, 0.0), server)
