"""LayerConductance (Dhamdhere et al., 2018): the flow of Integrated Gradients through each
neuron of a layer.

Along the input-space path x_0 .. x_n (``n_steps + 1`` nodes of ``method``), a neuron's
conductance is sum_k dF/dy(x_k) * (y(x_{k+1}) - y(x_k)), with y the layer's value. With a
method whose nodes include both ends (riemann_trapezoid) the layer differences telescope and
the attributions sum to F(input) - F(baseline) up to the quadrature error.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from .._base import GradientAttribution, LayerAttribution
from .._batching import PassPlanner, model_key
from .._common import Target, as_tuple, expand_args, format_args, format_output
from .._gradients import grad_ready
from .._layers import as_layers, layer_gradients
from .._quadrature import nodes_tensor
from ..integrated_gradients import path_points, validate_path_args


class LayerConductance(LayerAttribution, GradientAttribution):
    _has_delta = True
    _multiply_by_inputs = True

    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        super().__init__(forward_func, layer, device_ids)
        if not isinstance(layer, nn.Module):
            raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  n_steps: int = 50, method: str = "gausslegendre",
                  internal_batch_size: int | None = None,
                  return_convergence_delta: bool = False,
                  attribute_to_layer_input: bool = False, grad_kwargs: dict | None = None):
        xs = as_tuple(inputs)
        grad_ready(xs)  # the path runs through the inputs: they must be floating point
        bs = validate_path_args(xs, baselines, n_steps, method)
        batch = xs[0].shape[0]
        tgt = Target.of(target, batch)
        args = format_args(additional_forward_args)
        layers, _ = as_layers(self.layer)
        n_nodes = n_steps + 1
        alphas, _ = nodes_tensor(method, n_nodes, xs[0].dtype, xs[0].device)
        row_numel = sum(x[0].numel() for x in xs) if batch else 1
        planner = PassPlanner(("layer_conductance", id(self.forward_func), id(self.layer),
                               attribute_to_layer_input, model_key(self.forward_func, xs)[1:]),
                              n_nodes, batch, row_numel, internal_batch_size)
        totals: list[Tensor] = []
        carry: list[tuple[Tensor, Tensor]] = []  # last node's (gradient, value) per tensor

        def run(start: int, stop: int) -> None:
            steps = stop - start
            points = path_points(xs, bs, alphas[start:stop])
            grads, values = layer_gradients(self.forward_func, layers, points,
                                            tgt.expand(steps), expand_args(args, steps),
                                            attribute_to_layer_input, grad_kwargs=grad_kwargs)
            with torch.no_grad():
                for j, (g, v) in enumerate(zip(grads[0], values[0])):
                    g = g.reshape(steps, batch, *g.shape[1:])  # (S, B, *layer.shape[1:])
                    v = v.reshape(steps, batch, *v.shape[1:])
                    part = (v[1:] - v[:-1]).mul_(g[:-1]).sum(0)  # within this pass
                    if j < len(carry):  # the step from the previous pass's last node
                        part += (v[0] - carry[j][1]).mul_(carry[j][0])
                        carry[j] = (g[-1], v[-1])
                        totals[j] += part
                    else:
                        carry.append((g[-1], v[-1]))
                        totals.append(part)

        planner.passes(run)
        attrs = tuple(totals)
        return self._with_delta(format_output(len(attrs) > 1, attrs), return_convergence_delta,
                                attrs, bs, xs, target, additional_forward_args)
