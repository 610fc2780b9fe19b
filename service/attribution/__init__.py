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
from ._common import AttributionInputError
from .deep_lift import DeepLift, DeepLiftShap
from .feature_ablation import FeatureAblation
from .feature_permutation import FeaturePermutation
from .gradient_shap import GradientShap, InputBaselineXGradient
from .guided_backprop_deconvnet import Deconvolution, GuidedBackprop
from .input_x_gradient import InputXGradient
from .integrated_gradients import IntegratedGradients
from .kernel_shap import KernelShap
from .layer.grad_cam import GuidedGradCam, LayerGradCam
from .layer.internal_influence import InternalInfluence
from .layer.layer_activation import LayerActivation
from .layer.layer_conductance import LayerConductance
from .layer.layer_deep_lift import LayerDeepLift, LayerDeepLiftShap
from .layer.layer_feature_ablation import LayerFeatureAblation
from .layer.layer_gradient_shap import LayerGradientShap
from .layer.layer_gradient_x_activation import LayerGradientXActivation
from .layer.layer_integrated_gradients import LayerIntegratedGradients
from .lime import Lime, LimeBase
from .neuron.neuron_conductance import NeuronConductance
from .neuron.neuron_deep_lift import NeuronDeepLift, NeuronDeepLiftShap
from .neuron.neuron_feature_ablation import NeuronFeatureAblation
from .neuron.neuron_gradient import NeuronGradient
from .neuron.neuron_gradient_shap import NeuronGradientShap
from .neuron.neuron_guided_backprop_deconvnet import NeuronDeconvolution, NeuronGuidedBackprop
from .neuron.neuron_integrated_gradients import NeuronIntegratedGradients
from .noise_tunnel import NoiseTunnel
from .occlusion import Occlusion
from .saliency import Saliency
from .shapley_value import ShapleyValues, ShapleyValueSampling
from .text import (
    InterpretableEmbeddingBase,
    TokenReferenceBase,
    configure_interpretable_embedding_layer,
    remove_interpretable_embedding_layer,
    token_attributions,
)

# isort: split
# summaries, dataloader attribution, layer permutation
from .class_summarizer import ClassSummarizer
from .dataloader_attr import DataLoaderAttribution, InputRole
from .layer.layer_feature_permutation import LayerFeaturePermutation
from .stat import MSE, CommonStats, Count, Max, Mean, Min, Stat, StdDev, Sum, Var
from .summarizer import Summarizer, SummarizerSingleTensor

__all__ = [
    "AttributionInputError",
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
    # layer
    "LayerActivation",
    "LayerGradientXActivation",
    "LayerIntegratedGradients",
    "LayerConductance",
    "InternalInfluence",
    "LayerGradCam",
    "GuidedGradCam",
    "LayerDeepLift",
    "LayerDeepLiftShap",
    "LayerGradientShap",
    "LayerFeatureAblation",
    # neuron
    "NeuronGradient",
    "NeuronIntegratedGradients",
    "NeuronConductance",
    "NeuronGradientShap",
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
    "NeuronFeatureAblation",
    # text
    "TokenReferenceBase",
    "InterpretableEmbeddingBase",
    "configure_interpretable_embedding_layer",
    "remove_interpretable_embedding_layer",
    "token_attributions",
    # summaries, dataloader attribution, layer permutation
    "DataLoaderAttribution",
    "InputRole",
    "LayerFeaturePermutation",
    "Summarizer",
    "SummarizerSingleTensor",
    "ClassSummarizer",
    "CommonStats",
    "Stat",
    "Mean",
    "Var",
    "StdDev",
    "MSE",
    "Min",
    "Max",
    "Sum",
    "Count",
]

# LRP
from .layer.layer_lrp import LayerLRP  # noqa: E402
from .lrp import LRP  # noqa: E402
from .lrp_rules import (  # noqa: E402
    Alpha1_Beta0_Rule,
    EpsilonRule,
    GammaRule,
    IdentityRule,
    PropagationRule,
)

__all__ += [
    "LRP",
    "LayerLRP",
    "PropagationRule",
    "EpsilonRule",
    "GammaRule",
    "Alpha1_Beta0_Rule",
    "IdentityRule",
]

# isort: split
# LLM attribution and interpretable inputs
from .interpretable_input import (  # noqa: E402
    ImageMaskInput,
    InterpretableInput,
    TextTemplateInput,
    TextTokenInput,
)
from .llm_attr import LLMAttribution, LLMAttributionPart, LLMGradientAttribution  # noqa: E402
from .llm_remote import RemoteLLMAttribution, RemoteLLMProvider, VLLMProvider  # noqa: E402
from .llm_result import LLMAttributionResult  # noqa: E402
from .product_baselines import ProductBaselines  # noqa: E402

__all__ += [
    "LLMAttribution",
    "LLMGradientAttribution",
    "LLMAttributionResult",
    "LLMAttributionPart",
    "RemoteLLMAttribution",
    "RemoteLLMProvider",
    "VLLMProvider",
    "InterpretableInput",
    "TextTemplateInput",
    "TextTokenInput",
    "ImageMaskInput",
    "ProductBaselines",
]
