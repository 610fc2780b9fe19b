"""From an attribution row to what callers read: top features and human reasons."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .request import Feature
from .spec import InputKind, ModelSpec


def feature_names(spec: ModelSpec) -> list[str]:
    """One name per input element: the spec's names for tabular models, else an index."""
    if spec.input_kind is InputKind.TABULAR and spec.feature_names:
        return list(spec.feature_names)
    shape = spec.input_shape
    return [f"x[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


SORTED_FEATURES = 256  # up to this many features: ranked by one full sort


def top_features(attr: np.ndarray, shown: np.ndarray, names: list[str], k: int) -> list[Feature]:
    """The ``k`` features with the largest |attribution|, largest first; equal magnitudes in
    feature order (the lower index first), whatever the input's size."""
    flat = attr.reshape(-1)
    if k <= 0 or flat.shape[0] != len(names):
        return []
    n = flat.shape[0]
    k = min(k, n)
    minus = -np.abs(flat)
    if n <= SORTED_FEATURES:  # one sort is cheaper than a partition and a sort
        order = np.argsort(minus, kind="stable")[:k]
    else:  # the candidates: every feature up to the k-th magnitude, ties included, in order
        kth = np.partition(minus, k - 1)[k - 1]
        cand = np.flatnonzero(~(minus > kth))  # NaN sorts last in both paths: kept as one
        order = cand[np.argsort(minus[cand], kind="stable")[:k]]
    return [Feature(names[i], v, a) for i, v, a in zip(
        order.tolist(), shown[order].astype(float).tolist(), flat[order].astype(float).tolist())]


# Algorithms whose attributions are magnitudes (a sign that says nothing about the direction in
# which a feature moved the score), as a function of the request's params.
# TODO(table): move to the algorithm table entry (`signed` / `signed_of`) once it has a folder.
_UNSIGNED = {
    "Saliency": lambda p: True,  # |gradient| by default, and a gradient is no contribution
    "NoiseTunnel": lambda p: p.get("nt_type") in ("smoothgrad_sq", "vargrad")
    or not is_signed(str(p.get("base", "Saliency")), {}),
}


def is_signed(algorithm: str, params: Mapping[str, Any], noise: str | None = None) -> bool:
    """Whether ``algorithm``'s attributions carry a direction: > 0 raised the target's score
    relative to the baseline, < 0 lowered it. ``noise``: the type of the request's noise
    tunnel around it (smoothgrad keeps the method's sign; smoothgrad_sq and vargrad do not)."""
    if noise is not None and noise != "smoothgrad":
        return False
    unsigned = _UNSIGNED.get(algorithm)
    return unsigned is None or not unsigned(params)


def unsigned_note(algorithm: str, noise: str | None = None) -> str:
    method = f"a {noise} noise tunnel over {algorithm}" if noise else algorithm
    return (f"no reasons: {method} with these params gives unsigned attributions "
            "(magnitudes), which cannot say whether a feature raised the score")


def has_reasons(spec: ModelSpec) -> bool:
    """Whether ``reasons`` can give any: reason templates apply to tabular models only."""
    return bool(spec.reasons) and spec.input_kind is InputKind.TABULAR


def reasons(attr: np.ndarray, shown: np.ndarray, x: np.ndarray, reference: np.ndarray | None,
            spec: ModelSpec, limit: int) -> list[str]:
    """Reasons from the spec's templates, strongest first, for features that

    - are present in the input (the caller sent a non-zero value),
    - are more present than in the baseline the attribution was measured from (``x`` is the
      model-space input, ``reference`` the baseline row or the mean of a reference set, both
      ``(numel,)``; None for methods without a baseline, compared with zeros), and
    - push the target's score up (attribution > 0).

    A feature that helps only by being *absent* (below the baseline) gives no reason.
    """
    if not has_reasons(spec):
        return []
    flat = attr.reshape(-1)
    if flat.shape[0] != len(spec.feature_names):
        return []
    ref = np.zeros_like(x) if reference is None else reference
    out: list[str] = []
    for i in np.argsort(-flat, kind="stable"):
        if flat[i] <= 0 or len(out) >= limit:
            break
        if shown[i] == 0 or not x[i] > ref[i]:
            continue
        name = spec.feature_names[i]
        for rule in spec.reasons:
            if name.startswith(rule.prefix):
                text = rule.template.format(name=name[len(rule.prefix):])
                if text not in out:
                    out.append(text)
                break
    return out


# Methods whose attributions sum, over the perturbation's feature groups, to the output
# difference (efficiency): Shapley value sampling exactly (each permutation's marginal
# contributions telescope), Kernel SHAP up to its 1e6-weighted full and empty coalitions.
_GROUP_EFFICIENT = ("ShapleyValueSampling", "KernelShap")


def approximation_error(algorithm: str, completeness: bool, params: Mapping[str, Any],
                        attr: np.ndarray, x: Any, difference: float) -> float | None:
    """sum(attributions) - (f(x) - f(baseline)) where the method has a sum rule, else None.

    ``attr`` is one target's ``(*shape)`` attributions, ``x`` the ``(1, *shape)`` input tensor
    and ``difference`` the output difference. For the group-efficient perturbation methods the
    sum runs over feature groups (each element carries its group's value), so every element
    counts 1 / (size of its group)."""
    if completeness:
        return float(attr.sum() - difference)
    if algorithm not in _GROUP_EFFICIENT:
        return None
    from .algorithms.perturbation import feature_mask  # the perturbation entries' masks

    mask = feature_mask(x, int(params.get("superpixel", 1))).reshape(-1).cpu().numpy()  # (numel,)
    sizes = np.bincount(mask)[mask]                                                    # (numel,)
    return float((attr.reshape(-1) / sizes).sum() - difference)
