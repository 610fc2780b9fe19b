"""The layer family (CAM): methods on the spec's ``cam_layer``. LayerGradCam's layer map is
upsampled to the input's spatial size so that it can be served, rendered and ranked like the
others; GuidedGradCam's is already in the input's shape."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from service import attribution as A

from ..errors import InvalidInput
from .entry import AlgorithmEntry, BuildContext, Param


def _gradcam_run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
                 params: dict[str, Any], chunk_rows: int) -> Tensor:
    cam = engine.attribute(inputs, target=targets, relu_attributions=params["relu_attributions"])
    if cam.dim() != inputs.dim() or inputs.dim() < 3:
        raise InvalidInput("algorithm", "LayerGradCam is served for image-shaped inputs with a "
                           "convolutional cam_layer")
    up = A.LayerAttribution.interpolate(cam, tuple(inputs.shape[2:]), "bilinear")
    return up.expand(-1, inputs.shape[1], *inputs.shape[2:]).contiguous()


def _on_layer(engine: type):
    def build(ctx: BuildContext, params: Mapping[str, Any]) -> Any:
        return engine(ctx.model, ctx.the_layer(engine.__name__))
    return build


LAYER_GRAD_CAM = AlgorithmEntry(
    name="LayerGradCam", engine=A.LayerGradCam, build=_on_layer(A.LayerGradCam),
    params=(Param("relu_attributions", bool, True),), needs_layer=True, run=_gradcam_run)

GUIDED_GRAD_CAM = AlgorithmEntry(
    name="GuidedGradCam", engine=A.GuidedGradCam, build=_on_layer(A.GuidedGradCam),
    needs_layer=True)

ENTRIES = (LAYER_GRAD_CAM, GUIDED_GRAD_CAM)
