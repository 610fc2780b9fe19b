"""Grad-CAM (Selvaraju et al., 2017) and Guided Grad-CAM.

Grad-CAM weighs each channel of a (convolutional) layer by the mean over its spatial positions
of the target's gradient, and sums over channels; Guided Grad-CAM multiplies the upsampled map
with Guided Backpropagation's input attribution.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._base import INTERPOLATE_MODES, MODE_RANK, GradientAttribution, LayerAttribution
from .._common import (
    AttributionInputError,
    Target,
    as_tuple,
    check_choice,
    format_args,
    format_output,
    is_tuple,
)
from .._layers import layer_gradients
from ..guided_backprop_deconvnet import GuidedBackprop


class LayerGradCam(LayerAttribution, GradientAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")

    def attribute(self, inputs, target=None, additional_forward_args=None,
                  attribute_to_layer_input: bool = False, relu_attributions: bool = False,
                  attr_dim_summation: bool = True, grad_kwargs: dict | None = None):
        xs = as_tuple(inputs)
        grads, values = layer_gradients(self.forward_func, [self.layer], xs,
                                        Target.of(target, xs[0].shape[0]),
                                        format_args(additional_forward_args),
                                        attribute_to_layer_input, grad_kwargs=grad_kwargs)
        with torch.no_grad():
            cams = []
            for g, v in zip(grads[0], values[0]):
                # channel weights: mean gradient over the dimensions after (N, C)
                w = g.mean(dim=tuple(range(2, g.dim())), keepdim=True) if g.dim() > 2 else g
                cam = (w * v).sum(1, keepdim=True) if attr_dim_summation else w * v
                cams.append(F.relu(cam) if relu_attributions else cam)
        return format_output(len(cams) > 1, tuple(cams))


class GuidedGradCam(GradientAttribution):
    def __init__(self, model: nn.Module, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(model)
        self.grad_cam = LayerGradCam(model, layer, device_ids)
        self.guided_backprop = GuidedBackprop(model)

    def attribute(self, inputs, target=None, additional_forward_args=None,
                  interpolate_mode: str = "nearest", attribute_to_layer_input: bool = False):
        check_choice(interpolate_mode, "interpolate_mode", INTERPOLATE_MODES)
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        cam = self.grad_cam.attribute(xs, target, additional_forward_args,
                                      attribute_to_layer_input=attribute_to_layer_input,
                                      relu_attributions=True)
        if isinstance(cam, tuple):
            if len(cam) != 1:
                raise AttributionInputError("GuidedGradCam needs a layer with a single tensor, "
                                            f"the layer gives {len(cam)}")
            cam = cam[0]
        guided = as_tuple(self.guided_backprop.attribute(xs, target, additional_forward_args))
        out: list[Tensor] = []
        skipped = []
        for i, (x, gb) in enumerate(zip(xs, guided)):
            spatial = x.dim() - 2
            need = MODE_RANK.get(interpolate_mode, spatial)
            if spatial < 1 or spatial != cam.dim() - 2 or spatial != need:
                skipped.append(i)  # no spatial map for this input: Captum's empty result
                out.append(x.new_empty(0))
                continue
            with torch.no_grad():
                out.append(gb * LayerAttribution.interpolate(cam, tuple(x.shape[2:]),
                                                             interpolate_mode))
        if skipped:
            warnings.warn(
                f"GuidedGradCam: the layer's Grad-CAM map of shape {tuple(cam.shape)} cannot be "
                f"upsampled ({interpolate_mode!r}) to input(s) {skipped} of shape(s) "
                f"{[tuple(xs[i].shape) for i in skipped]}; their attributions are empty tensors",
                stacklevel=2)
        return format_output(was_tuple, tuple(out))
