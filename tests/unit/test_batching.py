"""The pass planner: captum's internal_batch_size semantics, measured budgets, same results."""

from __future__ import annotations

import torch
from torch import nn

import service.attribution as sa
from service.attribution import _batching
from service.attribution._batching import PassPlanner, variants_per_pass


def test_internal_batch_size_follows_captum() -> None:
    assert variants_per_pass(50, 4, 10, internal_batch_size=16) == 4
    assert variants_per_pass(50, 4, 10, internal_batch_size=3) == 1  # at least one variant
    assert variants_per_pass(5, 4, 10, internal_batch_size=10_000) == 5


def test_planner_measures_once_and_sizes_later_passes_to_the_budget() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 3))
    key = ("test-planner", 64)
    _batching._MEASURED.pop(key, None)
    seen: list[tuple[int, int]] = []
    x = torch.randn(40, 64, requires_grad=True)

    def run(start: int, stop: int) -> None:
        seen.append((start, stop))
        model(x[start:stop]).sum().backward()

    planner = PassPlanner(key, 40, 1, 64, None, budget_bytes=8 * 1024, min_rows=1)
    planner.passes(run)
    per_row = _batching._MEASURED[key]
    assert per_row > 256 * 4  # at least the ReLU output row is saved
    assert seen[0] == (0, 40)  # nothing measured yet: one pass by the element budget
    assert len(seen) == 1
    again = PassPlanner(key, 40, 1, 64, None, budget_bytes=8 * 1024, min_rows=1)
    expected = max(1, int(8 * 1024 // per_row))
    assert again.per_pass == expected < 40
    seen.clear()
    again.passes(run)
    assert seen[0] == (0, expected) and seen[-1][1] == 40


def test_results_do_not_depend_on_the_pass_size(monkeypatch) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(10, 32), nn.Tanh(), nn.Linear(32, 4)).double()
    x = torch.randn(6, 10, dtype=torch.float64)
    target = [0, 1, 2, 3, 0, 1]
    ref_ig = sa.IntegratedGradients(model).attribute(x, target=target, internal_batch_size=10_000)
    ref_gs = sa.Saliency(model).attribute(x, target=target)
    monkeypatch.setattr(_batching, "DEFAULT_PASS_BYTES", 1)  # one row per pass
    monkeypatch.setattr(_batching, "MIN_PASS_ROWS", 1)
    monkeypatch.setattr(_batching, "_MEASURED", _batching.OrderedDict())
    for _ in range(2):  # first call measures, second uses the measurement
        torch.testing.assert_close(sa.IntegratedGradients(model).attribute(x, target=target),
                                   ref_ig, atol=1e-12, rtol=1e-10)
        torch.testing.assert_close(sa.Saliency(model).attribute(x, target=target), ref_gs)


def test_measured_passes_keep_a_minimum_of_rows() -> None:
    key = ("test-min-rows",)
    _batching._remember(key, 50 * 2**20)  # 50 MiB per row: the budget fits less than one row
    assert PassPlanner(key, 50, 1, 10, None, budget_bytes=32 * 2**20, min_rows=16).per_pass == 16
    assert PassPlanner(key, 50, 4, 10, None, budget_bytes=32 * 2**20, min_rows=16).per_pass == 4
