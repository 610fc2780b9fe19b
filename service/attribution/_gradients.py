"""Gradients of the targeted outputs with respect to the inputs.

Autograd is seeded once, on the sum of the selected outputs, and asked for the input gradients
only: the gradients equal Captum's one-seed-per-row ``torch.unbind`` (each row's output depends on
its own row) at a fraction of the Python cost, and no weight gradients are computed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor

from ._batching import PassPlanner, model_key
from ._common import AttributionInputError, Inputs, Target, run_forward, slice_args


def grad_ready(inputs: Inputs) -> Inputs:
    """Inputs that autograd can differentiate against, without mutating the caller's tensors."""
    out = []
    for i, x in enumerate(inputs):
        if not (x.is_floating_point() or x.is_complex()):
            raise TypeError(
                f"input {i} has dtype {x.dtype}; gradient methods need floating-point inputs "
                "(for token ids, attribute to the embedding layer with a layer method)"
            )
        out.append(x if x.requires_grad else x.detach().requires_grad_())
    return tuple(out)


_SEEDED = ("outputs", "inputs", "grad_outputs")


def grad_options(grad_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """Keyword arguments for ``torch.autograd.grad``: the caller's ``grad_kwargs`` (Captum's,
    e.g. ``materialize_grads``) over our default of zeros for unused tensors."""
    if grad_kwargs is None:
        return {"allow_unused": True}
    if not isinstance(grad_kwargs, Mapping):
        raise TypeError(f"`grad_kwargs` must be a dict of torch.autograd.grad arguments, got "
                        f"{type(grad_kwargs).__name__}")
    fixed = [k for k in _SEEDED if k in grad_kwargs]
    if fixed:
        raise AttributionInputError(f"`grad_kwargs` may not set {', '.join(fixed)}: the method "
                                    "chooses what is differentiated")
    options = {"allow_unused": True, **grad_kwargs}
    if options.get("materialize_grads") and options["allow_unused"] is False:
        raise AttributionInputError("`grad_kwargs` sets materialize_grads with allow_unused=False")
    return options


def output_for_grad(selected: Tensor) -> Tensor:
    """The scalar whose gradient is the sum of every row's targeted-output gradient."""
    if selected.dim() > 1 and selected[0].numel() != 1:
        raise AttributionInputError(
            "the targeted output must be one number per example, but the selected output has "
            f"shape {tuple(selected.shape)}; pass a `target` that picks one output per example"
        )
    return selected.sum()


def input_gradients(forward_func: Callable, inputs: Inputs, target: Target,
                    args: tuple | None = None) -> Inputs:
    """d(sum of targeted outputs) / d(inputs), one tensor per input, on the inputs' shapes.

    Many rows are evaluated in passes sized to the model's measured activation memory (see
    ``_batching.PassPlanner``); rows are independent, so the result is the same.
    """
    rows = inputs[0].shape[0]
    row_numel = sum(x[0].numel() for x in inputs) if rows else 1
    planner = PassPlanner(model_key(forward_func, inputs), rows, 1, row_numel, None)
    if planner.per_pass >= rows and not planner.measure_next:
        return _gradients(forward_func, inputs, target, args)
    parts: list[Inputs] = []

    def run(start: int, stop: int) -> None:
        parts.append(_gradients(forward_func, tuple(x[start:stop] for x in inputs),
                                target.rows_slice(start, stop),
                                slice_args(args, start, stop, rows)))

    planner.passes(run)
    if len(parts) == 1:
        return parts[0]
    return tuple(torch.cat(gs) for gs in zip(*parts))


def _gradients(forward_func: Callable, inputs: Inputs, target: Target,
               args: tuple | None) -> Inputs:
    with torch.enable_grad():
        ready = grad_ready(inputs)
        selected = run_forward(forward_func, ready, target, args)
        grads = torch.autograd.grad(output_for_grad(selected), ready, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(ready, grads))
