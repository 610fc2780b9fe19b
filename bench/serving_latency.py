"""Latency of one explanation per bundled model against a running instance (``make serve``):
``python -m bench.serving_latency [--instance default] [--repeats 10]``. Sends each model's
example body from run/<instance>/examples/ sequentially (no batching) and prints the median and
p90 of the client-measured latency, with the server's own explain time."""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time

import requests

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--instance", default="default")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    run = ROOT / "run" / args.instance
    ports = json.loads((run / "ports.json").read_text())
    key_file = run / "key_file.json"
    headers = {}
    if key_file.is_file():
        headers["Authorization"] = f"Bearer {json.loads(key_file.read_text())['inference']['key']}"
    url = f"http://127.0.0.1:{ports['inference']}"
    print(f"{'model':<15}{'algorithm':<22}{'median ms':>10}{'p90 ms':>9}{'server explain ms':>19}")
    for body_file in sorted((run / "examples").glob("*.json")):
        model = body_file.stem
        body = json.loads(body_file.read_text())
        body.pop("target", None)  # one explanation: the predicted class
        times, server = [], []
        for i in range(args.repeats + 1):
            t0 = time.perf_counter()
            r = requests.post(f"{url}/explanations/{model}", json=body, headers=headers,
                              timeout=300)
            dt = (time.perf_counter() - t0) * 1e3
            r.raise_for_status()
            if i:  # the first call warms up the worker
                times.append(dt)
                server.append(r.json()["timings"]["explainMs"])
        times.sort()
        p90 = times[min(len(times) - 1, int(0.9 * len(times)))]
        print(f"{model:<15}{r.json()['algorithm']:<22}{statistics.median(times):>10.1f}"
              f"{p90:>9.1f}{statistics.median(server):>19.1f}")


if __name__ == "__main__":
    main()
