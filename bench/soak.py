"""Soak: ``python -m bench.soak [--minutes 10] [--concurrency 8] [--models ...]``.

Starts its own instance (service.launcher: own run directory under run/, free ports, token auth
on, every bundled model, all traffic to 127.0.0.1), saturates it for a bounded time with mixed
predictions and explanations over REST and gRPC (bench/load.py), and reports:
resident memory (RSS) of the TorchServe frontend, each worker and the gateway at the start,
after minute 1 and at the end (growth after minute 1, goal < 5 %); failures (goal 0); p50/p99
latency per minute; worker pids at the start and the end (restarts). Results also go to
bench/results/soak-<stamp>.json. The instance is always stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from collections import Counter
from typing import Any

from bench.load import Load, percentile
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
    ap.add_argument("--store", default=str(ROOT / "model_store" / "build"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    run_dir = ROOT / "run" / f"soak-{time.strftime('%Y%m%d-%H%M%S')}"
    server = launcher.start(pathlib.Path(a.store), run_dir, models, auth=True, timeout=600)
    try:
        pids = processes(server)
        samples: list[dict[str, Any]] = [{"t_s": 0, "rss_mb": rss_mb(pids)}]
        load = Load(server, models, a.concurrency, seed=1)
        duration = a.minutes * 60
        t0 = time.monotonic()
        load.start(duration)
        print(f"soak: {a.minutes:g} min, {a.concurrency} clients, models {models}, run dir {run_dir}",
              flush=True)
        next_sample = 30.0
        while any(t.is_alive() for t in load._threads):
            time.sleep(1.0)
            elapsed = time.monotonic() - t0
            if elapsed >= next_sample:
                samples.append({"t_s": round(elapsed), "rss_mb": rss_mb(pids)})
                calls = load.snapshot()
                print(f"  {elapsed:5.0f} s  {len(calls)} calls, {sum(not c.ok for c in calls)} failed",
                      flush=True)
                next_sample += 30.0
        load.join()
        end: dict[str, Any] = {"t_s": round(time.monotonic() - t0), "rss_mb": rss_mb(pids)}
        samples.append(end)
        pids_end = processes(server)
    finally:
        launcher.stop(run_dir)
    calls = load.snapshot()
    minute1 = min(samples, key=lambda s: abs(s["t_s"] - 60))
    half = min(samples, key=lambda s: abs(s["t_s"] - end["t_s"] / 2))

    def growth(a, b):
        return None if not (a and b) else round(100 * (b - a) / a, 2)

    rows = []
    for name in pids:
        r0, r1, r2 = samples[0]["rss_mb"][name], minute1["rss_mb"][name], end["rss_mb"][name]
        rows.append({"process": name, "start_mb": r0, "minute1_mb": r1, "end_mb": r2,
                     "growth_after_minute1_pct": growth(r1, r2),
                     # a leak keeps growing; a warm-up (largest batch seen so far) levels off
                     "growth_second_half_pct": growth(half["rss_mb"][name], r2)})
    failures = [c for c in calls if not c.ok]
    report = {
        "minutes": a.minutes, "concurrency": a.concurrency, "models": models,
        "requests": len(calls), "failures": len(failures),
        "by_kind": dict(Counter(f"{c.transport} {c.kind}" for c in calls)),
        "failure_statuses": dict(Counter(f"{c.transport} {c.model} {c.status}" for c in failures)),
        "failure_examples": [c.detail for c in failures[:5]],
        "worker_restarts": sorted(set(pids.items()) ^ set(pids_end.items())),
        "rss": rows, "per_minute": per_minute(calls, t0), "rss_samples": samples,
    }
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1))
    print(f"\nrequests {len(calls)} ({report['by_kind']}), failures {len(failures)} "
          f"{report['failure_statuses'] or ''}; pid changes {report['worker_restarts'] or 'none'}")
    print("\n| process | RSS start (MB) | after minute 1 | end | growth after minute 1 | "
          "growth in the second half |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['process']} | {r['start_mb']} | {r['minute1_mb']} | {r['end_mb']} | "
              f"{r['growth_after_minute1_pct']} % | {r['growth_second_half_pct']} % |")
    print("\n| minute | requests | failures | p50 ms | p99 ms |\n| --- | --- | --- | --- | --- |")
    for m in report["per_minute"]:
        print(f"| {m['minute']} | {m['requests']} | {m['failures']} | {m['p50_ms']} | {m['p99_ms']} |")
    print(f"\nresults: {path}")
    grew = [r for r in rows if r["growth_after_minute1_pct"] is not None
            and r["growth_after_minute1_pct"] >= 5.0]
    return 1 if failures or grew else 0


if __name__ == "__main__":
    sys.exit(main())
