"""Contract rows for the perturbation family.

Deterministic methods (FeatureAblation, Occlusion, ShapleyValues) match captum exactly
(float64 models; captum accumulates some results in float32, hence the tolerances). Sampled
methods draw from torch's global generator in captum's order, so a seeded run makes captum's
draws: FeaturePermutation and ShapleyValueSampling are identical under the same random stream;
Lime and KernelShap are identical in their samples and differ only by the solver of the
surrogate model (sklearn's in captum, torch's here), so they agree to the solvers' tolerance.
"""

from __future__ import annotations

import captum.attr as ca
import torch

import service.attribution as sa
import service.attribution.lime  # noqa: F401  (get_exp_kernel_similarity_function)
import service.attribution.linear_model  # noqa: F401

from . import models_perturbation  # noqa: F401  (registers the family's models)
from .models import ModelSpec
from .table import Case, extra, one_or_tuple, per_example_baselines, per_example_target

MODELS_ALL = ("linear", "mlp", "cnn", "pool", "two_input")


def _target(spec: ModelSpec, rows: list[int]) -> dict:
    if spec.n_outputs == 1:
        return extra(spec, rows)
    return {"target": per_example_target(spec, rows), **extra(spec, rows)}


def _const(spec: ModelSpec, value: float):
    """One number per input tensor."""
    n = len(spec.inputs([0]))
    return value if n == 1 else (value,) * n


def group_mask(spec: ModelSpec, rows: list[int], per_example: bool = False, size: int = 3):
    """Feature groups of ``size`` consecutive scalars, numbered across all input tensors with
    ids wrapping around, so one id covers scalars of several tensors (ids are global)."""
    xs = spec.inputs(rows[:1])
    total = sum(x[0].numel() for x in xs)
    n_groups = max(2, total // (size * 2))
    masks, start = [], 0
    for x in xs:
        n = x[0].numel()
        flat = torch.arange(start, start + n)
        start += n
        if per_example:
            m = torch.stack([((flat + r) // size) % n_groups for r in rows])
            masks.append(m.reshape(len(rows), *x.shape[1:]))
        else:
            masks.append(((flat // size) % n_groups).reshape(1, *x.shape[1:]))
    return one_or_tuple(tuple(masks))


def _ablation_rows(model: str) -> list[Case]:
    fa, cfa = sa.FeatureAblation, ca.FeatureAblation
    return [
        Case("FeatureAblation", model, fa, cfa, _target),
        Case("FeatureAblation-ppe3-baselines", model, fa, cfa,
             lambda s, r: {**_target(s, r), "baselines": per_example_baselines(s, r),
                           "perturbations_per_eval": 3}),
        Case("FeatureAblation-groups", model, fa, cfa,
             lambda s, r: {**_target(s, r), "feature_mask": group_mask(s, r),
                           "baselines": _const(s, 0.25), "perturbations_per_eval": 2}),
        Case("FeatureAblation-groups-per-example", model, fa, cfa,
             lambda s, r: {**_target(s, r), "feature_mask": group_mask(s, r, per_example=True)}),
    ]


ROWS: list[Case] = []
for _m in MODELS_ALL:
    ROWS += _ablation_rows(_m)

# A model that aggregates its batch into one scalar: attributions have one row.
ROWS += [
    Case("FeatureAblation-aggregate", "batch_sum", sa.FeatureAblation, ca.FeatureAblation,
         lambda s, r: {"feature_mask": group_mask(s, r)}, batch_equals_singles=False),
]


# ---------------------------------------------------------------------------------------------
# Occlusion: windows per model (single input: one shape; two inputs: one per input).

_WINDOWS = {
    "linear": ((2,), 1), "mlp": ((3,), 2), "cnn": ((1, 3, 3), (1, 2, 2)),
    "pool": ((1, 4, 4), 3), "two_input": (((2,), (2,)), (1, 1)),
    "patch": ((1, 3, 3), 1),
}


def _occ(spec: ModelSpec, rows: list[int], model: str, **more) -> dict:
    shapes, strides = _WINDOWS[model]
    return {**_target(spec, rows), "sliding_window_shapes": shapes, "strides": strides, **more}


for _m in MODELS_ALL:
    ROWS += [
        Case("Occlusion", _m, sa.Occlusion, ca.Occlusion,
             lambda s, r, m=_m: _occ(s, r, m), atol=1e-6, rtol=1e-5),
        Case("Occlusion-ppe4-baselines", _m, sa.Occlusion, ca.Occlusion,
             lambda s, r, m=_m: _occ(s, r, m, perturbations_per_eval=4,
                                     baselines=per_example_baselines(s, r)),
             atol=1e-6, rtol=1e-5),
    ]

# ---------------------------------------------------------------------------------------------
# FeaturePermutation: identical to captum under the same random stream (same randperm draws).

for _m in MODELS_ALL:
    ROWS += [
        Case("FeaturePermutation", _m, sa.FeaturePermutation, ca.FeaturePermutation, _target,
             sampled=True),
        Case("FeaturePermutation-groups-ppe3", _m, sa.FeaturePermutation,
             ca.FeaturePermutation,
             lambda s, r: {**_target(s, r), "feature_mask": group_mask(s, r),
                           "perturbations_per_eval": 3}, sampled=True),
    ]

# ---------------------------------------------------------------------------------------------
# Shapley values. Sampling: identical to captum under the same random stream (same randperm
# orderings). Exact: captum averages all F! orderings in float32, we sum 2**F coalitions in the
# output dtype; groups keep F <= 6 so captum's F * F! passes stay cheap.


def _few_groups(spec: ModelSpec, rows: list[int], per_example: bool = False):
    xs = spec.inputs(rows[:1])
    total = sum(x[0].numel() for x in xs)
    return group_mask(spec, rows, per_example, size=max(1, -(-total // 5)))


for _m in MODELS_ALL:
    ROWS += [
        Case("ShapleyValueSampling", _m, sa.ShapleyValueSampling, ca.ShapleyValueSampling,
             lambda s, r: {**_target(s, r), "feature_mask": group_mask(s, r), "n_samples": 4,
                           "perturbations_per_eval": 3}, sampled=True, atol=1e-5),
        Case("ShapleyValueSampling-baselines-per-example-mask", _m, sa.ShapleyValueSampling,
             ca.ShapleyValueSampling,
             lambda s, r: {**_target(s, r), "feature_mask": group_mask(s, r, per_example=True),
                           "baselines": per_example_baselines(s, r), "n_samples": 3},
             sampled=True, atol=1e-5),
        Case("ShapleyValues", _m, sa.ShapleyValues, ca.ShapleyValues,
             lambda s, r: {**_target(s, r), "feature_mask": _few_groups(s, r),
                           "baselines": per_example_baselines(s, r),
                           "perturbations_per_eval": 4}, atol=1e-5),
    ]

# ---------------------------------------------------------------------------------------------
# Lime and KernelShap: identical samples under the same random stream (captum's draw order,
# including the draws its per-example sklearn fit makes); the surrogates are solved in torch,
# captum's with sklearn on float32 copies, hence the tolerances.

_SURROGATE_TOL = {"atol": 2e-5, "rtol": 1e-4}


def _lime_kw(spec: ModelSpec, rows: list[int], **more) -> dict:
    return {**_target(spec, rows), "feature_mask": group_mask(spec, rows), "n_samples": 40,
            **more}


for _m in MODELS_ALL:
    ROWS += [
        Case("Lime", _m, sa.Lime, ca.Lime, _lime_kw, sampled=True, **_SURROGATE_TOL),
        Case("Lime-ppe3-baselines-coefs", _m, sa.Lime, ca.Lime,
             lambda s, r: _lime_kw(s, r, baselines=per_example_baselines(s, r),
                                   perturbations_per_eval=3, return_input_shape=False),
             sampled=True, **_SURROGATE_TOL),
        Case("Lime-euclidean-kernel", _m,
             lambda m: sa.Lime(m, similarity_func=sa.lime.get_exp_kernel_similarity_function(
                 "euclidean", 2.0)),
             lambda m: ca.Lime(m, similarity_func=ca._core.lime.get_exp_kernel_similarity_function(
                 "euclidean", 2.0)),
             _lime_kw, sampled=True, **_SURROGATE_TOL),
        Case("KernelShap", _m, sa.KernelShap, ca.KernelShap, _lime_kw, sampled=True,
             **_SURROGATE_TOL),
        Case("KernelShap-ppe4-baselines-coefs", _m, sa.KernelShap, ca.KernelShap,
             lambda s, r: _lime_kw(s, r, baselines=per_example_baselines(s, r),
                                   perturbations_per_eval=4, return_input_shape=False),
             sampled=True, **_SURROGATE_TOL),
    ]

# Captum-style surrogate objects (fit(DataLoader) / representation()) also work; checked one
# example at a time, where the draw order is captum's whatever the surrogate.
ROWS += [
    Case("Lime-sklearn-surrogate", "two_input",
         lambda m: sa.Lime(m, interpretable_model=_sklearn_linear()),
         lambda m: ca.Lime(m, interpretable_model=_sklearn_linear()),
         _lime_kw, sampled=True, captum_per_example=True, **_SURROGATE_TOL),
]

# Models that aggregate their batch into one scalar.
ROWS += [
    Case("ShapleyValueSampling-aggregate", "batch_sum", sa.ShapleyValueSampling,
         ca.ShapleyValueSampling, lambda s, r: {"feature_mask": group_mask(s, r),
                                                "n_samples": 3}, sampled=True, atol=1e-5),
    Case("Lime-aggregate", "batch_sum", sa.Lime, ca.Lime, _lime_kw, sampled=True,
         **_SURROGATE_TOL),
    Case("KernelShap-aggregate", "batch_sum", sa.KernelShap, ca.KernelShap, _lime_kw,
         sampled=True, **_SURROGATE_TOL),
]


def _sklearn_linear():
    from captum._utils.models.linear_model import SkLearnLinearRegression

    return SkLearnLinearRegression()

# LimeBase with user parts (a sampler, a transform, a kernel), on the model that aggregates its
# batch (LimeBase fits one surrogate to one output per perturbed input). Same samples as captum;
# our least squares in torch against captum's sklearn one.


def _sampler(original, **kwargs):
    return torch.bernoulli(torch.full((1, 6), 0.6))


def _scale(sample, original, **kwargs):
    return original * sample.to(original.dtype)


def _lime_base(lib, model_cls):
    return lambda m: lib.LimeBase(m, model_cls(), lambda a, b, c, **kw: float(c.sum()) + 1.0,
                                  _sampler, True, _scale, None)


ROWS += [
    Case("LimeBase-user-parts", "batch_sum",
         _lime_base(sa, lambda: sa.linear_model.LinearRegression()),
         _lime_base(ca, _sklearn_linear), lambda s, r: {"n_samples": 30,
                                                         "perturbations_per_eval": 1},
         sampled=True, **_SURROGATE_TOL),
]

# ---------------------------------------------------------------------------------------------
# attribute_future: the model behind a forward function that returns torch.futures.Future
# (completed later, by another thread), through our attribute_future and captum's, waited on.


class _Async:
    """An attribution object whose ``attribute`` runs ``attribute_future`` over the model
    answered from a worker thread, and waits for the Future it returns."""

    def __init__(self, cls, model: torch.nn.Module) -> None:
        self.obj = cls(_threaded_forward(model))

    def attribute(self, inputs, **kwargs):
        future = self.obj.attribute_future(inputs, **kwargs)
        assert type(future) is torch.Future
        return future.wait()


def _threaded_forward(model: torch.nn.Module):
    import threading

    def forward(*args):
        future: torch.futures.Future = torch.futures.Future()
        out = model(*args)   # a forward error surfaces at the call, as for a sync model
        threading.Thread(target=future.set_result, args=(out,)).start()
        return future

    return forward


for _m in ("mlp", "two_input", "cnn"):
    ROWS += [
        Case("FeatureAblation-future-ppe3", _m, lambda m: _Async(sa.FeatureAblation, m),
             lambda m: _Async(ca.FeatureAblation, m),
             lambda s, r: {**_target(s, r), "feature_mask": group_mask(s, r),
                           "baselines": _const(s, 0.25), "perturbations_per_eval": 3}),
        Case("FeaturePermutation-future", _m, lambda m: _Async(sa.FeaturePermutation, m),
             lambda m: _Async(ca.FeaturePermutation, m), _target, sampled=True),
        Case("ShapleyValueSampling-future-ppe2", _m,
             lambda m: _Async(sa.ShapleyValueSampling, m),
             lambda m: _Async(ca.ShapleyValueSampling, m),
             lambda s, r: {**_target(s, r), "feature_mask": group_mask(s, r), "n_samples": 3,
                           "perturbations_per_eval": 2}, sampled=True, atol=1e-5),
        Case("ShapleyValues-future", _m, lambda m: _Async(sa.ShapleyValues, m),
             lambda m: _Async(ca.ShapleyValues, m),
             lambda s, r: {**_target(s, r), "feature_mask": _few_groups(s, r),
                           "baselines": per_example_baselines(s, r)}, atol=1e-5),
    ]
