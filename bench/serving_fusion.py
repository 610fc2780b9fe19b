"""Fused vs one-by-one explanations in the serving runtime, side by side in one run:
``python -m bench.serving_fusion [--model digits] [--batch 8] [--repeats 5]``. A batch of
explanation requests (the default algorithm, distinct inputs) answered by one Executor.run
(fused: one forward for the predictions, one engine call) vs one Executor.run per request.
Needs the bundled archives (make models)."""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time

import numpy as np
import torch

from service.runtime import Executor, Request, TensorPayload, load_spec
from service.runtime.loader import load_model

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="digits,breast_cancer,recommender")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    print(f"{'model':<15}{'algorithm':<22}{'batch':>6}{'fused ms':>10}{'one-by-one ms':>15}"
          f"{'speed-up':>10}")
    for name in args.models.split(","):
        d = ROOT / "model_store" / "build" / name
        spec = load_spec(d / "spec.yaml")
        ex = Executor(load_model(spec, d), spec, d)
        refs = torch.load(d / "reference.pt", weights_only=True).numpy().astype(np.float32)
        xs = [refs[i % len(refs)] for i in range(args.batch)]

        def requests(xs=xs):
            return [Request(inputs=TensorPayload(x), explain=True) for x in xs]

        ex.run(requests())  # warm-up, fills the baseline cache
        fused, single = [], []
        for _ in range(args.repeats):  # interleaved
            t0 = time.perf_counter()
            out = ex.run(requests())
            fused.append(time.perf_counter() - t0)
            assert all(o.timings.fused_group_size == args.batch for o in out)
            t0 = time.perf_counter()
            for r in requests():
                ex.run([r])
            single.append(time.perf_counter() - t0)
        f, s = statistics.median(fused) * 1e3, statistics.median(single) * 1e3
        print(f"{name:<15}{spec.default_algorithm:<22}{args.batch:>6}{f:>10.1f}{s:>15.1f}"
              f"{s / f:>9.2f}x")


if __name__ == "__main__":
    main()
