"""Perturbation methods on Captum's edge cases, with the real captum as the oracle: the
asynchronous path (``attribute_future``), output dtypes, broadcast baselines, empty inputs,
FeaturePermutation on one example, and the error types Captum's users catch."""

from __future__ import annotations

import threading

import captum.attr as ca
import pytest
import torch

import service.attribution as sa
from service.attribution._common import AttributionInputError

W = torch.tensor([1.0, -2.0, 3.0])


def linear(x):
    return x * W


def per_example(x):                                     # (B, 3) -> (B,)
    return (x * W).sum(1) + x[:, 0] * x[:, 2]


def future_of(f, threaded: bool = False):
    def forward(*args):
        future: torch.futures.Future = torch.futures.Future()
        out = f(*args)
        if threaded:
            threading.Thread(target=future.set_result, args=(out,)).start()
        else:
            future.set_result(out)
        return future

    return forward


X = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0], [2.0, 0.0, -1.0]])
MASK = torch.tensor([[0, 0, 1]])

# ---------------------------------------------------------------------------------------------
# attribute_future


@pytest.mark.parametrize("name, kwargs", [
    ("FeatureAblation", {"feature_mask": MASK, "baselines": 0.5, "perturbations_per_eval": 2}),
    ("FeaturePermutation", {}),
    ("ShapleyValueSampling", {"n_samples": 5, "perturbations_per_eval": 3}),
    ("ShapleyValues", {"feature_mask": MASK}),
])
@pytest.mark.parametrize("threaded", [False, True])
def test_attribute_future_matches_captum(name, kwargs, threaded):
    results = []
    for lib in (sa, ca):
        torch.manual_seed(3)
        fut = getattr(lib, name)(future_of(per_example, threaded)).attribute_future(X, **kwargs)
        assert type(fut) is torch.Future
        results.append(fut.wait())
    torch.testing.assert_close(results[0], results[1])


def test_attribute_future_equals_attribute():
    sync = sa.ShapleyValues(per_example).attribute(X, feature_mask=MASK)
    fut = sa.ShapleyValues(future_of(per_example)).attribute_future(X, feature_mask=MASK)
    torch.testing.assert_close(fut.wait(), sync)
    assert not fut.value().is_inference()


def test_attribute_future_submits_every_pass_before_any_completes():
    pending: list[tuple[torch.futures.Future, torch.Tensor]] = []

    def forward(x):
        future: torch.futures.Future = torch.futures.Future()
        pending.append((future, per_example(x)))
        return future

    fut = sa.FeatureAblation(forward).attribute_future(X)
    assert len(pending) == 1 + 3 and not fut.done()     # initial pass + one per feature
    for f, value in reversed(pending):
        f.set_result(value)
    torch.testing.assert_close(fut.wait(), sa.FeatureAblation(per_example).attribute(X))


def test_a_failed_future_fails_the_result_with_its_own_error():
    def forward(x):
        future: torch.futures.Future = torch.futures.Future()
        future.set_exception(KeyError("model down"))
        return future

    with pytest.raises(KeyError, match="model down"):
        sa.FeatureAblation(forward).attribute_future(X).wait()


def test_a_wrong_output_in_a_future_fails_the_result():
    fut = sa.FeatureAblation(future_of(lambda x: "oops")).attribute_future(X)
    with pytest.raises(AttributionInputError, match="forward_func"):
        fut.wait()


@pytest.mark.parametrize("cls", [sa.FeatureAblation, sa.FeaturePermutation,
                                 sa.ShapleyValueSampling, sa.ShapleyValues])
def test_attribute_and_attribute_future_refuse_the_other_kind_of_forward(cls):
    # Captum asserts here: catchable as AssertionError (Captum code) and ValueError (ours).
    with pytest.raises(AssertionError, match="attribute_future"):
        cls(future_of(per_example)).attribute(X)
    with pytest.raises(ValueError, match="Future"):
        cls(per_example).attribute_future(X)


@pytest.mark.parametrize("cls", [sa.Occlusion, sa.Lime, sa.KernelShap])
def test_attribute_future_is_not_implemented_where_captum_has_none(cls):
    with pytest.raises(NotImplementedError):
        cls(per_example).attribute_future()


def test_sync_passes_run_in_inference_mode_async_ones_under_no_grad():
    modes = []

    def forward(x):
        modes.append((torch.is_inference_mode_enabled(), torch.is_grad_enabled()))
        return per_example(x)

    sa.FeatureAblation(forward).attribute(X)
    assert set(modes) == {(True, False)}
    modes.clear()
    sa.FeatureAblation(future_of(forward)).attribute_future(X).wait()
    assert set(modes) == {(False, False)}


# ---------------------------------------------------------------------------------------------
# dtypes: captum's, except that float64 is never rounded to float32


@pytest.mark.parametrize("out, dtype", [(lambda x: float(x.sum()), torch.float64),
                                         (lambda x: int(x.sum()), torch.int64),
                                         (lambda x: x.sum(), torch.float32)])
def test_feature_ablation_has_the_outputs_dtype(out, dtype):
    ours = sa.FeatureAblation(out).attribute(X, feature_mask=MASK)
    theirs = ca.FeatureAblation(out).attribute(X, feature_mask=MASK)
    assert ours.dtype == theirs.dtype == dtype
    torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("name", ["ShapleyValues", "ShapleyValueSampling", "Occlusion"])
def test_averaging_methods_give_float_attributions_for_integer_outputs(name):
    def out(x):
        return int((x * 10).sum())

    kw = {"sliding_window_shapes": (2,)} if name == "Occlusion" else {"feature_mask": MASK}
    results = []
    for lib in (sa, ca):
        torch.manual_seed(0)
        results.append(getattr(lib, name)(out).attribute(X, **kw))
    assert results[0].dtype == results[1].dtype == torch.float32
    torch.testing.assert_close(results[0], results[1])


@pytest.mark.parametrize("name", ["ShapleyValues", "Occlusion", "Lime"])
def test_float64_models_keep_float64_where_captum_rounds_to_float32(name):
    x = X.double()
    kw = {"sliding_window_shapes": (1,)} if name == "Occlusion" else {"feature_mask": MASK}
    a = getattr(sa, name)(lambda t: per_example(t) + 1e-12 * t.sum(1)).attribute(x, **kw)
    assert a.dtype == torch.float64
    if name != "Lime":   # the 1e-12 term survives: float32 would round it away
        exact = getattr(sa, name)(per_example).attribute(x, **kw)
        assert not torch.equal(a, exact)


# ---------------------------------------------------------------------------------------------
# baselines, inputs, masks


@pytest.mark.parametrize("cls, kw", [
    (sa.FeatureAblation, {}), (sa.Occlusion, {"sliding_window_shapes": (2,)}),
])
@pytest.mark.parametrize("baselines", [torch.tensor([10.0, 10.0, 10.0]),
                                       torch.tensor([[1.0], [2.0], [3.0]])])
def test_baselines_broadcast_to_the_input_as_in_captum(cls, kw, baselines):
    ours = cls(per_example).attribute(X, baselines=baselines, **kw)
    theirs = getattr(ca, cls.__name__)(per_example).attribute(X, baselines=baselines, **kw)
    torch.testing.assert_close(ours, theirs)


def test_a_baseline_that_does_not_broadcast_names_the_field():
    with pytest.raises(ValueError, match=r"baselines\[0\]"):
        sa.FeatureAblation(per_example).attribute(X, baselines=torch.zeros(2, 3))


def test_an_int_input_with_a_float_baseline_is_ablated_in_float():
    def f(a, b):
        return a.sum(1) + b.sum(1)

    xs = (torch.tensor([[0, 1], [3, 4]]), torch.tensor([[0.5], [1.5]]))
    ours = sa.FeatureAblation(f).attribute(xs, baselines=(0.2, 0.4))
    theirs = ca.FeatureAblation(f).attribute(xs, baselines=(0.2, 0.4))
    torch.testing.assert_close(ours, theirs)
    torch.testing.assert_close(ours[0], torch.tensor([[-0.2, 0.8], [2.8, 3.8]]))


def test_an_empty_input_gets_zero_attributions():
    def f(x, sparse):
        return (x * W).sum() + (sparse[0] if sparse.numel() else 0)

    xs = (X[:2], torch.tensor([]))
    for cls in (sa.FeatureAblation, sa.FeaturePermutation):
        ours = cls(f).attribute(xs)
        theirs = getattr(ca, cls.__name__)(f).attribute(xs)
        assert ours[1].shape == theirs[1].shape == (1,)
        assert float(ours[1].abs().sum()) == 0.0
    torch.testing.assert_close(sa.FeatureAblation(f).attribute(xs)[0],
                               ca.FeatureAblation(f).attribute(xs)[0])


def test_whole_number_float_masks_are_masks():
    m = torch.tensor([[0.0, 0.0, 1.0]])
    torch.testing.assert_close(sa.FeatureAblation(per_example).attribute(X, feature_mask=m),
                               sa.FeatureAblation(per_example).attribute(X, feature_mask=MASK))


def test_feature_permutation_of_one_example_gives_zeros_and_a_warning(caplog):
    one = X[:1]
    assert float(sa.FeaturePermutation(per_example).attribute(one).abs().sum()) == 0.0
    torch.testing.assert_close(sa.FeaturePermutation(per_example).attribute(one),
                               ca.FeaturePermutation(per_example).attribute(one))
    assert "skips feature groups" in caplog.text
    fp = sa.FeaturePermutation(per_example)
    fp._min_examples_per_batch_grouped = 1
    with pytest.raises(AssertionError, match="at least 2"):
        fp.attribute(one)


def test_per_example_masks_with_several_outputs_per_example_match_captum():
    def f(x):                                               # (B, 3) -> (B, 2)
        return torch.stack([per_example(x), x.sum(1)], dim=1)

    mask = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 1, 1]])
    for name in ("ShapleyValues", "ShapleyValueSampling"):
        torch.manual_seed(1)
        ours = getattr(sa, name)(f).attribute(X, feature_mask=mask)
        torch.manual_seed(1)
        theirs = getattr(ca, name)(f).attribute(X, feature_mask=mask)
        assert ours.shape == theirs.shape == (3, 2, 3)
        torch.testing.assert_close(ours, theirs)


def test_extra_keyword_arguments_are_accepted_as_in_captum():
    a = sa.FeatureAblation(per_example).attribute(X, enable_cross_tensor_attribution=True)
    torch.testing.assert_close(a, sa.FeatureAblation(per_example).attribute(X))


@pytest.mark.parametrize("call", [
    lambda: sa.FeatureAblation(lambda x: x.sum()).attribute(X, perturbations_per_eval=2),
    lambda: sa.Occlusion(per_example).attribute(X, sliding_window_shapes=(1, 2)),
    lambda: sa.Occlusion(per_example).attribute(X, sliding_window_shapes=(1,), strides=2),
    lambda: sa.ShapleyValues(lambda x: x.sum()).attribute(X, perturbations_per_eval=2),
])
def test_user_mistakes_captum_asserts_on_are_assertion_errors_too(call):
    with pytest.raises(AssertionError):
        call()


def test_feature_ablation_per_example_masks_with_several_outputs_per_example():
    # Captum fails here (its mask broadcasts against the outputs); the closed form: row
    # 2b + j of the attributions is output j of example b minus that output with example b's
    # feature ablated.
    def f(x):                                               # (B, 3) -> (B, 2)
        return torch.stack([per_example(x), (x ** 2).sum(1)], dim=1)

    mask = torch.tensor([[0, 0, 1], [1, 0, 0], [0, 1, 1]])
    a = sa.FeatureAblation(f).attribute(X, feature_mask=mask)             # (6, 3)
    assert a.shape == (6, 3)
    for b in range(3):
        for e in range(3):
            ablated = X.clone()
            ablated[b, mask[b] == mask[b, e]] = 0
            drop = f(X)[b] - f(ablated)[b]                                 # (2,)
            torch.testing.assert_close(a[2 * b: 2 * b + 2, e], drop)
