"""The perturbation family: FeatureAblation, Occlusion, ShapleyValueSampling, KernelShap, Lime.

They work on features: for image-shaped inputs the features are square ``superpixel`` patches
(one id per patch, shared across channels); for flat inputs every element is a feature (and
Occlusion's window is one feature). Their forwards are capped by the ``max_n_samples`` limit
through ``n_samples`` and by the patch count.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from service import attribution as A

from ..errors import InvalidInput
from .entry import AlgorithmEntry, BaselineMode, Param, RunFn


def feature_count(shape: tuple[int, ...], superpixel: int) -> int:
    """How many features ``feature_mask`` makes for a per-example ``shape``."""
    if len(shape) >= 2 and superpixel > 1:
        return -(-shape[-2] // superpixel) * -(-shape[-1] // superpixel)
    return math.prod(shape)


def occlusion_windows(shape: tuple[int, ...], window: int, stride: int) -> int:
    """Window positions ``_occlusion_run`` slides over a per-example ``shape`` (one forward
    per position and example): along the last two dims of image-shaped inputs, else the one."""
    dims = shape[-2:] if len(shape) >= 2 else shape
    return math.prod(1 + -(-(d - min(window, d)) // stride) for d in dims)  # a last window at the edge


def features_of(params: dict[str, Any], shape: tuple[int, ...]) -> tuple[int, str] | None:
    """The features a perturbation request ablates and the parameter that sets their count
    (patches of ``superpixel``, or Occlusion's window positions); None for other methods."""
    if "superpixel" in params:
        return feature_count(shape, params["superpixel"]), "params.superpixel"
    if "window" in params and "stride" in params:
        return occlusion_windows(shape, params["window"], params["stride"]), "params.stride"
    return None


def feature_mask(inputs: Tensor, superpixel: int) -> Tensor:
    """(1, *shape) integer mask: square patches over the last two dims of image-shaped inputs,
    one feature per element otherwise (``feature_count`` of them; the validator holds the
    count to the limit max_features before any engine call)."""
    shape = tuple(inputs.shape[1:])
    if len(shape) >= 2 and superpixel > 1:
        h, w = shape[-2], shape[-1]
        rows = torch.arange(h, device=inputs.device) // superpixel
        cols = torch.arange(w, device=inputs.device) // superpixel
        grid = rows[:, None] * ((w + superpixel - 1) // superpixel) + cols[None, :]
        mask = grid.expand(*shape)
    else:
        mask = torch.arange(math.prod(shape), device=inputs.device).view(shape)
    return mask.unsqueeze(0)


def _per_eval(params: dict[str, Any], inputs: Tensor, chunk_rows: int) -> int:
    """Perturbations per forward: the request's, within the rows-per-pass budget."""
    return max(1, min(params["perturbations_per_eval"], chunk_rows // max(1, inputs.shape[0])))


def _masked_run(extra: tuple[str, ...] = ()) -> RunFn:
    def run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
            params: dict[str, Any], chunk_rows: int) -> Tensor:
        kwargs: dict[str, Any] = {k: params[k] for k in extra}
        kwargs["perturbations_per_eval"] = _per_eval(params, inputs, chunk_rows)
        kwargs["feature_mask"] = feature_mask(inputs, params["superpixel"])
        if baselines is not None:
            kwargs["baselines"] = baselines
        return engine.attribute(inputs, target=targets, **kwargs)
    return run


def _occlusion_run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
                   params: dict[str, Any], chunk_rows: int) -> Tensor:
    shape = tuple(inputs.shape[1:])
    w, s = params["window"], params["stride"]
    if s > w:
        raise InvalidInput("params.stride", f"{s} is larger than the window {w}: some "
                           "elements would never be occluded")
    if len(shape) >= 2:
        window = (*shape[:-2], min(w, shape[-2]), min(w, shape[-1]))
        strides = (*([1] * (len(shape) - 2)), s, s)
    else:
        window, strides = (min(w, shape[0]),), (s,)
    kwargs: dict[str, Any] = {"sliding_window_shapes": window, "strides": tuple(strides),
                              "perturbations_per_eval": _per_eval(params, inputs, chunk_rows)}
    if baselines is not None:
        kwargs["baselines"] = baselines
    return engine.attribute(inputs, target=targets, **kwargs)


_PPE = Param("perturbations_per_eval", int, 16, minimum=1, maximum=256)
_SUPERPIXEL = Param("superpixel", int, 4, minimum=1, maximum=64)
_N_SAMPLES = Param("n_samples", int, 64, minimum=1, limit="max_n_samples")

FEATURE_ABLATION = AlgorithmEntry(
    name="FeatureAblation", engine=A.FeatureAblation, params=(_SUPERPIXEL, _PPE),
    baselines=BaselineMode.PER_EXAMPLE, run=_masked_run())

OCCLUSION = AlgorithmEntry(
    name="Occlusion", engine=A.Occlusion,
    params=(Param("window", int, 4, minimum=1, maximum=256),
            Param("stride", int, 2, minimum=1, maximum=256), _PPE),
    # a window of one feature on tabular models: neighbouring columns are unrelated features
    kind_defaults={"tabular": {"window": 1, "stride": 1}},
    baselines=BaselineMode.PER_EXAMPLE, run=_occlusion_run)


def _sampled(name: str, engine: type) -> AlgorithmEntry:
    return AlgorithmEntry(
        name=name, engine=engine, params=(_N_SAMPLES, _SUPERPIXEL, _PPE),
        baselines=BaselineMode.PER_EXAMPLE, stochastic=True, fusable=False,
        run=_masked_run(("n_samples",)))


ENTRIES = (FEATURE_ABLATION, OCCLUSION, _sampled("ShapleyValueSampling", A.ShapleyValueSampling),
           _sampled("KernelShap", A.KernelShap), _sampled("Lime", A.Lime))
