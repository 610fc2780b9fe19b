"""Held-out examples a recipe ships beside its archive (``<build>/<name>/examples.json``): inputs
in the protobuf-JSON form of ``explain.v1.Input`` (what a client sends as ``inputs``) with their
true class, for the explorer page and anyone trying the service. Deterministic: first rows of
each class of the held-out split, in split order."""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import Tensor

EXAMPLES_FILE = "examples.json"


def png_b64(pixels: np.ndarray) -> str:
    """Base64 PNG of ``(H, W)`` (L) or ``(H, W, 3)`` (RGB) values in [0, 1]."""
    from PIL import Image

    a = np.clip(np.rint(np.asarray(pixels, dtype=np.float64) * 255.0), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a, "L" if a.ndim == 2 else "RGB").save(buf, format="PNG", optimize=True)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def first_per_class(y: Tensor, per_class: int) -> list[int]:
    """Row indices: the first ``per_class`` rows of every class, in row order."""
    picked: list[int] = []
    for c in sorted(set(y.tolist())):
        picked += [i for i, v in enumerate(y.tolist()) if v == c][:per_class]
    return sorted(picked)


def tabular(values: Sequence[float], names: Sequence[str], *, drop_zeros: bool = False,
            digits: int = 6) -> dict[str, Any]:
    """``{"tabular": {"features": {name: value}}}`` with values rounded to ``digits``
    significant digits (zeros left out with ``drop_zeros``: absent features are 0)."""
    feats = {n: float(f"{float(v):.{digits}g}") for n, v in zip(names, values)
             if not (drop_zeros and v == 0)}
    return {"tabular": {"features": feats}}


def example(ex_id: str, inputs: dict[str, Any], true_index: int | None,
            class_names: Sequence[str], note: str = "") -> dict[str, Any]:
    return {"id": ex_id, "inputs": inputs, "true_index": true_index,
            "true_label": class_names[true_index] if true_index is not None else None,
            "note": note}


def report(name: str, truth: str, examples: list[dict[str, Any]]) -> dict[str, Any]:
    return {"model": name, "truth": truth, "examples": examples}
