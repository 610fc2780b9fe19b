"""NeuronFeatureAblation: each input feature (an element, or a group of ``feature_mask``) is
set to its baseline; its attribution is the drop of the selected neuron (``FeatureAblation``
of the neuron's forward function)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from .._base import NeuronAttribution, PerturbationAttribution
from .._layers import NeuronSelector, neuron_forward
from ..feature_ablation import FeatureAblation
from ..layer.layer_feature_ablation import check_mask


class NeuronFeatureAblation(NeuronAttribution, PerturbationAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)

    def attribute(self, inputs, neuron_selector: NeuronSelector, baselines=None,
                  additional_forward_args=None, feature_mask=None,
                  attribute_to_neuron_input: bool = False, perturbations_per_eval: int = 1):
        check_mask(feature_mask, "feature_mask")
        neuron = neuron_forward(self.forward_func, self.layer, neuron_selector,
                                attribute_to_neuron_input)
        return FeatureAblation(neuron).attribute(
            inputs, baselines=baselines, target=None,
            additional_forward_args=additional_forward_args, feature_mask=feature_mask,
            perturbations_per_eval=perturbations_per_eval)
