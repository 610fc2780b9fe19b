"""What the plain-body reader saves per request, side by side: ``python -m bench.plain_body
[--models breast_cancer,digits,recommender] [--rounds 5] [--calls 2000]``.

For each model's bench bodies (bench/service_throughput.py: the explanation request and the
prediction, as TorchServe hands the handler an application/json body: parsed), the median
microseconds of ``request_from_dict`` with the plain reader (service/wire/plainbody.py) and
without it (the general path: the ExplainRequest message filled and read back), the two
interleaved call by call, and their ratio. Also checks, once per body, that both give the same
Request (it is the plain reader's test's oracle too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from bench.service_throughput import bodies
from service.runtime import Limits
from service.wire import convert


def _timed(fn, body: dict, explain: bool, limits: Limits) -> float:
    fresh = json.loads(json.dumps(body))   # TorchServe parses every body afresh
    t0 = time.perf_counter()
    fn(fresh, explain, limits)
    return (time.perf_counter() - t0) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="breast_cancer,digits,recommender")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=2000)
    opts = ap.parse_args()
    limits = Limits()
    plain = convert.request_from_dict
    saved = convert.plain_request

    def general(body: dict, explain: bool, lim: Limits):
        convert.plain_request = lambda *a: None
        try:
            return convert.request_from_dict(body, explain, lim)
        finally:
            convert.plain_request = saved

    print("| model | body | plain reader us | general path us | plain / general |")
    print("|---|---|---|---|---|")
    for model in opts.models.split(","):
        b = bodies(model, 32)
        for kind, explain in (("json", True), ("predict", False)):
            body = json.loads(b[kind])
            a, g = plain(json.loads(b[kind]), explain, limits), general(body, explain, limits)
            assert saved(json.loads(b[kind]), explain, limits) is not None, "not a plain body"
            assert (a.params, a.algorithm, type(a.inputs)) == (g.params, g.algorithm,
                                                               type(g.inputs))
            medians: dict[str, list[float]] = {"plain": [], "general": []}
            for _ in range(opts.rounds):
                t: dict[str, list[float]] = {"plain": [], "general": []}
                for i in range(opts.calls):
                    order = (("plain", plain), ("general", general))
                    for name, fn in (order if i % 2 == 0 else order[::-1]):
                        t[name].append(_timed(fn, body, explain, limits))
                for name in t:
                    medians[name].append(statistics.median(t[name]))
            p, q = statistics.median(medians["plain"]), statistics.median(medians["general"])
            label = "explanation" if kind == "json" else "prediction"
            print(f"| {model} | {label} | {p:.1f} | {q:.1f} | {p / q:.2f} |")


if __name__ == "__main__":
    main()
