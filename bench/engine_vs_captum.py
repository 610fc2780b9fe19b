"""Our engine vs captum, side by side in one process: ``python -m bench.engine_vs_captum``.

Options: ``--filter TEXT`` (rows whose family/algorithm/model contain TEXT), ``--repeats N``
(default 5, after one warm-up), ``--threads N`` (default 2).
"""

from __future__ import annotations

import argparse
import importlib

import torch

from .harness import BenchCase, Result, run_case, table

FAMILIES = ("cases_gradient", "cases_layer", "cases_perturbation")


def all_cases() -> list[BenchCase]:
    cases: list[BenchCase] = []
    for name in FAMILIES:
        try:
            module = importlib.import_module(f"{__package__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"{__package__}.{name}":
                continue
            raise
        cases.extend(module.CASES)
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--filter", default="")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    results: list[Result] = []
    for case in all_cases():
        label = f"{case.family} {case.algo} {case.model} b{case.batch}"
        if opts.filter and opts.filter.lower() not in label.lower():
            continue
        r = run_case(case, opts.repeats)
        print(f"{label}: ours {r.ours_s * 1e3:.2f} ms, captum {r.theirs_s * 1e3:.2f} ms, "
              f"ratio {r.ratio:.2f}", flush=True)
        results.append(r)
    print()
    print(table(results))


if __name__ == "__main__":
    main()
