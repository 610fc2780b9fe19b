"""LayerDeepLift and LayerDeepLiftShap: DeepLift's rescale-rule multipliers taken with respect
to a layer, times the layer's difference between the inputs and the baselines.

The model runs once on inputs and baselines stacked (2N rows) with ``deeplift_rule`` on every
call of every non-linearity (the same rules as DeepLift).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .._base import GradientAttribution, LayerAttribution
from .._common import (
    Target,
    as_tuple,
    call_with_arity,
    check_baselines,
    expand_args,
    format_args,
    format_baselines,
    format_output,
    tensorize_baselines,
)
from .._hooks import call_rules
from .._layers import layer_gradients
from ..deep_lift import DistributionPairs, deeplift_rule


class LayerDeepLift(LayerAttribution, GradientAttribution):
    def __init__(self, model: nn.Module, layer: nn.Module, multiply_by_inputs: bool = True,
                 eps: float = 1e-10) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module for LayerDeepLift")
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")
        super().__init__(model, layer)
        self.model = model
        self.eps = eps
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False, attribute_to_layer_input: bool = False,
                  custom_attribution_func: Callable | None = None,
                  grad_kwargs: dict[str, Any] | None = None):
        xs = as_tuple(inputs)
        bs = format_baselines(baselines, xs)
        check_baselines(xs, bs)
        bt = tensorize_baselines(xs, bs)
        n = xs[0].shape[0]
        tgt = Target.of(target, n)
        args = format_args(additional_forward_args)
        joined = tuple(torch.cat([x, b.to(dtype=x.dtype, device=x.device).expand_as(x)])
                       for x, b in zip(xs, bt))  # (2N, ...): inputs, then baselines
        with call_rules(self.model, lambda m: deeplift_rule(m, self.eps)):
            grads, values = layer_gradients(self.model, [self.layer], joined, tgt.expand(2),
                                            expand_args(args, 2), attribute_to_layer_input,
                                            grad_kwargs=grad_kwargs)
        mult = tuple(g[:n] for g in grads[0])
        at_inputs = tuple(v[:n] for v in values[0])
        at_bases = tuple(v[n:] for v in values[0])
        with torch.no_grad():
            if custom_attribution_func is not None:
                attrs = tuple(call_with_arity(custom_attribution_func, mult, at_inputs, at_bases,
                                              name="custom_attribution_func"))
            elif self._multiply_by_inputs:
                attrs = tuple((a - b) * m for a, b, m in zip(at_inputs, at_bases, mult))
            else:
                attrs = mult
        result = format_output(len(attrs) > 1, attrs)
        if return_convergence_delta:
            return result, self.compute_convergence_delta(attrs, bt, xs, target,
                                                          additional_forward_args)
        return result

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


class LayerDeepLiftShap(LayerDeepLift):
    """LayerDeepLift averaged over a distribution of baselines."""

    # captum's signature: baselines are required (a distribution), unlike LayerDeepLift's
    def attribute(self, inputs, baselines, target=None,  # type: ignore[override]
                  additional_forward_args=None, return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False,
                  custom_attribution_func: Callable | None = None):
        pairs = DistributionPairs.of(inputs, baselines, target, additional_forward_args,
                                     "LayerDeepLift")
        out = LayerDeepLift.attribute(
            self, pairs.inputs, pairs.baselines, target=pairs.target,
            additional_forward_args=pairs.args, return_convergence_delta=return_convergence_delta,
            attribute_to_layer_input=attribute_to_layer_input,
            custom_attribution_func=custom_attribution_func)
        attrs, delta = out if return_convergence_delta else (out, None)
        means = pairs.mean(as_tuple(attrs, "attributions"))
        result = format_output(len(means) > 1, means)
        return (result, delta) if return_convergence_delta else result
