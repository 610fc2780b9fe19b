"""The layer families that answer for a layer the request names (``layer.name``, by default the
spec's default layer):

- CAM (LayerGradCam, GuidedGradCam): a layer's map answered in the input's shape; LayerGradCam's
  map is upsampled to the input's spatial size so that it is served, rendered and ranked like
  the input methods, GuidedGradCam's is already in the input's shape.
- LAYER: attributions to the units of the layer's output (or, with ``attributeToLayerInput``,
  its input), in the layer's per-example shape. LayerIntegratedGradients, LayerConductance,
  LayerDeepLift, LayerDeepLiftShap and LayerGradientShap sum over the layer to
  f(x) - f(baseline) (the layer's baseline is its value on the input's baseline).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from service import attribution as A

from ..errors import InvalidInput
from .entry import AlgorithmEntry, BaselineMode, Family, OnLayer, Param
from .gradient import _METHODS
from .perturbation import _PPE, _per_eval


def _gradcam_run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
                 params: dict[str, Any], chunk_rows: int) -> Tensor:
    assert isinstance(engine, OnLayer)
    cam = engine.engine.attribute(inputs, target=targets, **engine.kwargs,
                                  relu_attributions=params["relu_attributions"])
    if cam.dim() != inputs.dim() or inputs.dim() < 3:
        raise InvalidInput("layer.name", "LayerGradCam is served for image-shaped inputs with a "
                           "convolutional layer (a (C, H, W) map)")
    up = A.LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), "bilinear")
    return up.expand(-1, inputs.shape[1], *inputs.shape[2:]).contiguous()


LAYER_GRAD_CAM = AlgorithmEntry(
    name="LayerGradCam", engine=A.LayerGradCam,
    params=(Param("relu_attributions", bool, True),), family=Family.CAM, run=_gradcam_run)

GUIDED_GRAD_CAM = AlgorithmEntry(name="GuidedGradCam", engine=A.GuidedGradCam,
                                 family=Family.CAM)

_N_STEPS = Param("n_steps", int, 32, minimum=1, limit="max_n_steps")
_METHOD = Param("method", str, "gausslegendre", choices=_METHODS)


def _on_layer(name: str, engine: type, **kw: Any) -> AlgorithmEntry:
    return AlgorithmEntry(name=name, engine=engine, family=Family.LAYER, **kw)


def unit_mask(shape: tuple[int, ...], device: torch.device) -> Tensor:
    """(1, *shape) integer mask of a layer tensor's units: one per channel (the first
    per-example dim, shared over the others) for a layer of two or more dims, one per element
    for a flat layer: the units top features name."""
    if len(shape) >= 2:
        ids = torch.arange(shape[0], device=device).view(shape[0], *([1] * (len(shape) - 1)))
        return ids.expand(*shape).unsqueeze(0)
    return torch.arange(shape[0] if shape else 1, device=device).view(1, *shape)


def _layer_ablation_run(engine: Any, inputs: Tensor, baselines: Tensor | None,
                        targets: list[int], params: dict[str, Any], chunk_rows: int) -> Tensor:
    """LayerFeatureAblation over the layer's units (channels of a spatial layer), each replaced
    by zero (its layer baseline)."""
    assert isinstance(engine, OnLayer)
    return engine.engine.attribute(
        inputs, target=targets, **engine.kwargs,
        layer_mask=unit_mask(engine.shape, inputs.device),
        perturbations_per_eval=_per_eval(params, inputs, chunk_rows))


LAYER_ENTRIES = (
    _on_layer("LayerIntegratedGradients", A.LayerIntegratedGradients, params=(_N_STEPS, _METHOD),
              baselines=BaselineMode.PER_EXAMPLE, completeness=True,
              chunk_param="internal_batch_size"),
    _on_layer("LayerConductance", A.LayerConductance, params=(_N_STEPS, _METHOD),
              baselines=BaselineMode.PER_EXAMPLE, completeness=True,
              chunk_param="internal_batch_size"),
    _on_layer("InternalInfluence", A.InternalInfluence, params=(_N_STEPS, _METHOD),
              baselines=BaselineMode.PER_EXAMPLE, chunk_param="internal_batch_size"),
    _on_layer("LayerGradientXActivation", A.LayerGradientXActivation),
    _on_layer("LayerActivation", A.LayerActivation, targeted=False),
    _on_layer("LayerDeepLift", A.LayerDeepLift, baselines=BaselineMode.PER_EXAMPLE,
              completeness=True),
    _on_layer("LayerDeepLiftShap", A.LayerDeepLiftShap, baselines=BaselineMode.REFERENCE_SET,
              completeness=True, min_reference_rows=2),
    _on_layer("LayerGradientShap", A.LayerGradientShap,
              params=(Param("n_samples", int, 5, minimum=1, limit="max_n_samples"),
                      Param("stdevs", float, 0.0, minimum=0.0)),
              baselines=BaselineMode.REFERENCE_SET, completeness=True, stochastic=True,
              fusable=False),
    _on_layer("LayerFeatureAblation", A.LayerFeatureAblation, params=(_PPE,),
              run=_layer_ablation_run),
)

ENTRIES = (LAYER_GRAD_CAM, GUIDED_GRAD_CAM, *LAYER_ENTRIES)
