"""Service throughput under the same locust load, side by side in one run:
``python -m bench.service_throughput [--models breast_cancer,digits,resnet18] [--users 16]
[--seconds 20] [--rounds 2] [--n-steps 32]``.

For each model it serves three endpoints from one TorchServe on this machine and alternates
them back to back (identical runs drift by 10-15%):
  (a) our handler, batch size 8, requests fused into shared engine calls;
  (b) our handler, batch size 1;
  (c) a stock-style handler (bench/stock_handler.py): captum's IntegratedGradients once per
      request, as TorchServe's own handlers do, batch size 8.
Load: N locust users sending IntegratedGradients explanations (n_steps) of one fixed input.
It prints throughput, p50/p95/p99 latency, failures, the load generator's own CPU share and the
machine's load from other processes during each round (bench/machine_load.py), the ratios a/b
and a/c, and the gateway overhead (gRPC Explain via the gateway vs REST direct, p50,
sequential calls). Targets only 127.0.0.1; every locust run stops by itself (-t).
"""

from __future__ import annotations

import argparse
import base64
import csv
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import yaml

from bench.machine_load import LoadMeter
from model_store.archive import pack_dir
from service import launcher

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = ROOT / "model_store" / "build"
HANDLER = ROOT / "handlers" / "explain_handler.py"
STOCK = ROOT / "bench" / "stock_handler.py"
CONFIGS = ("a", "b", "c")
LABEL = {"a": "ours, batch 8, fused", "b": "ours, batch 1", "c": "stock captum, batch 8"}
MIN_COMPLETIONS = 20
MAX_WINDOW_S = 300


def window_seconds(seconds: int, latency_s: float) -> int:
    """At least ``seconds``, and long enough for MIN_COMPLETIONS requests one after another at
    the endpoint's measured latency (a floor: concurrent users complete more)."""
    return int(min(max(seconds, MIN_COMPLETIONS * latency_s), MAX_WINDOW_S) + 0.999)


def variant(model: str, suffix: str, batch: int, handler: pathlib.Path,
            store: pathlib.Path) -> str:
    """Archives model_store/build/<model>/ under a new name with its own batch size/handler."""
    name = f"{model}_{suffix}"
    work = store / "work" / name
    shutil.copytree(BUILD / model, work)
    spec = yaml.safe_load((work / "spec.yaml").read_text())
    spec["name"] = name
    spec["batch"] = {"batch_size": batch, "max_batch_delay_ms": 10}
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    extras = [p for p in sorted(work.iterdir())
              if p.name not in ("model.py", "weights.pt") and p.suffix in (".yaml", ".pt")]
    pack_dir(work, name, "1.0", handler, store, extras)
    return name


def body(model: str, n_steps: int) -> str:
    """An IntegratedGradients request for one fixed input of the model's shape."""
    spec = yaml.safe_load((BUILD / model / "spec.yaml").read_text())
    shape = tuple(spec["input"]["shape"])
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    return json.dumps({
        "inputs": {"tensor": {"shape": list(shape), "dtype": "FLOAT32",
                              "data": base64.b64encode(x.astype("<f4").tobytes()).decode()}},
        "algorithm": "IntegratedGradients", "params": {"n_steps": n_steps},
        "outputs": {"top_features": 5}})


def locust_run(server: launcher.Server, endpoint: str, body_file: pathlib.Path, users: int,
               seconds: int, out: pathlib.Path) -> dict:
    env = dict(os.environ, EXPLAIN_BENCH_MODEL=endpoint, EXPLAIN_BENCH_BODY_FILE=str(body_file))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
         "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
         "--host", server.inference_url, "--only-summary", "--csv", str(out),
         "--stop-timeout", "30", "BenchUser"],
        env=env, capture_output=True, text=True, check=False, timeout=seconds + 120)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    row = None
    stats = pathlib.Path(f"{out}_stats.csv")
    if stats.is_file():
        with open(stats) as f:
            row = next((r for r in csv.DictReader(f) if r["Name"] == "Aggregated"), None)
    locust_cpu = cpu / wall / (os.cpu_count() or 1)
    if row is None or int(row["Request Count"]) == 0:
        nan = float("nan")
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"requests": 0, "failures": 0, "rps": 0.0, "p50": nan, "p95": nan, "p99": nan,
                "locust_cpu": locust_cpu,
                "note": f"no request completed in {seconds} s ({tail[0][:200]})"}
    return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "rps": float(row["Requests/s"]), "p50": float(row["50%"]),
            "p95": float(row["95%"]), "p99": float(row["99%"]),
            "locust_cpu": locust_cpu}


def gateway_overhead(server: launcher.Server, model: str, endpoint: str, n_steps: int,
                     calls: int) -> dict:
    """p50 of sequential Explain calls via the gateway vs the same request over REST."""
    from service.client import ExplainClient

    x = np.random.default_rng(0).random(
        tuple(yaml.safe_load((BUILD / model / "spec.yaml").read_text())["input"]["shape"]),
        dtype=np.float32)
    model = endpoint
    grpc_c = ExplainClient(f"127.0.0.1:{server.ports['gateway']}")
    rest_c = ExplainClient(mode="rest", rest_url=server.inference_url)
    kw = dict(tensor=x, algorithm="IntegratedGradients", params={"n_steps": n_steps})
    for c in (grpc_c, rest_c):
        c.explain(model, **kw)  # warm-up
    times: dict[str, list[float]] = {"grpc": [], "rest": []}
    for i in range(calls):
        for name, c in ((("grpc", grpc_c), ("rest", rest_c)) if i % 2 == 0
                        else (("rest", rest_c), ("grpc", grpc_c))):
            t0 = time.perf_counter()
            c.explain(model, **kw)
            times[name].append((time.perf_counter() - t0) * 1000)
    grpc_c.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="breast_cancer,digits,resnet18")
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-steps", type=int, default=32)
    ap.add_argument("--overhead-calls", type=int, default=60)
    opts = ap.parse_args()
    models = [m for m in opts.models.split(",") if m]
    missing = [m for m in models if not (BUILD / m).is_dir()]
    if missing:
        raise SystemExit(f"run `make models` first (missing {missing})")
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="throughput-", dir=ROOT / "run"
                                        if (ROOT / "run").is_dir() else None))
    store = tmp / "store"
    store.mkdir()
    endpoints: dict[str, dict[str, str]] = {}
    for m in models:
        endpoints[m] = {"a": variant(m, "fused", 8, HANDLER, store),
                        "b": variant(m, "b1", 1, HANDLER, store),
                        "c": variant(m, "stock", 8, STOCK, store)}
    run_dir = tmp / "run"
    server = launcher.start(store, run_dir, auth=False, timeout=600)
    results: dict[str, dict[str, list[dict]]] = {m: {c: [] for c in CONFIGS} for m in models}
    overhead = {}
    try:
        for m in models:
            body_file = tmp / f"{m}.json"
            body_file.write_text(body(m, opts.n_steps))
            latency = 0.0
            for ep in endpoints[m].values():  # warm every worker before measuring
                req = urllib.request.Request(f"{server.inference_url}/explanations/{ep}",
                                             data=body_file.read_bytes(),
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=300).read()
                t0 = time.perf_counter()  # the second call is warm: it sizes the window
                urllib.request.urlopen(req, timeout=300).read()
                latency = max(latency, time.perf_counter() - t0)
            seconds = window_seconds(opts.seconds, latency)
            for r in range(opts.rounds):
                order = CONFIGS if r % 2 == 0 else CONFIGS[::-1]
                for c in order:
                    meter = LoadMeter(run_dir)
                    meter.start()
                    res = locust_run(server, endpoints[m][c], body_file, opts.users,
                                     seconds, tmp / f"{m}_{c}_{r}")
                    load = meter.stop()
                    res["other_cpu"] = load.other
                    results[m][c].append(res)
                    print(f"{m} ({c}) round {r}: {res['rps']:.1f} rps, p50 {res['p50']:.0f} ms, "
                          f"p99 {res['p99']:.0f} ms, failures {res['failures']}, "
                          f"locust CPU {100 * res['locust_cpu']:.0f}%, {seconds} s window; "
                          f"{load.describe()}" + (f"; NOTE {res['note']}" if "note" in res
                                                  else ""), flush=True)
            if m != "resnet18":
                overhead[m] = gateway_overhead(server, m, endpoints[m]["a"], opts.n_steps,
                                               opts.overhead_calls)
    finally:
        launcher.stop(run_dir)
    print()
    print(table(results, opts))
    if overhead:
        print("\n| model | gRPC via gateway p50 | REST direct p50 | ratio |\n|---|---|---|---|")
        for m, o in overhead.items():
            print(f"| {m} | {o['grpc']:.1f} ms | {o['rest']:.1f} ms | {o['grpc'] / o['rest']:.2f} |")


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def table(results: dict, opts: argparse.Namespace) -> str:
    lines = [f"IntegratedGradients n_steps={opts.n_steps}, {opts.users} users, "
             f"{opts.rounds} x {opts.seconds} s per config (medians over rounds)", "",
             "| model | config | rps | p50 ms | p95 ms | p99 ms | failures | locust CPU "
             "| other CPU (max) |", "|---|---|---|---|---|---|---|---|---|"]
    for m, per in results.items():
        for c in CONFIGS:
            rows = per[c]
            lines.append(f"| {m} | ({c}) {LABEL[c]} | {_median(rows, 'rps'):.1f} | "
                         f"{_median(rows, 'p50'):.0f} | {_median(rows, 'p95'):.0f} | "
                         f"{_median(rows, 'p99'):.0f} | {sum(r['failures'] for r in rows)} | "
                         f"{100 * _median(rows, 'locust_cpu'):.0f}% | "
                         f"{100 * max(r.get('other_cpu', 0.0) for r in rows):.0f}% |")
    lines += ["", "| model | a/b throughput | a/c throughput | p99 a vs c |", "|---|---|---|---|"]
    for m, per in results.items():
        a, b, c = (_median(per[k], "rps") for k in CONFIGS)
        if not (b and c):
            lines.append(f"| {m} | n/a | n/a | a window completed no request (see the notes) |")
            continue
        lines.append(f"| {m} | {a / b:.2f}x | {a / c:.2f}x | "
                     f"{_median(per['a'], 'p99'):.0f} vs {_median(per['c'], 'p99'):.0f} ms |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
