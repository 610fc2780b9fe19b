"""NeuronConductance (Dhamdhere et al., 2018): the part of Integrated Gradients of the target
that flows through one neuron: along the path, dF/d(neuron) * d(neuron)/d(input), integrated
and multiplied by input - baseline."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from .._base import GradientAttribution, NeuronAttribution
from .._batching import model_key
from .._common import (
    Inputs,
    Target,
    as_tuple,
    format_args,
    format_output,
    is_tuple,
    run_forward,
)
from .._gradients import grad_options, grad_ready, output_for_grad
from .._layers import NeuronSelector, check_selector, select_neuron, tap
from ..integrated_gradients import path_integral, validate_path_args


def _conductance_gradients(forward_func: Callable, layer: nn.Module, selector: NeuronSelector,
                           to_input: bool, points: Inputs, target: Target,
                           args: tuple | None, grad_kwargs: dict | None = None) -> Inputs:
    """Per row: dF/d(neuron) * d(neuron)/d(points), one tensor per input."""
    with torch.enable_grad():
        ready = grad_ready(points)
        with tap([layer], to_input, keep_graph=True) as got:
            out = run_forward(forward_func, ready, target, args)
        values = got[0]
        options = grad_options(grad_kwargs)
        layer_grads = torch.autograd.grad(output_for_grad(out), values,
                                          **{**options, "retain_graph": True})
        layer_grads = tuple(torch.zeros_like(v) if g is None else g
                            for v, g in zip(values, layer_grads))
        through = select_neuron(layer_grads, selector)  # (rows,) dF/d(neuron)
        neuron = select_neuron(values, selector)
        grads = torch.autograd.grad(neuron.sum(), ready, **options)
    return tuple((torch.zeros_like(x) if g is None else g)
                 * through.view(-1, *([1] * (x.dim() - 1))) for x, g in zip(ready, grads))


class NeuronConductance(NeuronAttribution, GradientAttribution):
    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None, multiply_by_inputs: bool = True) -> None:
        super().__init__(forward_func, layer, device_ids)
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, neuron_selector: NeuronSelector, baselines=None, target=None,
                  additional_forward_args=None, n_steps: int = 50,
                  method: str = "riemann_trapezoid", internal_batch_size: int | None = None,
                  attribute_to_neuron_input: bool = False, grad_kwargs: dict | None = None):
        check_selector(neuron_selector)
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        bs = validate_path_args(xs, baselines, n_steps, method)
        tgt = Target.of(target, xs[0].shape[0])

        def gradients(points: Inputs, t: Target, a: tuple | None) -> Inputs:
            return _conductance_gradients(self.forward_func, self.layer, neuron_selector,
                                          attribute_to_neuron_input, points, t, a, grad_kwargs)

        key = ("neuron_conductance", id(self.forward_func), id(self.layer),
               attribute_to_neuron_input, model_key(self.forward_func, xs)[1:])
        totals = path_integral(gradients, xs, bs, tgt, format_args(additional_forward_args),
                               n_steps, method, internal_batch_size, key=key)
        with torch.no_grad():
            attrs = (tuple(g * (x - b) for g, x, b in zip(totals, xs, bs))
                     if self._multiply_by_inputs else totals)
        return format_output(was_tuple, attrs)
