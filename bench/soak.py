"""Soak: ``python -m bench.soak [--minutes 10] [--concurrency 8] [--models ...]``.

Starts its own instance (service.launcher: own run directory under run/, free ports, token auth
on, every bundled model, all traffic to 127.0.0.1), saturates it for a bounded time with mixed
predictions and explanations over REST and gRPC (bench/load.py), and reports:
resident memory (RSS) of the TorchServe frontend, each worker and the gateway, sampled every
``--sample-s`` seconds: at the start, after minute 1 and at the end under load, and **at rest**
(``--rest-s`` seconds without load, after minute 1 and after the run: what each process kept,
without the batches in flight; the growth between the two is the goal, < 5 %), with each
process's least-squares slope over the first and the second half after minute 1 (MB/min: a
leak keeps its slope, a warm-up flattens out) and, for the frontend, the Java heap (committed
and used, from ``jstat``; categories from ``jcmd VM.native_memory`` when the JVM runs with
-XX:NativeMemoryTracking=summary, e.g. from JAVA_TOOL_OPTIONS); failures (goal 0); p50/p99
latency per minute; the machine's load and how much of it was other processes'
(bench/machine_load.py); worker pids at the start and the end (restarts).
``--no-memory-tuning`` starts the instance without the launcher's malloc and JVM settings
(torchserve.MEMORY_ENV, JAVA_OPTS), to measure the difference. Results also go to
bench/results/soak-<stamp>.json. The instance is always stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import numpy as np

from bench.load import Load, percentile
from bench.machine_load import LoadMeter
from service import launcher
from service.launcher import procs

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUNDLED = ("digits", "breast_cancer", "recommender", "resnet18")


def processes(server: launcher.Server) -> dict[str, int]:
    """name -> pid: the frontend, every worker, the gateway (this instance's own)."""
    out: dict[str, int] = {}
    front = server.frontend_pid()
    if front:
        out["frontend"] = front
    for model, pids in server.worker_pids().items():
        for i, pid in enumerate(pids):
            out[f"worker {model}" + (f" #{i}" if len(pids) > 1 else "")] = pid
    try:
        out["gateway"] = int((server.run_dir / "tmp" / "gateway.pid").read_text())
    except (OSError, ValueError):
        pass
    return out


def rss_mb(pids: dict[str, int]) -> dict[str, float | None]:
    return {name: (None if (b := procs.rss_bytes(pid)) is None else round(b / 2**20, 1))
            for name, pid in pids.items()}


def java_heap_mb(pid: int) -> dict[str, float] | None:
    """The frontend's Java heap from ``jstat -gc``: committed (young + old capacity) and used,
    in MB; None without jstat or when it fails."""
    try:
        out = subprocess.run(["jstat", "-gc", str(pid)], capture_output=True, text=True,
                             timeout=20).stdout.split("\n")
        row = {k: float(v) for k, v in zip(out[0].split(), out[1].split()) if v != "-"}
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
    if "OC" not in row:
        return None
    committed = row["S0C"] + row["S1C"] + row["EC"] + row["OC"]
    used = row["S0U"] + row["S1U"] + row["EU"] + row["OU"]
    return {"committed_mb": round(committed / 1024, 1), "used_mb": round(used / 1024, 1),
            "old_used_mb": round(row["OU"] / 1024, 1), "metaspace_mb": round(row["MU"] / 1024, 1)}


def java_native_memory(pid: int) -> dict[str, float] | None:
    """committed MB per category from ``jcmd VM.native_memory summary``: only when the
    frontend runs with -XX:NativeMemoryTracking=summary (e.g. from JAVA_TOOL_OPTIONS)."""
    try:
        out = subprocess.run(["jcmd", str(pid), "VM.native_memory", "summary", "scale=KB"],
                             capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = {}
    for m in re.finditer(r"^-?\s*(Total|[A-Z][\w ]+?):? \(?reserved=\d+KB, committed=(\d+)KB", out,
                         re.MULTILINE):
        found[m.group(1).strip()] = round(int(m.group(2)) / 1024, 1)
    return found or None


def slope_mb_per_min(samples: list[dict[str, Any]], name: str, t0: float, t1: float) -> float | None:
    """Least-squares slope of ``name``'s RSS over the samples in [t0, t1] seconds, MB/min."""
    pts = [(s["t_s"], s["rss_mb"].get(name)) for s in samples if t0 <= s["t_s"] <= t1]
    pts = [(t, r) for t, r in pts if r is not None]
    if len(pts) < 3:
        return None
    t, r = np.array(pts, dtype=float).T
    return round(float(np.polyfit(t / 60.0, r, 1)[0]), 2)


def per_minute(calls, t0: float) -> list[dict]:
    rows: dict[int, list] = {}
    for c in calls:
        rows.setdefault(int((c.start - t0) // 60), []).append(c)
    out = []
    for minute in sorted(rows):
        cs = rows[minute]
        lat = [c.latency_s * 1000 for c in cs if c.ok]
        out.append({"minute": minute + 1, "requests": len(cs), "failures": sum(not c.ok for c in cs),
                    "p50_ms": round(percentile(lat, 50), 1), "p99_ms": round(percentile(lat, 99), 1)})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--models", default=",".join(BUNDLED))
    ap.add_argument("--grpc-share", type=float, default=0.5,
                    help="share of the calls sent over gRPC (through the gateway)")
    ap.add_argument("--sample-s", type=float, default=10.0, help="seconds between RSS samples")
    ap.add_argument("--rest-s", type=float, default=15.0,
                    help="seconds without load after minute 1 and after the run, then a sample")
    ap.add_argument("--no-memory-tuning", action="store_true",
                    help="start the instance without the launcher's allocator settings")
    ap.add_argument("--tag", default="", help="a word added to the run's file names")
    ap.add_argument("--store", default=str(ROOT / "model_store" / "build"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    stamp = time.strftime("%Y%m%d-%H%M%S") + (f"-{a.tag}" if a.tag else "")
    run_dir = ROOT / "run" / f"soak-{stamp}"
    server = launcher.start(pathlib.Path(a.store), run_dir, models, auth=True, timeout=600,
                            memory_tuning=not a.no_memory_tuning)
    try:
        pids = processes(server)
        front = pids.get("frontend")

        def sample(t: float, java: bool = True) -> dict[str, Any]:
            java = java and front is not None  # jstat/jcmd start a JVM each: once a minute
            return {"t_s": round(t), "rss_mb": rss_mb(pids),
                    "java_heap": java_heap_mb(front) if java else None,
                    "java_native": java_native_memory(front) if java else None}

        samples: list[dict[str, Any]] = [sample(0)]
        meter = LoadMeter(run_dir)
        meter.start()
        duration = a.minutes * 60
        t0 = time.monotonic()
        print(f"soak: {a.minutes:g} min, {a.concurrency} clients, models {models}, "
              f"memory tuning {'off' if a.no_memory_tuning else 'on'}, run dir {run_dir}",
              flush=True)
        loads: list[Load] = []
        next_sample = a.sample_s
        rest: list[dict[str, Any]] = []
        # minute 1, a pause, the rest, a pause: RSS at rest (nothing in flight) after minute 1
        # and after the run is what the process kept; samples under load include the batches
        # in flight (resnet18's activations are ~100 MB per batch).
        for seed, phase_s in ((1, min(60.0, duration)), (2, max(duration - 60.0, 0.0))):
            if phase_s <= 0:
                continue
            load = Load(server, models, a.concurrency, grpc_share=a.grpc_share, seed=seed)
            loads.append(load)
            load.start(phase_s)
            while any(t.is_alive() for t in load._threads):
                time.sleep(0.5)
                elapsed = time.monotonic() - t0
                if elapsed >= next_sample:
                    on_minute = int(elapsed) % 60 < a.sample_s
                    samples.append(sample(elapsed, java=on_minute))
                    if on_minute:
                        calls = [c for ld in loads for c in ld.snapshot()]
                        print(f"  {elapsed:5.0f} s  {len(calls)} calls, "
                              f"{sum(not c.ok for c in calls)} failed  {samples[-1]['rss_mb']}",
                              flush=True)
                    next_sample += a.sample_s
            load.join()
            time.sleep(a.rest_s)
            rest.append(sample(time.monotonic() - t0) | {"at_rest": True})
            samples.append(rest[-1])
            next_sample = time.monotonic() - t0 + a.sample_s
        end = samples[-2] if len(samples) > 2 else samples[-1]  # the last sample under load
        machine = meter.stop()
        pids_end = processes(server)
    finally:
        launcher.stop(run_dir)
    calls = [c for ld in loads for c in ld.snapshot()]
    loaded = [s for s in samples if not s.get("at_rest")]
    minute1 = min(loaded, key=lambda s: (abs(s["t_s"] - 60), s["java_heap"] is None))
    half = min(loaded, key=lambda s: abs(s["t_s"] - (60 + end["t_s"]) / 2))

    def growth(a, b):
        return None if not (a and b) else round(100 * (b - a) / a, 2)

    rows = []
    for name in pids:
        r0, r1, r2 = samples[0]["rss_mb"][name], minute1["rss_mb"][name], end["rss_mb"][name]
        rows.append({"process": name, "start_mb": r0, "minute1_mb": r1, "end_mb": r2,
                     "growth_after_minute1_pct": growth(r1, r2),
                     # a leak keeps growing; a warm-up (largest batch seen so far) levels off
                     "growth_second_half_pct": growth(half["rss_mb"][name], r2),
                     "slope_first_half_mb_min": slope_mb_per_min(samples, name, minute1["t_s"],
                                                                 half["t_s"]),
                     "slope_second_half_mb_min": slope_mb_per_min(samples, name, half["t_s"],
                                                                  end["t_s"]),
                     "max_mb": max(s["rss_mb"][name] or 0 for s in samples),
                     "rest_after_minute1_mb": rest[0]["rss_mb"][name] if rest else None,
                     "rest_after_run_mb": rest[-1]["rss_mb"][name] if len(rest) > 1 else None,
                     "growth_at_rest_pct": growth(rest[0]["rss_mb"][name],
                                                  rest[-1]["rss_mb"][name])
                     if len(rest) > 1 else None})
    failures = [c for c in calls if not c.ok]
    report = {
        "minutes": a.minutes, "concurrency": a.concurrency, "models": models,
        "memory_tuning": not a.no_memory_tuning,
        "requests": len(calls), "failures": len(failures),
        "machine": vars(machine) | {"described": machine.describe()},
        "by_kind": dict(Counter(f"{c.transport} {c.kind}" for c in calls)),
        "failure_statuses": dict(Counter(f"{c.transport} {c.model} {c.status}" for c in failures)),
        "failure_examples": [c.detail for c in failures[:5]],
        "worker_restarts": sorted(set(pids.items()) ^ set(pids_end.items())),
        "rss": rows, "java_heap": {"minute1": minute1["java_heap"], "end": end["java_heap"]},
        "java_native": {"minute1": minute1["java_native"], "end": end["java_native"]},
        "per_minute": per_minute(calls, t0), "rss_samples": samples,
    }
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{stamp}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"\nrequests {len(calls)} ({report['by_kind']}), failures {len(failures)} "
          f"{report['failure_statuses'] or ''}; pid changes {report['worker_restarts'] or 'none'}")
    print(f"{machine.describe()}; Java heap after minute 1 {minute1['java_heap']}, "
          f"at the end {end['java_heap']}")
    print("\n| process | RSS start (MB) | after minute 1 | end | max | growth after minute 1 | "
          "growth in the second half | slope 1st / 2nd half (MB/min) | at rest after minute 1 "
          "/ after the run | growth at rest |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['process']} | {r['start_mb']} | {r['minute1_mb']} | {r['end_mb']} | "
              f"{r['max_mb']} | {r['growth_after_minute1_pct']} % | "
              f"{r['growth_second_half_pct']} % | {r['slope_first_half_mb_min']} / "
              f"{r['slope_second_half_mb_min']} | {r['rest_after_minute1_mb']} / "
              f"{r['rest_after_run_mb']} | {r['growth_at_rest_pct']} % |")
    print("\n| minute | requests | failures | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |")
    for m in report["per_minute"]:
        print(f"| {m['minute']} | {m['requests']} | {m['failures']} | {m['p50_ms']} | {m['p99_ms']} |")
    print(f"\nresults: {path}")
    grew = [r for r in rows if (r["growth_at_rest_pct"] if r["growth_at_rest_pct"] is not None
                                else r["growth_after_minute1_pct"] or 0.0) >= 5.0]
    return 1 if failures or grew else 0


if __name__ == "__main__":
    sys.exit(main())
