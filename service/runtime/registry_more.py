"""Registry entries for the perturbation and layer (CAM) families: each one a ``register`` call,
as for the gradient family in registry.py. Imported by ``service.runtime``.

Perturbation methods work on features: for image-shaped inputs the features are square
``superpixel`` patches (one id per patch, shared across channels); for flat inputs every element
is a feature. Their forwards are capped by the ``max_n_samples`` limit through ``n_samples`` and by
the patch count. CAM methods need the spec's ``cam_layer``; LayerGradCam's layer map is upsampled
to the input's spatial size so that it can be served, rendered and ranked like the others.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from service import attribution as A

from .errors import InvalidInput
from .registry import AlgorithmEntry, BaselineMode, BuildContext, Param, register

MAX_FEATURES = 4096  # features (patches) one perturbation explanation may ablate


def feature_mask(inputs: Tensor, superpixel: int) -> Tensor:
    """(1, *shape) integer mask: square patches over the last two dims of image-shaped inputs,
    one feature per element otherwise."""
    shape = tuple(inputs.shape[1:])
    if len(shape) >= 2 and superpixel > 1:
        h, w = shape[-2], shape[-1]
        rows = torch.arange(h, device=inputs.device) // superpixel
        cols = torch.arange(w, device=inputs.device) // superpixel
        grid = rows[:, None] * ((w + superpixel - 1) // superpixel) + cols[None, :]
        mask = grid.expand(*shape)
    else:
        mask = torch.arange(int(torch.tensor(shape).prod()), device=inputs.device).view(shape)
    n = int(mask.max()) + 1
    if n > MAX_FEATURES:
        raise InvalidInput("params.superpixel", f"{n} features is above the limit {MAX_FEATURES}; "
                           "use larger superpixels")
    return mask.unsqueeze(0)


def _perturbation_run(with_mask: bool, extra: tuple[str, ...] = ()):
    def run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
            params: dict[str, Any], chunk_rows: int) -> Tensor:
        kwargs: dict[str, Any] = {k: params[k] for k in extra if k in params}
        kwargs["perturbations_per_eval"] = max(1, min(params.get("perturbations_per_eval", 16),
                                                      chunk_rows // max(1, inputs.shape[0])))
        if with_mask:
            kwargs["feature_mask"] = feature_mask(inputs, params.get("superpixel", 1))
        if baselines is not None:
            kwargs["baselines"] = baselines
        return engine.attribute(inputs, target=targets, **kwargs)
    return run


_PPE = Param("perturbations_per_eval", int, 16, minimum=1, maximum=256)
_SUPERPIXEL = Param("superpixel", int, 4, minimum=1, maximum=64)
_N_SAMPLES = Param("n_samples", int, 64, minimum=1, limit="max_n_samples")

register(AlgorithmEntry(
    name="FeatureAblation", build=lambda ctx, p: A.FeatureAblation(ctx.model),
    params=(_SUPERPIXEL, _PPE), baselines=BaselineMode.PER_EXAMPLE,
    run=_perturbation_run(True)))


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
                              "perturbations_per_eval": max(1, min(
                                  params["perturbations_per_eval"],
                                  chunk_rows // max(1, inputs.shape[0])))}
    if baselines is not None:
        kwargs["baselines"] = baselines
    return engine.attribute(inputs, target=targets, **kwargs)


register(AlgorithmEntry(
    name="Occlusion", build=lambda ctx, p: A.Occlusion(ctx.model),
    params=(Param("window", int, 4, minimum=1, maximum=256),
            Param("stride", int, 2, minimum=1, maximum=256), _PPE),
    baselines=BaselineMode.PER_EXAMPLE, run=_occlusion_run))

for _name, _cls in (("ShapleyValueSampling", A.ShapleyValueSampling), ("KernelShap", A.KernelShap),
                    ("Lime", A.Lime)):
    register(AlgorithmEntry(
        name=_name, build=(lambda cls: lambda ctx, p: cls(ctx.model))(_cls),
        params=(_N_SAMPLES, _SUPERPIXEL, _PPE), baselines=BaselineMode.PER_EXAMPLE,
        stochastic=True, fusable=False, run=_perturbation_run(True, ("n_samples",))))


# --- the layer family (CAM) -------------------------------------------------------------------

def _gradcam_build(ctx: BuildContext, params: Mapping[str, Any]) -> Any:
    return A.LayerGradCam(ctx.model, ctx.layer)


def _gradcam_run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
                 params: dict[str, Any], chunk_rows: int) -> Tensor:
    cam = engine.attribute(inputs, target=targets, relu_attributions=params["relu_attributions"])
    if cam.dim() != inputs.dim() or inputs.dim() < 3:
        raise InvalidInput("algorithm", "LayerGradCam is served for image-shaped inputs with a "
                           "convolutional cam_layer")
    up = A.LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), "bilinear")
    return up.expand(-1, inputs.shape[1], *inputs.shape[2:]).contiguous()


register(AlgorithmEntry(
    name="LayerGradCam", build=_gradcam_build, params=(Param("relu_attributions", bool, True),),
    needs_layer=True, run=_gradcam_run))

register(AlgorithmEntry(
    name="GuidedGradCam", build=lambda ctx, p: A.GuidedGradCam(ctx.model, ctx.layer),
    needs_layer=True))
