"""Side-by-side timing of our engine and captum in one process: interleaved runs, medians,
ratios, and peak resident-memory growth sampled during each call."""

from __future__ import annotations

import gc
import os
import statistics
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .models import MODELS, make_inputs

_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class BenchCase:
    family: str
    algo: str          # the row label, e.g. "IntegratedGradients n_steps=50"
    model: str         # key of bench.models.MODELS, or one a family registers in EXTRA_MODELS
    batch: int
    ours: Callable[[nn.Module], Any]
    theirs: Callable[[nn.Module], Any]
    # kwargs(inputs) -> attribute() keyword arguments, shared by both sides
    kwargs: Callable[[Any], dict] = field(default=lambda inputs: {})
    # inputs(batch) -> the inputs; default: bench.models.make_inputs
    inputs: Callable[[int], Any] | None = None
    # (ratio bound, why): the target for this row
    target: float = 1.0
    repeats: int | None = None
    # floor_rows(batch) -> rows of one forward + input-gradient pass that the algorithm needs at
    # the least (IG: batch * n_steps): timed as the "floor", the compute no implementation of
    # the algorithm can avoid; floor/captum is the best ratio reachable.
    floor_rows: Callable[[int], int] | None = None


# Families may register more models: name -> (builder, example shape)
EXTRA_MODELS: dict[str, Callable[[], nn.Module]] = {}


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


class PeakRSS:
    """Samples resident memory every millisecond while active; ``growth`` is peak - start."""

    def __enter__(self) -> PeakRSS:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.001):
            self.peak = max(self.peak, _rss())

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())

    @property
    def growth(self) -> int:
        return self.peak - self.start


@dataclass
class Result:
    case: BenchCase
    ours_s: float
    theirs_s: float
    ours_mem: int
    theirs_mem: int
    floor_s: float | None = None

    @property
    def ratio(self) -> float:
        return self.ours_s / self.theirs_s


def _model(name: str) -> nn.Module:
    if name in EXTRA_MODELS:
        return EXTRA_MODELS[name]()
    return MODELS[name][0]()


def run_case(case: BenchCase, repeats: int) -> Result:
    model = _model(case.model)
    inputs = case.inputs(case.batch) if case.inputs else make_inputs(case.model, case.batch)
    kwargs = case.kwargs(inputs)
    ours, theirs = case.ours(model), case.theirs(model)

    def timed(obj: Any, loops: int = 1) -> float:
        """Seconds per call, averaged over ``loops`` back-to-back calls (short calls are
        looped so that one sample lasts >= ~20 ms)."""
        gc.collect()
        torch.manual_seed(0)
        t0 = time.perf_counter()
        for _ in range(loops):
            obj.attribute(inputs, **kwargs)
        return (time.perf_counter() - t0) / loops

    def peak(obj: Any) -> int:
        gc.collect()
        torch.manual_seed(0)
        with PeakRSS() as mem:
            obj.attribute(inputs, **kwargs)
        return mem.growth

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # The memory sampler thread would slow the timed calls: it runs on separate calls,
        # which also serve as the warm-up.
        mem_ours, mem_theirs = peak(ours), peak(theirs)
        loops = {name: max(1, int(0.02 / max(timed(obj), 1e-6)))
                 for name, obj in (("ours", ours), ("theirs", theirs))}
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for i in range(case.repeats or repeats):
            order = (("ours", ours), ("theirs", theirs)) if i % 2 == 0 else \
                (("theirs", theirs), ("ours", ours))
            for name, obj in order:
                times[name].append(timed(obj, loops[name]))
        floor = None
        if case.floor_rows is not None and not case.inputs:
            rows = case.floor_rows(case.batch)
            big = make_inputs(case.model, rows)

            class _Floor:
                @staticmethod
                def attribute(_inputs: Any, **_: Any) -> None:
                    x = big.detach().requires_grad_()
                    torch.autograd.grad(model(x)[:, 0].sum(), x)

            floor_loops = max(1, int(0.02 / max(timed(_Floor), 1e-6)))
            floor = statistics.median(timed(_Floor, floor_loops) for _ in range(3))
    return Result(case, statistics.median(times["ours"]), statistics.median(times["theirs"]),
                  mem_ours, mem_theirs, floor)


def _fmt_time(s: float) -> str:
    return f"{s * 1e3:.2f} ms" if s < 1 else f"{s:.2f} s"


def _fmt_mem(b: int) -> str:
    return f"{b / 2**20:.0f} MiB"


def table(results: list[Result]) -> str:
    lines = ["| family | algorithm | model | batch | ours | captum | ours/captum | target | "
             "floor/captum | peak +RSS ours | peak +RSS captum |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        c = r.case
        ok = "ok" if r.ratio <= c.target else "MISSED"
        lines.append(f"| {c.family} | {c.algo} | {c.model} | {c.batch} | {_fmt_time(r.ours_s)} | "
                     f"{_fmt_time(r.theirs_s)} | {r.ratio:.2f} | <= {c.target} {ok} | "
                     f"{'' if r.floor_s is None else f'{r.floor_s / r.theirs_s:.2f}'} | "
                     f"{_fmt_mem(r.ours_mem)} | {_fmt_mem(r.theirs_mem)} |")
    return "\n".join(lines)
