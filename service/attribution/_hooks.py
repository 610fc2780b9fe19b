"""Scoped hooks and per-call rewrite rules.

Every hook the engine installs lives inside a context manager and is removed on exit, also
when ``forward`` raises: in a long-running server a leaked hook silently corrupts every later
request.

``call_rules`` rewrites the output of chosen modules *per call*, not per module: a module that
runs several times in one forward (torchvision's ResNet blocks reuse one in-place ReLU) gets its
rule applied to each call with that call's own input.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

# rule(module, x, y) -> replacement output. ``x`` is the call's input *before* the module ran
# (still attached to the graph), ``y`` the module's output. A rule object that also has
# ``dummy_input(module, x) -> Tensor`` computes the output itself: the module then runs on that
# minimal input and ``y`` is meaningless.
CallRule = Callable[[nn.Module, Tensor, Tensor], Tensor]


@contextmanager
def scoped_handles() -> Iterator[list[RemovableHandle]]:
    """Collects hook handles and removes every one of them on exit."""
    handles: list[RemovableHandle] = []
    try:
        yield handles
    finally:
        for handle in reversed(handles):
            handle.remove()


@contextmanager
def call_rules(model: nn.Module, pick: Callable[[nn.Module], CallRule | None]) -> Iterator[None]:
    """Applies ``pick(module)``'s rule to every call of every module it returns a rule for."""
    with scoped_handles() as handles:
        for module in model.modules():
            rule = pick(module)
            if rule is not None:
                _attach(module, rule, handles)
        yield


def _attach(module: nn.Module, rule: CallRule, handles: list[RemovableHandle]) -> None:
    pending: list[Tensor] = []  # inputs of calls that have started and not yet finished
    inplace = bool(getattr(module, "inplace", False))
    # A rule with ``dummy_input(module, x)`` computes the module's output itself.
    dummy = getattr(rule, "dummy_input", None)

    def pre_hook(mod: nn.Module, args: tuple) -> tuple | None:
        if len(args) != 1 or not isinstance(args[0], Tensor):
            raise TypeError(
                f"{type(mod).__name__} was called with {len(args)} positional arguments; "
                "attribution rules need exactly one tensor input per call"
            )
        x = args[0]
        pending.append(x)
        if dummy is not None:
            # The rule computes the output itself: run the module on a minimal input.
            return (dummy(mod, x),)
        # An in-place module would overwrite the input the rule needs: give it a copy.
        return (x.clone(),) if inplace else None

    def forward_hook(mod: nn.Module, args: tuple, output: Tensor) -> Tensor:
        x = pending.pop()
        if not isinstance(output, Tensor):
            raise TypeError(f"{type(mod).__name__} returned {type(output).__name__}, not a tensor")
        return rule(mod, x, output)

    handles.append(module.register_forward_pre_hook(pre_hook))
    handles.append(module.register_forward_hook(forward_hook))


class _GradMap(torch.autograd.Function):
    """Identity in the forward pass; maps the incoming gradient with ``fn`` in the backward."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:  # type: ignore[override]
        ctx.fn = fn
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return ctx.fn(grad), None


def map_grad(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
    """``x`` unchanged, with ``fn`` applied to the gradient that flows back into it."""
    return _GradMap.apply(x, fn)


def with_grad(value: Tensor, path: Tensor) -> Tensor:
    """The values of ``value`` with the gradient of ``path`` (straight-through surrogate)."""
    return value.detach() + (path - path.detach())


def has_hooks(model: nn.Module) -> bool:
    """True when any module of ``model`` still carries a forward, pre-forward or backward hook."""
    return any(
        m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
        for m in model.modules()
    )
