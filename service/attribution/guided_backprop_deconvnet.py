"""Guided Backpropagation and Deconvolution: gradients with ReLU's backward pass modified.

Guided backprop keeps only positive gradients after each ReLU's own mask; Deconvolution applies
a ReLU to the incoming gradient instead of the ReLU's mask. Applied per call of every nn.ReLU.
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn.functional as F
from torch import Tensor, nn

from ._base import GradientAttribution
from ._common import Target, as_tuple, format_args, format_output, is_tuple
from ._gradients import input_gradients
from ._hooks import CallRule, call_rules, map_grad, with_grad


def _positive(g: Tensor) -> Tensor:
    return g.clamp(min=0)


def _guided(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return F.relu(map_grad(x, _positive))


def _deconv(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    return with_grad(y, map_grad(x, _positive))


def relu_rules(use_relu_grad_output: bool) -> Callable[[nn.Module], CallRule | None]:
    """The per-call rule picker: Deconvolution's rule (``use_relu_grad_output``) or Guided
    Backpropagation's, on every nn.ReLU."""
    rule: CallRule = _deconv if use_relu_grad_output else _guided
    return lambda m: rule if isinstance(m, nn.ReLU) else None


class ModifiedReluGradientAttribution(GradientAttribution):
    def __init__(self, model: nn.Module, use_relu_grad_output: bool = False) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module")
        super().__init__(model)
        self.model = model
        self.use_relu_grad_output = use_relu_grad_output

    def attribute(self, inputs, target=None, additional_forward_args=None):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        with call_rules(self.model, relu_rules(self.use_relu_grad_output)):
            grads = input_gradients(self.forward_func, xs, Target.of(target, xs[0].shape[0]),
                                    format_args(additional_forward_args))
        return format_output(was_tuple, grads)


class GuidedBackprop(ModifiedReluGradientAttribution):
    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, use_relu_grad_output=False)


class Deconvolution(ModifiedReluGradientAttribution):
    def __init__(self, model: nn.Module) -> None:
        super().__init__(model, use_relu_grad_output=True)
