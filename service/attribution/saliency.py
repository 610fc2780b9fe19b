"""Saliency (Simonyan et al., 2013): the gradient of the target with respect to the inputs."""

from __future__ import annotations

from ._base import GradientAttribution
from ._common import Target, as_tuple, format_args, format_output, is_tuple
from ._gradients import input_gradients


class Saliency(GradientAttribution):
    def attribute(self, inputs, target=None, abs: bool = True, additional_forward_args=None):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        grads = input_gradients(self.forward_func, xs, Target.of(target, xs[0].shape[0]),
                                format_args(additional_forward_args))
        if abs:
            grads = tuple(g.abs() for g in grads)
        return format_output(was_tuple, grads)
