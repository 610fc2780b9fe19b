"""The parts of an explanation that differ for methods that answer about a layer: top features
that name the layer's units and the note that says why there are no reasons (reasons cite
input features raising the target's score). A layer answer's heatmap is ``heatmap_png`` of its
(C, H, W) map, channels summed, at the layer's resolution (validation refuses other shapes)."""

from __future__ import annotations

import numpy as np
import torch

from .layers import LayerChoice, per_unit, unit_names
from .request import Feature


def top_units(attr: np.ndarray, values: torch.Tensor | None, choice: LayerChoice,
              k: int) -> list[Feature]:
    """The ``k`` units of the layer with the largest |attribution| summed over the unit,
    largest first; ``value`` is the layer's value summed over the unit (0 if unknown).
    ``attr``: (*layer shape)."""
    shape = choice.shape
    scores = per_unit(torch.from_numpy(attr), shape)
    assert scores is not None
    acts = per_unit(values.double().cpu() if values is not None else None, shape)
    names = unit_names(choice)
    flat = scores.numpy()
    if k <= 0:
        return []
    k = min(k, flat.shape[0])
    order = np.argpartition(-np.abs(flat), k - 1)[:k]
    order = order[np.argsort(-np.abs(flat[order]), kind="stable")]
    return [Feature(names[u], float(acts[u]) if acts is not None else 0.0, float(flat[u]))
            for u in order]


def no_reasons_note(algorithm: str, layer: str, neuron: bool) -> str:
    """Why a layer or neuron answer has no reasons (they cite input features raising the
    target's score)."""
    if neuron:
        return (f"no reasons: {algorithm} explains a neuron of layer {layer}, not the "
                "target's score; reasons cite features that raise the target's score")
    return (f"no reasons: {algorithm} attributes to units of layer {layer}, not to input "
            "features; reasons cite input features")
