"""From an attribution row to what callers read: top features and human reasons."""

from __future__ import annotations

import numpy as np

from .request import Feature
from .spec import InputKind, ModelSpec


def feature_names(spec: ModelSpec) -> list[str]:
    """One name per input element: the spec's names for tabular models, else an index."""
    if spec.input_kind is InputKind.TABULAR and spec.feature_names:
        return list(spec.feature_names)
    shape = spec.input_shape
    return [f"x[{','.join(map(str, idx))}]" for idx in np.ndindex(*shape)]


def top_features(attr: np.ndarray, shown: np.ndarray, names: list[str], k: int) -> list[Feature]:
    """The ``k`` features with the largest |attribution|, largest first."""
    flat = attr.reshape(-1)
    if k <= 0 or flat.shape[0] != len(names):
        return []
    k = min(k, flat.shape[0])
    order = np.argpartition(-np.abs(flat), k - 1)[:k]
    order = order[np.argsort(-np.abs(flat[order]), kind="stable")]
    return [Feature(names[i], float(shown[i]), float(flat[i])) for i in order]


def reasons(attr: np.ndarray, shown: np.ndarray, spec: ModelSpec, limit: int) -> list[str]:
    """Reasons from the spec's templates, for features that are present (non-zero input) and
    push the target up, strongest first."""
    if not spec.reasons or spec.input_kind is not InputKind.TABULAR:
        return []
    flat = attr.reshape(-1)
    if flat.shape[0] != len(spec.feature_names):
        return []
    out: list[str] = []
    for i in np.argsort(-flat, kind="stable"):
        if flat[i] <= 0 or len(out) >= limit:
            break
        if shown[i] == 0:
            continue
        name = spec.feature_names[i]
        for rule in spec.reasons:
            if name.startswith(rule.prefix):
                text = rule.template.format(name=name[len(rule.prefix):])
                if text not in out:
                    out.append(text)
                break
    return out
