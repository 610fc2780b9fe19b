"""NeuronFeatureAblation: each input feature (an element, or a group of ``feature_mask``) is
set to its baseline; its attribution is the drop of the selected neuron."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from .._ablation import ablation
from .._base import NeuronAttribution, PerturbationAttribution
from .._common import (
    Inputs,
    as_tuple,
    check_baselines,
    expand_args,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
    run_forward,
)
from .._layers import NeuronSelector, neuron_forward


class NeuronFeatureAblation(NeuronAttribution, PerturbationAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)

    def attribute(self, inputs, neuron_selector: NeuronSelector, baselines=None,
                  additional_forward_args=None, feature_mask=None,
                  attribute_to_neuron_input: bool = False, perturbations_per_eval: int = 1):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        bs = format_baselines(baselines, xs)
        check_baselines(xs, bs)
        masks = (None,) * len(xs) if feature_mask is None else as_tuple(feature_mask,
                                                                        "feature_mask")
        if len(masks) != len(xs):
            raise ValueError(f"`feature_mask` has {len(masks)} tensors for {len(xs)} inputs")
        args = format_args(additional_forward_args)
        neuron = neuron_forward(self.forward_func, self.layer, neuron_selector,
                                attribute_to_neuron_input)

        def forward(stacked: Inputs, n: int) -> Tensor:
            return run_forward(neuron, stacked, None, expand_args(args, n))

        attrs = ablation(forward, xs, bs, masks, perturbations_per_eval)
        return format_output(was_tuple, attrs)
