"""postprocess.top_features against a ranking written out by hand: the k largest |attribution|,
largest first, equal magnitudes in feature order, on both sides of SORTED_FEATURES."""
from __future__ import annotations

import math

import numpy as np
import pytest

from service.runtime.postprocess import SORTED_FEATURES, top_features


def _oracle(attr: np.ndarray, k: int) -> list[int]:
    flat = [float(v) for v in attr.reshape(-1)]
    def key(i: int) -> tuple[int, float, int]:
        v = flat[i]
        return (1, 0.0, i) if math.isnan(v) else (0, -abs(v), i)
    return sorted(range(len(flat)), key=key)[:k]


@pytest.mark.parametrize("n", [1, 7, SORTED_FEATURES, SORTED_FEATURES + 1, 1000, 4096])
@pytest.mark.parametrize("k", [1, 3, 5, 100])
@pytest.mark.parametrize("values", ["distinct", "ties", "nan"])
def test_ranking_matches_the_rule(n, k, values):
    rng = np.random.default_rng(n * 31 + k)
    if values == "distinct":
        attr = rng.standard_normal(n)
    else:  # few magnitudes, both signs: ties everywhere, including at the k-th place
        attr = rng.integers(-3, 4, n).astype(np.float64)
        if values == "nan":
            attr[rng.choice(n, size=max(1, n // 3), replace=False)] = np.nan
    attr = attr.astype(np.float32)  # as attributions arrive; the oracle reads the same values
    shown = attr.astype(np.float64) * 2 + 1
    names = [f"f{i}" for i in range(n)]
    got = top_features(attr, shown, names, k)
    want = _oracle(attr, min(k, n))
    assert [f.name for f in got] == [names[i] for i in want]
    for f, i in zip(got, want):
        assert (math.isnan(f.attribution) and math.isnan(attr[i])) or f.attribution == attr[i]
        assert (math.isnan(f.value) and math.isnan(shown[i])) or f.value == shown[i]


def test_nothing_for_no_k_or_a_name_list_of_another_size():
    attr = np.arange(4.0)
    assert top_features(attr, attr, ["a", "b", "c", "d"], 0) == []
    assert top_features(attr, attr, ["a", "b", "c"], 2) == []
