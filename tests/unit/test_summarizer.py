"""Summarizer, ClassSummarizer and the stats: against closed forms (numpy over the concatenated
stream) and against captum fed the same stream."""

from __future__ import annotations

import captum.attr as ca
import numpy as np
import pytest
import torch

import service.attribution as sa

STAT_NAMES = ["Mean", "Var", "StdDev", "MSE", "Min", "Max", "Sum", "Count"]


def _stats(lib, orders=(0, 1, 2)):
    out = [lib.Mean(), lib.MSE(), lib.Min(), lib.Max(), lib.Sum(), lib.Count()]
    for k in orders:
        out += [lib.Var(order=k), lib.StdDev(order=k)]
    return out


def _stream(n: int, shape=(3, 4), offset: float = 0.0, seed: int = 0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return [offset + torch.randn(shape, generator=g, dtype=dtype) for _ in range(n)]


def _assert_summary_close(ours: dict, theirs: dict, atol=1e-10, rtol=1e-10) -> None:
    assert set(ours) == set(theirs)
    for k in theirs:
        if isinstance(theirs[k], torch.Tensor):
            assert ours[k].dtype == theirs[k].dtype, k
            torch.testing.assert_close(ours[k], theirs[k], atol=atol, rtol=rtol, msg=k)
        else:
            assert ours[k] == theirs[k], k


def test_every_stat_matches_numpy_over_the_stream() -> None:
    xs = _stream(13)
    summ = sa.Summarizer(_stats(sa))
    for x in xs:
        summ.update(x)
    s = summ.summary
    a = np.stack([x.numpy() for x in xs])            # (n, 3, 4)
    n = len(xs)
    np.testing.assert_allclose(s["mean"].numpy(), a.mean(0), rtol=1e-12)
    np.testing.assert_allclose(s["mse"].numpy(), ((a - a.mean(0)) ** 2).sum(0), rtol=1e-11)
    np.testing.assert_allclose(s["variance"].numpy(), a.var(0), rtol=1e-11)
    np.testing.assert_allclose(s["sample_variance"].numpy(), a.var(0, ddof=1), rtol=1e-11)
    np.testing.assert_allclose(s["variance(2)"].numpy(), a.var(0, ddof=2), rtol=1e-11)
    np.testing.assert_allclose(s["std_dev"].numpy(), a.std(0), rtol=1e-11)
    np.testing.assert_allclose(s["sample_std_dev"].numpy(), a.std(0, ddof=1), rtol=1e-11)
    np.testing.assert_allclose(s["std_dev(2)"].numpy(), a.std(0, ddof=2), rtol=1e-11)
    np.testing.assert_array_equal(s["min"].numpy(), a.min(0))
    np.testing.assert_array_equal(s["max"].numpy(), a.max(0))
    np.testing.assert_allclose(s["sum"].numpy(), a.sum(0), rtol=1e-12)
    assert s["count"] == n


@pytest.mark.parametrize("offset", [1e6, 1e9])
def test_welford_keeps_precision_far_from_zero(offset: float) -> None:
    # values offset + N(0, 1): a sum-of-squares formula loses every digit of the variance at 1e9
    # in float64 (offset**2 = 1e18 > 2**53); Welford's update keeps ~1e-7 relative error
    xs = _stream(200, shape=(5,), offset=offset, seed=3)
    summ = sa.Summarizer([sa.Var(order=1), sa.Mean()])
    for x in xs:
        summ.update(x)
    a = np.stack([x.numpy() for x in xs])
    exact = ((a - a.mean(0, dtype=np.longdouble)) ** 2).sum(0) / (len(a) - 1)
    np.testing.assert_allclose(summ.summary["sample_variance"].numpy(), exact.astype(float),
                               rtol=1e-6)
    naive = (a ** 2).sum(0) / len(a) - a.mean(0) ** 2
    if offset >= 1e9:
        assert np.abs(naive * len(a) / (len(a) - 1) - exact).max() > 1.0  # the oracle is not vacuous


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_matches_captum_on_a_stream_of_tuples(dtype) -> None:
    g = torch.Generator().manual_seed(1)
    stream = [(torch.randn(2, 3, generator=g).mul(10).to(dtype),
               torch.randn(4, generator=g).mul(10).to(dtype)) for _ in range(9)]
    ours, theirs = sa.Summarizer(_stats(sa)), ca.Summarizer(_stats(ca, orders=(0, 1)))
    ours_common, theirs_common = sa.Summarizer(sa.CommonStats()), ca.Summarizer(ca.CommonStats())
    for item in stream:
        ours.update(item)
        theirs.update(item)
        ours_common.update(item)
        theirs_common.update(item)
        for o, t in zip(ours_common.summary, theirs_common.summary):
            _assert_summary_close(o, t, atol=1e-5, rtol=1e-5)
    for o, t in zip(ours.summary, theirs.summary):
        # captum names order 2 ``std_dev2)``; we name it ``std_dev(2)`` (see README)
        o = {k: v for k, v in o.items() if not k.endswith("(2)")}
        _assert_summary_close(o, t, atol=1e-5, rtol=1e-5)


def test_single_update_and_empty_summaries_match_captum() -> None:
    for lib in (sa, ca):
        assert lib.Summarizer([lib.Mean()]).summary is None
    ours, theirs = sa.Summarizer(_stats(sa, (0, 1))), ca.Summarizer(_stats(ca, (0, 1)))
    ours.update(3.0)
    theirs.update(3.0)
    o, t = ours.summary, theirs.summary
    assert o["count"] == t["count"] == 1
    for k in ("mean", "mse", "variance", "sample_variance", "std_dev", "min", "max", "sum"):
        torch.testing.assert_close(o[k].double(), t[k].double(), atol=0, rtol=0)


def test_requested_stats_only_in_summary_and_dependencies_tracked() -> None:
    summ = sa.Summarizer([sa.StdDev(order=1), sa.StdDev(order=1), sa.Min(name="lo")])
    for x in (1.0, 2.0, 4.0):
        summ.update(x)
    assert list(summ.summary) == ["sample_std_dev", "lo"]
    torch.testing.assert_close(summ.summary["sample_std_dev"],
                               torch.tensor(np.std([1.0, 2.0, 4.0], ddof=1), dtype=torch.float64))
    assert summ.summary["lo"].item() == 1.0


def test_stat_equality_is_by_class_and_parameters() -> None:
    assert sa.Var(order=1) == sa.Var(order=1) and sa.Var() != sa.Var(order=1)
    assert sa.Var() != sa.StdDev()
    assert len({sa.Mean(), sa.Mean(), sa.Var(), sa.Var(order=0)}) == 2
    assert sa.Count().name == "count" and sa.Var(order=3).name == "variance(3)"


def test_bad_updates_have_clear_errors() -> None:
    summ = sa.Summarizer([sa.Mean()])
    summ.update(torch.zeros(2))
    with pytest.raises(AssertionError, match="one form"):   # captum asserts here too
        summ.update((torch.zeros(2),))
    with pytest.raises(ValueError, match="one shape"):
        summ.update(torch.zeros(3))
    with pytest.raises(TypeError, match="list of Stat"):
        sa.Summarizer([sa.Mean, "max"])
    with pytest.raises(RuntimeError, match="not part of a summarizer"):
        sa.Mean().update(torch.zeros(2))


# ---------------------------------------------------------------------------------------------
# ClassSummarizer


def _class_stream(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = [[0, 1, 1, 2], 1, torch.tensor(2), ["a"], [2, 0, 0, 1]]
    return [((torch.randn(4, 3, 2, generator=g), torch.randn(4, 5, generator=g)), y)
            for y in labels]


def test_class_summarizer_matches_captum_with_batch_and_per_example_labels() -> None:
    ours, theirs = sa.ClassSummarizer(sa.CommonStats()), ca.ClassSummarizer(ca.CommonStats())
    for x, y in _class_stream():
        ours.update(x, y)
        # captum keys a 0-d label tensor by object identity; give it the python value
        theirs.update(x, y.item() if isinstance(y, torch.Tensor) else y)
    for o, t in zip(ours.summary, theirs.summary):
        _assert_summary_close(o, t, atol=1e-6, rtol=1e-6)
    oc, tc = ours.class_summaries, theirs.class_summaries
    assert set(oc) == set(tc) == {0, 1, 2, "a"}
    for key in tc:
        for o, t in zip(oc[key], tc[key]):
            _assert_summary_close(o, t, atol=1e-6, rtol=1e-6)


def test_class_summaries_are_numpy_stats_of_each_class() -> None:
    g = torch.Generator().manual_seed(5)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 2] * 4)
    summ = sa.ClassSummarizer([sa.Mean(), sa.Var(order=1)])
    summ.update(x[:5], y[:5])
    summ.update(x[5:], y[5:].tolist())
    for c in range(3):
        rows = x[y == c].numpy()
        got = summ.class_summaries[c][0]
        np.testing.assert_allclose(got["mean"].numpy(), rows.mean(0), rtol=1e-12)
        np.testing.assert_allclose(got["sample_variance"].numpy(), rows.var(0, ddof=1),
                                   rtol=1e-11)
    np.testing.assert_allclose(summ.summary[0]["mean"].numpy(), x.numpy().mean(0), rtol=1e-12)


def test_class_summarizer_without_labels_summarizes_whole_batches() -> None:
    summ = sa.ClassSummarizer([sa.Mean()])
    a, b = torch.ones(3, 2), 3 * torch.ones(3, 2)
    summ.update(a)
    summ.update(b)
    torch.testing.assert_close(summ.summary["mean"], 2 * torch.ones(3, 2))
    assert summ.class_summaries == {}


def test_class_summarizer_label_count_must_match_batch() -> None:
    summ = sa.ClassSummarizer([sa.Mean()])
    with pytest.raises(AssertionError, match="`labels` has 3 entries"):
        summ.update(torch.zeros(4, 2), [0, 1, 2])
    with pytest.raises(ValueError, match="empty"):
        summ.update(torch.zeros(4, 2), [])
