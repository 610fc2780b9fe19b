"""spec.yaml parsing, limits from spec and environment, and the baseline cache's LRU budget."""

from __future__ import annotations

import pytest
import torch
import yaml

from service.runtime import BaselineCache, Limits, load_spec, parse_spec
from service.runtime.cache import CachedBaseline
from service.runtime.spec import InputKind, SpecError
from tests.serving_fixture import tiny_image, tiny_tabular


def test_spec_round_trip(tmp_path):
    spec = load_spec(tiny_image(tmp_path) / "spec.yaml")
    assert spec.input_kind is InputKind.IMAGE and spec.input_shape == (1, 8, 8)
    assert spec.image.size == (8, 8) and spec.class_names == ("zero", "one", "two")
    assert spec.default_params["IntegratedGradients"] == {"n_steps": 16}
    assert set(spec.baselines) == {"zeros", "mean", "reference"}
    assert spec.batch.batch_size == 4 and spec.limits == {"max_n_steps": 64}
    tab = load_spec(tiny_tabular(tmp_path) / "spec.yaml")
    assert tab.scaler.std == (0.5, 0.5, 0.4, 10.0) and tab.reasons[0].prefix == "watched:"


@pytest.mark.parametrize("edit, key", [
    (lambda d: d.pop("model"), "`model`"),
    (lambda d: d["input"].update(kind="audio"), "`input.kind`"),
    (lambda d: d["explain"].update(default_algorithm="NoSuchAlgorithm"), "`explain.default_algorithm`"),
    (lambda d: d["baselines"].update(default="nope"), "`baselines.default`"),
    (lambda d: d["input"].update(shape="wide"), "`input.shape`"),
])
def test_spec_errors_name_the_key(tmp_path, edit, key):
    data = yaml.safe_load((tiny_image(tmp_path) / "spec.yaml").read_text())
    edit(data)
    with pytest.raises(SpecError, match=key):
        parse_spec(data)


def test_tabular_spec_needs_one_name_per_feature(tmp_path):
    data = yaml.safe_load((tiny_tabular(tmp_path) / "spec.yaml").read_text())
    data["input"]["feature_names"].pop()
    with pytest.raises(SpecError, match="feature_names"):
        parse_spec(data)


def test_limits_precedence(tmp_path):
    spec = load_spec(tiny_image(tmp_path) / "spec.yaml")
    assert Limits.build(spec, env={}).max_n_steps == 64
    env = {"EXPLAIN_LIMIT_MAX_N_STEPS": "128", "EXPLAIN_LIMIT_MAX_TOP_K": "3"}
    limits = Limits.build(spec, env=env)
    assert (limits.max_n_steps, limits.max_top_k) == (128, 3)
    with pytest.raises(ValueError, match="max_steps"):
        Limits.build(spec, env={"EXPLAIN_LIMIT_MAX_STEPS": "1"})
    with pytest.raises(ValueError, match="integers"):
        Limits.build(spec, env={"EXPLAIN_LIMIT_MAX_N_STEPS": "many"})


def _entry(n: int) -> CachedBaseline:
    return CachedBaseline(torch.zeros(n), torch.zeros(0))


def test_cache_lru_with_byte_budget():
    cache = BaselineCache(max_bytes=250)  # an entry of 10 elements counts 112 bytes: two fit
    calls = []

    def make(n):
        def f():
            calls.append(n)
            return _entry(n)
        return f

    assert cache.get_or_compute("a", make(10))[1] is False
    assert cache.get_or_compute("b", make(10))[1] is False
    assert cache.get_or_compute("a", make(10))[1] is True  # a is now most recent
    cache.get_or_compute("c", make(10))  # 336 bytes > 250: evicts b, the least recent
    assert cache.get_or_compute("a", make(10))[1] is True
    assert cache.get_or_compute("b", make(10))[1] is False
    big, hit = cache.get_or_compute("big", make(100))  # larger than the budget: not stored
    assert not hit and big.tensor.numel() == 100
    stats = cache.stats()
    assert stats.nbytes <= 250 and stats.hits == 2 and stats.misses == 5
    assert stats.hit_rate == pytest.approx(2 / 7)


def test_cache_entry_counts_what_it_derives():
    """The budget counts the derived reference row and output means too, built or not."""
    import sys

    e = CachedBaseline(torch.randn(4, 3, 5), torch.randn(4, 10))
    before = e.nbytes
    means, ref = e.output_means, e.reference
    held = (e.tensor.numel() * 4 + e.outputs.numel() * 4 + ref.nbytes
            + sys.getsizeof(means) + sum(sys.getsizeof(v) for v in means))
    assert e.nbytes == before >= held
