"""Captum-compatible attribution engine: ``from service.attribution import IntegratedGradients``.

Pure PyTorch; no serving imports.
"""

from ._base import (
    Attribution,
    GradientAttribution,
    InternalAttribution,
    LayerAttribution,
    NeuronAttribution,
    PerturbationAttribution,
)
from .deep_lift import DeepLift, DeepLiftShap
from .feature_ablation import FeatureAblation
from .feature_permutation import FeaturePermutation
from .gradient_shap import GradientShap, InputBaselineXGradient
from .guided_backprop_deconvnet import Deconvolution, GuidedBackprop
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .kernel_shap import KernelShap
from .lime import Lime, LimeBase
from .noise_tunnel import NoiseTunnel
from .occlusion import Occlusion
from .saliency import Saliency
from .shapley_value import ShapleyValues, ShapleyValueSampling

__all__ = [
    "Attribution",
    "GradientAttribution",
    "PerturbationAttribution",
    "InternalAttribution",
    "LayerAttribution",
    "NeuronAttribution",
    "Saliency",
    "InputXGradient",
    "IntegratedGradients",
    "NoiseTunnel",
    "GradientShap",
    "InputBaselineXGradient",
    "DeepLift",
    "DeepLiftShap",
    "GuidedBackprop",
    "Deconvolution",
    "FeatureAblation",
    "FeaturePermutation",
    "Occlusion",
    "ShapleyValueSampling",
    "ShapleyValues",
    "LimeBase",
    "Lime",
    "KernelShap",
]
