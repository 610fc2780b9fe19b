"""Input x Gradient: the input times the gradient of the target with respect to it."""

from __future__ import annotations

import torch

from ._base import GradientAttribution
from ._common import Target, as_tuple, format_args, format_output, is_tuple
from ._gradients import input_gradients


class InputXGradient(GradientAttribution):
    _multiply_by_inputs = True

    def attribute(self, inputs, target=None, additional_forward_args=None):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        grads = input_gradients(self.forward_func, xs, Target.of(target, xs[0].shape[0]),
                                format_args(additional_forward_args))
        with torch.no_grad():
            attrs = tuple(x.detach() * g for x, g in zip(xs, grads))
        return format_output(was_tuple, attrs)
