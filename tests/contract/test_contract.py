"""Generic suites over every row of the contract table."""

from __future__ import annotations

import pytest
import torch

from service.attribution._hooks import has_hooks

from .models import MODELS
from .rows import ROWS
from .table import Case, run, split

BATCH = [0, 1, 2, 3]


def _want_delta(case: Case) -> bool:
    return bool(case.kwargs(MODELS[case.model], BATCH).get("return_convergence_delta"))


def _close(ours: torch.Tensor, theirs: torch.Tensor, case: Case, what: str) -> None:
    assert ours.shape == theirs.shape, f"{what}: shape {ours.shape} != captum {theirs.shape}"
    torch.testing.assert_close(ours.to(theirs.dtype), theirs, atol=case.atol, rtol=case.rtol,
                               msg=lambda m: f"{case.id} {what} differs from captum: {m}")


@pytest.mark.parametrize("case", [c for c in ROWS if c.theirs is not None], ids=lambda c: c.id)
def test_matches_captum(case: Case) -> None:
    want_delta = _want_delta(case)
    groups = [[r] for r in BATCH] if case.captum_per_example else [BATCH]
    for rows in groups:
        ours, _ = run(case, case.ours, rows, seed=7)
        theirs, _ = run(case, case.theirs, rows, seed=7)
        a_ours, d_ours = split(ours, want_delta)
        a_theirs, d_theirs = split(theirs, want_delta)
        assert len(a_ours) == len(a_theirs)
        for i, (x, y) in enumerate(zip(a_ours, a_theirs)):
            _close(x, y, case, f"attribution {i} rows {rows}")
        if want_delta:
            _close(d_ours, d_theirs, case, f"delta rows {rows}")


@pytest.mark.parametrize("case", [c for c in ROWS if c.completeness is not None],
                         ids=lambda c: c.id)
def test_completeness(case: Case) -> None:
    result, _ = run(case, case.ours, BATCH, seed=3)
    _, delta = split(result, True)
    assert delta is not None
    assert delta.abs().max().item() < case.completeness, f"{case.id}: delta {delta}"


@pytest.mark.parametrize("case", ROWS, ids=lambda c: c.id)
def test_no_hooks_left(case: Case) -> None:
    _, model = run(case, case.ours, BATCH, seed=1)
    assert not has_hooks(model), f"{case.id} left hooks on the model"


@pytest.mark.parametrize("case", ROWS, ids=lambda c: c.id)
def test_hooks_removed_when_forward_raises(case: Case) -> None:
    model = MODELS[case.model].build()
    last = list(model.children())[-1]

    def boom(module, args, output):
        raise RuntimeError("forward failed on purpose")

    handle = last.register_forward_hook(boom)
    with pytest.raises(RuntimeError, match="on purpose"):
        run(case, case.ours, BATCH, seed=1, model=model)
    handle.remove()
    assert not has_hooks(model), f"{case.id} left hooks after forward raised"


@pytest.mark.parametrize("case", [c for c in ROWS if c.batch_equals_singles and not c.sampled],
                         ids=lambda c: c.id)
def test_batch_equals_singles(case: Case) -> None:
    want_delta = _want_delta(case)
    batch, _ = run(case, case.ours, BATCH, seed=5)
    a_batch, d_batch = split(batch, want_delta)
    for k, r in enumerate(BATCH):
        single, _ = run(case, case.ours, [r], seed=5)
        a_single, d_single = split(single, want_delta)
        for x, y in zip(a_batch, a_single):
            torch.testing.assert_close(x[k:k + 1], y, atol=1e-9, rtol=1e-7)
        if want_delta:
            per = d_single.shape[0]  # delta rows per example (DeepLiftShap: one per baseline)
            torch.testing.assert_close(d_batch[k * per:(k + 1) * per], d_single,
                                       atol=1e-9, rtol=1e-7)


@pytest.mark.parametrize("case", ROWS, ids=lambda c: c.id)
def test_seeded_run_is_deterministic(case: Case) -> None:
    want_delta = _want_delta(case)
    first, _ = run(case, case.ours, BATCH, seed=11)
    second, _ = run(case, case.ours, BATCH, seed=11)
    for x, y in zip(split(first, want_delta)[0], split(second, want_delta)[0]):
        torch.testing.assert_close(x, y, atol=0, rtol=0)
