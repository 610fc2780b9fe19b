"""Scoped access to a layer's tensors during one forward pass: capture them, replace them,
differentiate with respect to them, and pick one neuron out of them.

Every layer and neuron method goes through ``tap``: hooks live only inside it (also when the
forward raises). A layer's tensors are its output (a tensor, or a tuple/list of tensors) or,
with ``to_input``, its positional inputs. They are always handled as a tuple; like Captum, a
result is returned as a tuple only when the layer has more than one tensor.

A layer that runs more than once in one forward is refused with a clear error: Captum silently
keeps the last call, which makes gradients and replacements wrong for every other call.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Union

import torch
from torch import Tensor, nn

from ._common import AttributionInputError, Inputs, Target, run_forward
from ._gradients import grad_options, output_for_grad
from ._hooks import scoped_handles

LayerSpec = Union[nn.Module, Sequence[nn.Module]]
NeuronSelector = Union[int, tuple, Callable[..., Tensor]]


def as_layers(layer: LayerSpec, name: str = "layer") -> tuple[list[nn.Module], bool]:
    """(modules, was_list): one module or a non-empty list of modules."""
    if isinstance(layer, nn.Module):
        return [layer], False
    if isinstance(layer, (list, tuple)) and layer and all(isinstance(m, nn.Module) for m in layer):
        return list(layer), True
    raise TypeError(f"`{name}` must be a torch.nn.Module or a non-empty list of modules, "
                    f"got {type(layer).__name__}")


def _label(module: nn.Module) -> str:
    return type(module).__name__


def _as_tensors(value: Any, module: nn.Module, what: str) -> Inputs:
    items = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    if not items or not all(isinstance(t, Tensor) for t in items):
        raise TypeError(
            f"the {what} of layer {_label(module)} must be a tensor or a tuple of tensors, got "
            f"{', '.join(type(t).__name__ for t in items) or 'nothing'}"
        )
    return items


def _restructure(like: Any, tensors: Inputs, to_input: bool) -> Any:
    """``tensors`` in the structure of the hooked value (the args tuple of a pre-hook, or the
    module's output)."""
    if to_input or isinstance(like, tuple):
        return tuple(tensors)
    if isinstance(like, list):
        return list(tensors)
    return tensors[0]


@contextmanager
def tap(layers: list[nn.Module], to_input: bool = False, replace: list[Inputs] | None = None,
        keep_graph: bool = False, start_graph: bool = False) -> Iterator[list[Inputs]]:
    """Records each layer's tensors during the forward run inside the block.

    ``replace``: per layer, tensors the layer's output (or input) is replaced with; they are
    recorded as given. ``keep_graph``: record the tensors attached to the autograd graph;
    otherwise detached copies are recorded. ``start_graph``: the forward runs without autograd
    up to the layer, which records fresh leaves and turns autograd on for the rest of the
    forward (only gradients with respect to the layer are wanted: nothing below it is taped).
    Downstream the model continues on copies, so in-place modules there cannot alter what was
    recorded. After the block, every layer must have run once.
    """
    recorded: list[Inputs | None] = [None] * len(layers)
    what = "input" if to_input else "output"

    def hook_for(i: int) -> Callable:
        def hook(module: nn.Module, args: tuple, output: Any = None) -> Any:
            value = args if to_input else output
            if recorded[i] is not None:
                raise ValueError(
                    f"layer {_label(module)} ran more than once in one forward pass; layer and "
                    "neuron attribution needs a module that runs once per forward (give each "
                    "call site its own module)"
                )
            tensors = _as_tensors(value, module, what)
            if replace is not None:
                new = replace[i]
                if len(new) != len(tensors) or any(a.shape != b.shape for a, b in zip(new, tensors)):
                    raise ValueError(
                        f"replacement for the {what} of layer {_label(module)} has shapes "
                        f"{[tuple(t.shape) for t in new]}, the layer gives "
                        f"{[tuple(t.shape) for t in tensors]}"
                    )
                recorded[i] = new
                if start_graph:
                    torch.set_grad_enabled(True)  # restored by the caller's no_grad block
                return _restructure(value, tuple(t.clone() for t in new), to_input)
            if start_graph:
                torch.set_grad_enabled(True)
                tensors = tuple(t.detach().requires_grad_() if t.is_floating_point()
                                else t for t in tensors)
            if keep_graph or start_graph:
                if torch.is_grad_enabled():  # a layer on the raw inputs: track it from here
                    tensors = tuple(t if t.requires_grad or not t.is_floating_point()
                                    else t.detach().requires_grad_() for t in tensors)
                recorded[i] = tensors
                return _restructure(value, tuple(t.clone() for t in tensors), to_input)
            recorded[i] = tuple(t.detach().clone() for t in tensors)
            return None

        return hook

    with scoped_handles() as handles:
        for i, layer in enumerate(layers):
            if to_input:
                # First of the layer's pre-hooks: a rule hooked on the same module (DeepLift's
                # rescale of a ReLU) must see the recorded tensors, not the caller's.
                handles.append(layer.register_forward_pre_hook(hook_for(i), prepend=True))
            else:
                handles.append(layer.register_forward_hook(hook_for(i)))
        out: list[Inputs] = []
        yield out  # filled below, once the forward has run
        for layer, got in zip(layers, recorded):
            if got is None:
                raise ValueError(f"layer {_label(layer)} did not run during the forward pass; "
                                 "pass a module that the model calls")
            out.append(got)


def layer_eval(forward_func: Callable, layers: list[nn.Module], inputs: Inputs,
               args: tuple | None, to_input: bool = False) -> list[Inputs]:
    """Each layer's tensors on ``inputs`` (detached)."""
    with torch.no_grad(), tap(layers, to_input) as got:
        run_forward(forward_func, inputs, None, args)
    return got


def layer_gradients(forward_func: Callable, layers: list[nn.Module], inputs: Inputs,
                    target: Target, args: tuple | None, to_input: bool = False,
                    replace: list[Inputs] | None = None, grad_kwargs: dict | None = None,
                    offload_to_cpu: bool = False) -> tuple[list[Inputs], list[Inputs]]:
    """(gradients, values): d(sum of targeted outputs)/d(layer tensors) and the layer tensors
    (detached), per layer. With ``replace`` the layers' tensors are set to the given values.
    ``grad_kwargs`` go to ``torch.autograd.grad``; ``offload_to_cpu`` returns both on the CPU
    (Captum's ``memory_efficient``)."""
    options = grad_options(grad_kwargs)
    # One layer, or replaced layers: no autograd below them. Several layers read in place:
    # a layer's gradient flows through the others, so the whole forward is taped.
    start_graph = replace is not None or len(layers) == 1
    with torch.enable_grad():
        ready = None if replace is None else [
            tuple(t.detach().requires_grad_() for t in ts) for ts in replace]
        with torch.set_grad_enabled(not start_graph), \
                tap(layers, to_input, ready, keep_graph=True, start_graph=start_graph) as got:
            out = run_forward(forward_func, inputs, target, args)
        flat = [t for ts in got for t in ts]
        for t in flat:
            if not t.requires_grad:
                raise ValueError(f"the layer's tensors (dtype {t.dtype}) cannot be differentiated; "
                                 "attribute to a layer with floating-point tensors (e.g. the "
                                 "embedding's output rather than its token-id input)")
        grads = torch.autograd.grad(output_for_grad(out), flat, **options)
    grads_flat = [torch.zeros_like(t) if g is None else g for t, g in zip(flat, grads)]
    values = [tuple(t.detach() for t in ts) for ts in got]
    if offload_to_cpu:
        grads_flat = [g.detach().cpu() for g in grads_flat]
        values = [tuple(t.cpu() for t in ts) for ts in values]
    return regroup(grads_flat, got), values


def regroup(flat: Sequence[Tensor], like: list[Inputs]) -> list[Inputs]:
    """A flat sequence of tensors split into tuples with the lengths of ``like``."""
    out, start = [], 0
    for ts in like:
        out.append(tuple(flat[start:start + len(ts)]))
        start += len(ts)
    return out


def format_layer_output(per_layer: list[Inputs], was_list: bool) -> Any:
    """Captum's output form: per layer a tensor, or a tuple when it has several tensors; a list
    over layers when a list of layers was given."""
    shaped = [ts[0] if len(ts) == 1 else tuple(ts) for ts in per_layer]
    return shaped if was_list else shaped[0]


# ---------------------------------------------------------------------------------------------
# Neurons


def check_selector(selector: Any) -> None:
    if callable(selector):
        return
    items = (selector,) if isinstance(selector, int) else selector
    if isinstance(selector, bool) or not isinstance(items, tuple) or not items or not all(
            isinstance(s, (int, slice)) and not isinstance(s, bool) for s in items):
        raise TypeError("`neuron_selector` must be an int, a tuple of ints and slices, or a "
                        f"callable, got {selector!r}")


def select_neuron(values: Inputs, selector: NeuronSelector, batch_total: bool = False) -> Tensor:
    """The selected neuron of every example, shape (rows,). A tuple with slices selects the sum
    of the neurons in the slices; a callable receives the layer's tensor(s). ``batch_total``:
    a callable may also return one number for the whole batch (Captum's ``torch.sum(x)``
    selectors), kept as a 0-d tensor; its gradient is every example's own as long as the
    examples do not interact, so only gradient methods accept it."""
    rows = values[0].shape[0]
    if callable(selector):
        picked = selector(values[0] if len(values) == 1 else values)
        if not isinstance(picked, Tensor):
            raise TypeError(f"the `neuron_selector` callable returned {type(picked).__name__}, "
                            "not a tensor")
    else:
        if len(values) != 1:
            raise AttributionInputError(f"the layer gives {len(values)} tensors; pass a callable "
                                        "`neuron_selector` to choose a neuron among them")
        layer_out = values[0]
        index = (selector,) if isinstance(selector, int) else tuple(selector)
        if len(index) > layer_out.dim() - 1:
            raise AttributionInputError(
                f"`neuron_selector` {selector!r} has {len(index)} indices; the layer has "
                f"{layer_out.dim() - 1} dimensions besides the batch (shape {tuple(layer_out.shape)})")
        for d, idx in enumerate(index):
            size = layer_out.shape[1 + d]
            if isinstance(idx, int) and not -size <= idx < size:
                raise AttributionInputError(f"`neuron_selector` index {idx} is out of range for "
                                            f"layer dimension {1 + d} of size {size}")
        picked = layer_out[(slice(None),) + tuple(index)]
        if any(isinstance(i, slice) for i in index):
            picked = picked.reshape(rows, -1).sum(1)
    if picked.dim() == 0 and (batch_total or rows == 1):
        return picked if batch_total and rows != 1 else picked.reshape(rows)
    if picked.dim() == 0 or picked.shape[0] != rows or picked[0].numel() != 1:
        raise ValueError(
            f"`neuron_selector` must pick one value per example, but it gave shape "
            f"{tuple(picked.shape)} for a layer of shape {tuple(values[0].shape)}; index every "
            "dimension after the batch (or use slices, which are summed)"
        )
    return picked.reshape(rows)


def neuron_forward(forward_func: Callable, layer: nn.Module, selector: NeuronSelector,
                   to_input: bool = False, gradient_only: bool = False) -> Callable[..., Tensor]:
    """A function of the model's arguments giving the selected neuron per example: gradient
    methods on it are neuron methods. ``gradient_only``: the caller only differentiates the
    sum of the result, so a callable selector may give a batch total (see ``select_neuron``)."""
    check_selector(selector)
    if not isinstance(layer, nn.Module):
        raise TypeError(f"`layer` must be a torch.nn.Module, got {type(layer).__name__}")

    def forward(*model_args: Any) -> Tensor:
        with tap([layer], to_input, keep_graph=True) as got:
            forward_func(*model_args)
        return select_neuron(got[0], selector, batch_total=gradient_only)

    # same activation memory as the model (plus one layer copy): share its pass-size record
    forward.plan_identity = forward_func  # type: ignore[attr-defined]
    return forward
