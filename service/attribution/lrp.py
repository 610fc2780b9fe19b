"""Layer-wise relevance propagation (Bach et al., 2015), Captum 0.9.0's ``LRP``.

The model runs once. Every leaf module gets its rule (``module.rule`` if the user set one, else
``lrp_table``'s default) for the length of the call, through hooks that are removed on exit,
also when the forward raises. A rule keeps the module's output values and rewires its backward
so that what flows back is relevance (see ``lrp_rules``); the gradient of the targeted output
with respect to the inputs is then the relevance normalised by that output, and multiplying by
the output gives the attribution. Relevance is conserved layer to layer up to the epsilon and
the biases, so the attributions of an example sum to its output (the convergence delta).

Unlike Captum, the model is not changed: no parameter is rewritten (a rule's parameters are
used for its own module's backward only) and ``rule`` attributes are neither added nor removed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._base import Attribution, GradientAttribution
from ._common import Inputs, Target, as_tuple, format_args, format_output, is_tuple, run_forward, sum_rows
from ._gradients import grad_ready, output_for_grad
from ._hooks import scoped_handles
from .lrp_rules import PropagationRule
from .lrp_table import PASS_THROUGH_RULE, default_rule, supported_names


def check_rule_attributes(model: nn.Module) -> None:
    """Every ``rule`` attribute in the model is None or a PropagationRule (Captum's TypeError)."""
    for name, module in model.named_modules():
        _own_rule(name, module)


def _own_rule(name: str, module: nn.Module) -> PropagationRule | None:
    rule = getattr(module, "rule", None)  # an instance or class attribute, as in Captum
    if rule is None:
        return None
    if not isinstance(rule, PropagationRule):
        raise TypeError(
            f"`rule` of module {_where(name, module)} must be a PropagationRule (EpsilonRule, "
            f"GammaRule, Alpha1_Beta0_Rule, IdentityRule, or a subclass), got "
            f"{type(rule).__name__}")
    if hasattr(type(rule), "_manipulate_weights"):
        raise TypeError(
            f"`rule` {type(rule).__name__} of module {_where(name, module)} defines Captum's "
            "_manipulate_weights, which rewrites the model's weights; override "
            "modified_parameters(module), returning the replacement tensors, instead")
    return rule


def _where(name: str, module: nn.Module) -> str:
    return f"{name or '<model>'} ({type(module).__name__})"


@dataclass(frozen=True)
class Step:
    """One leaf module and the rule its calls follow."""

    name: str
    module: nn.Module
    rule: PropagationRule

    @property
    def once(self) -> bool:
        """Captum allows a module with a z-rule one call per forward."""
        return self.rule is not PASS_THROUGH_RULE


def plan_rules(model: nn.Module) -> list[Step]:
    """The rule of every leaf module (the model itself when it has no children)."""
    steps = []
    for name, module in model.named_modules():
        if next(module.children(), None) is not None:
            continue
        own = _own_rule(name, module)
        rule = default_rule(module)
        if rule is not PASS_THROUGH_RULE and own is not None:
            rule = own
        if rule is None:
            raise TypeError(
                f"Module {_where(name, module)} has no LRP rule and no default exists for its "
                f"type; set `module.rule` to a PropagationRule suited to it (defaults exist for: "
                f"{supported_names()})")
        steps.append(Step(name, module, rule))
    return steps


@dataclass
class LayerTap:
    """Records the relevance reaching one layer's output, or leaving it towards its inputs."""

    module: nn.Module
    to_input: bool
    calls: int = 0
    values: list[Tensor | None] = field(default_factory=list)
    shapes: list[tuple[torch.Size, torch.dtype, torch.device]] = field(default_factory=list)

    def wrap(self, tensors: Sequence[Any]) -> list[Any]:
        """``tensors`` with recorders on the floating-point ones, for the layer's one call."""
        if self.calls:
            raise RuntimeError(f"Layer {type(self.module).__name__} is being used more than once "
                               "in the network, which is not supported by LayerLRP")
        self.calls += 1
        out = []
        for t in tensors:
            if isinstance(t, Tensor) and (t.is_floating_point() or t.is_complex()):
                self.values.append(None)
                self.shapes.append((t.shape, t.dtype, t.device))
                out.append(_Record.apply(t, self.values, len(self.values) - 1))
            else:
                out.append(t)
        return out

    def relevances(self) -> Inputs:
        return tuple(torch.zeros(s, dtype=d, device=dev) if v is None else v
                     for v, (s, d, dev) in zip(self.values, self.shapes))


class _Record(torch.autograd.Function):
    """Identity (a copy) forward; backward stores the gradient in ``sink[i]``."""

    @staticmethod
    def forward(ctx, x: Tensor, sink: list, i: int) -> Tensor:  # type: ignore[override]
        ctx.sink, ctx.i = sink, i
        return x.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        ctx.sink[ctx.i] = grad.detach()
        return grad, None, None


@contextmanager
def propagation(steps: list[Step], taps: Sequence[LayerTap] = (),
                verbose: bool = False) -> Iterator[None]:
    """Inside the block, every call of a planned module follows its rule and every tap records
    its layer's relevance."""
    replaying = [False]  # True while a rule re-runs its module with modified parameters
    with scoped_handles() as handles:
        for step in steps:
            _attach_rule(step, replaying, handles)
            if verbose and step.once:
                print(f"Applied {step.rule!r} on layer {step.name or '<model>'}: {step.module}")
        for tap in taps:
            _attach_tap(tap, replaying, handles)
        yield


def _attach_rule(step: Step, replaying: list[bool], handles: list) -> None:
    module, rule = step.module, step.rule
    pending: list[tuple] = []  # wrapped inputs of calls under way
    calls = [0]
    inplace = bool(getattr(module, "inplace", False))

    def pre_hook(mod: nn.Module, args: tuple, kwargs: dict) -> tuple | None:
        if replaying[0]:
            return None
        if step.once and calls[0]:
            raise RuntimeError(
                f"Module {_where(step.name, mod)} is being used more than once in the network, "
                "which is not supported by LRP; give each call its own module")
        calls[0] += 1
        wrapped = rule.wrap_inputs(tuple(args))
        pending.append(wrapped)
        # An in-place module would overwrite the inputs the rule still needs: give it copies.
        return (_copies(wrapped) if inplace else wrapped), kwargs

    def forward_hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> Tensor | None:
        if replaying[0]:
            return None
        wrapped = pending.pop()
        if not isinstance(output, Tensor):
            raise TypeError(f"LRP rules need modules that return one tensor; module "
                            f"{_where(step.name, mod)} returned {type(output).__name__}")

        def recompute(params) -> Tensor:
            replaying[0] = True
            try:
                return functional_call(mod, dict(params), _copies(wrapped) if inplace else wrapped,
                                       kwargs, strict=False)
            finally:
                replaying[0] = False

        return rule.wrap_output(mod, wrapped, output, recompute)

    handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))
    handles.append(module.register_forward_hook(forward_hook, with_kwargs=True))


def _attach_tap(tap: LayerTap, replaying: list[bool], handles: list) -> None:
    def pre_hook(mod: nn.Module, args: tuple) -> tuple | None:
        if replaying[0]:
            return None
        return tuple(tap.wrap(args))

    def forward_hook(mod: nn.Module, args: tuple, output: Any) -> Any:
        if replaying[0]:
            return None
        if isinstance(output, Tensor):
            return tap.wrap([output])[0]
        if isinstance(output, (tuple, list)):
            return type(output)(tap.wrap(output))
        raise TypeError(f"the output of layer {type(mod).__name__} must be a tensor or a tuple "
                        f"of tensors, got {type(output).__name__}")

    if tap.to_input:
        # Before the layer's own rule wraps the inputs: the tap sees the relevance it returns.
        handles.append(tap.module.register_forward_pre_hook(pre_hook, prepend=True))
    else:
        # After the layer's rule: the tap sees the relevance that reaches the output.
        handles.append(tap.module.register_forward_hook(forward_hook))


def _copies(args: tuple) -> tuple:
    return tuple(a.clone() if isinstance(a, Tensor) else a for a in args)


@dataclass(frozen=True)
class Relevances:
    """Normalised relevances (relevance / targeted output) and the targeted output."""

    inputs: Inputs             # one per input, the input's shape
    layers: list[Inputs]       # per tapped layer, one per tensor of its output (or inputs)
    output: Tensor             # (N,) the targeted output of every example

    def scaled(self, normalized: Inputs) -> Inputs:
        """Relevance in the output's units: normalised relevance times the targeted output."""
        with torch.no_grad():
            return tuple(r * self.output.reshape(-1, *([1] * (r.dim() - 1))) for r in normalized)


def propagate(model: nn.Module, inputs: Inputs, target: Target, args: tuple | None,
              layers: Sequence[nn.Module] = (), to_input: bool = False,
              verbose: bool = False) -> Relevances:
    """One forward and one backward pass under the model's LRP rules."""
    steps = plan_rules(model)
    taps = [LayerTap(layer, to_input) for layer in layers]
    with propagation(steps, taps, verbose), torch.enable_grad():
        ready = grad_ready(inputs)
        selected = run_forward(model, ready, target, args)  # (N,) targeted outputs
        grads = torch.autograd.grad(output_for_grad(selected), ready, allow_unused=True)
    for tap in taps:
        if not tap.calls:
            raise ValueError(f"layer {type(tap.module).__name__} did not run during the forward "
                             "pass; pass a module that the model calls")
    normalized = tuple(torch.zeros_like(x) if g is None else g for x, g in zip(ready, grads))
    return Relevances(normalized, [tap.relevances() for tap in taps], selected.detach())


def convergence_delta(attributions: Tensor | Inputs, output: Tensor) -> Tensor:
    """Per example: targeted output - sum of relevances."""
    attrs = as_tuple(attributions, "attributions")
    with torch.no_grad():
        total = torch.stack([sum_rows(a) for a in attrs]).sum(0)
        return output.flatten() - total.flatten()


class LRP(GradientAttribution):
    """Relevance of each input feature for the targeted output, in the output's units: an
    example's attributions sum to its targeted output (up to epsilons and biases)."""

    def __init__(self, model: nn.Module) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"`model` must be a torch.nn.Module for {type(self).__name__}, got "
                            f"{type(model).__name__}")
        Attribution.__init__(self, model)  # not super(): LayerLRP's next base wants a layer
        self.model = model
        check_rule_attributes(model)

    def attribute(self, inputs, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False, verbose: bool = False):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        found = propagate(self.model, xs, Target.of(target, xs[0].shape[0]),
                          format_args(additional_forward_args), verbose=verbose)
        relevances = found.scaled(found.inputs)
        result = format_output(was_tuple, relevances)
        if return_convergence_delta:
            return result, self.compute_convergence_delta(relevances, found.output)
        return result

    def attribute_future(self) -> Callable:
        raise NotImplementedError("attribute_future is not implemented for LRP")

    def compute_convergence_delta(self, attributions: Tensor | Inputs,  # type: ignore[override]
                                  output: Tensor) -> Tensor:
        """Per example: targeted output - sum of the attributions (zero when relevance is
        conserved)."""
        return convergence_delta(attributions, output)

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return True
