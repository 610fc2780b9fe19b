"""The parts of an explanation that differ for methods that answer about a layer: top features
that name the layer's units, the layer's own heatmap, and the notes that say why there are no
reasons (reasons cite input features raising the target's score)."""

from __future__ import annotations

import numpy as np
import torch

from .heatmap import heatmap_png
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


def layer_heatmap(attr: np.ndarray) -> bytes:
    """A (C, H, W) layer map, channels summed, at the layer's resolution (scaled up)."""
    return heatmap_png(attr)


def layer_note(algorithm: str, layer: str) -> str:
    return (f"no reasons: {algorithm} attributes to units of layer {layer}, not to input "
            "features; reasons cite input features")


def neuron_note(algorithm: str, layer: str) -> str:
    return (f"no reasons: {algorithm} explains a neuron of layer {layer}, not the target's "
            "score; reasons cite features that raise the target's score")
