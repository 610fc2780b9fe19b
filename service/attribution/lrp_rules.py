"""LRP propagation rules (Captum 0.9.0's names and parameters) and how each carries relevance
across one module call.

A rule is chosen per module by setting ``module.rule = EpsilonRule()`` (Captum's convention);
modules without one get the default of ``lrp_table``. Relevance travels backward as the
"gradient": a z-rule turns the relevance ``R`` arriving at a module's output into

    R_in = a * J'(a)^T (R / (z' + eps * sign(z')))          z' = module'(a)

where ``a`` are the module's inputs (the activations of the ordinary forward) and ``module'``
is the module with the rule's parameters (``modified_parameters``). ``IdentityRule`` hands ``R``
to its inputs unchanged. Rules hold no state, so one instance may serve several modules and
several calls at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn

Recompute = Callable[[Mapping[str, Tensor]], Tensor]  # module'(a) with the given parameters


class PropagationRule:
    """Base of the z-rules. Subclasses change the parameters the relevance pass uses by
    overriding ``modified_parameters``; ``STABILITY_FACTOR`` keeps the division finite."""

    STABILITY_FACTOR: float = 1e-9

    def modified_parameters(self, module: nn.Module) -> dict[str, Tensor]:
        """Parameter name -> the tensor used in place of it when relevance is propagated
        (nothing: the module's own parameters)."""
        return {}

    def wrap_inputs(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        """The module's inputs as the module should see them: their backward multiplies the
        incoming gradient by the activation, turning it into relevance."""
        return tuple(_TimesInput.apply(x) if _differentiable(x) else x for x in inputs)

    def wrap_output(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor,
                    recompute: Recompute) -> Tensor:
        """The output's values; its backward divides the relevance by the stabilised z' and
        sends it through module'."""
        params = self.modified_parameters(module)
        z = recompute(params) if params else output
        return _Divide.apply(output.detach(), z, float(self.STABILITY_FACTOR))

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class EpsilonRule(PropagationRule):
    """LRP-epsilon: ``epsilon`` is added (with z's sign) to the denominator; it absorbs some
    relevance and suppresses weak, noisy contributions. Captum's default for every layer."""

    def __init__(self, epsilon: float = 1e-9) -> None:
        self.STABILITY_FACTOR = epsilon


class GammaRule(PropagationRule):
    """LRP-gamma: positive weights are boosted by ``gamma`` (w + gamma * max(w, 0)), favouring
    positive contributions; ``set_bias_to_zero`` drops the bias from z'."""

    def __init__(self, gamma: float = 0.25, set_bias_to_zero: bool = False) -> None:
        self.gamma = gamma
        self.set_bias_to_zero = set_bias_to_zero

    def modified_parameters(self, module: nn.Module) -> dict[str, Tensor]:
        params = _zero_bias(module) if self.set_bias_to_zero else {}
        weight = _tensor_attr(module, "weight")
        if weight is not None:
            params["weight"] = weight + self.gamma * weight.clamp(min=0)
        return params


class Alpha1_Beta0_Rule(PropagationRule):  # noqa: N801 (Captum's name)
    """LRP-alpha1-beta0 (deep Taylor): only positive weights propagate relevance;
    ``set_bias_to_zero`` drops the bias from z'. Not meant for BatchNorm, whose weight is a
    scale rather than a connection."""

    def __init__(self, set_bias_to_zero: bool = False) -> None:
        self.set_bias_to_zero = set_bias_to_zero

    def modified_parameters(self, module: nn.Module) -> dict[str, Tensor]:
        params = _zero_bias(module) if self.set_bias_to_zero else {}
        weight = _tensor_attr(module, "weight")
        if weight is not None:
            params["weight"] = weight.clamp(min=0)
        return params


class IdentityRule(EpsilonRule):
    """Relevance passes through the module unchanged: every input receives the relevance of
    the output. The input must have as many elements as the output (BatchNorm2d, Flatten,
    element-wise activations)."""

    def wrap_inputs(self, inputs: tuple[Tensor, ...]) -> tuple[Tensor, ...]:
        return inputs

    def wrap_output(self, module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor,
                    recompute: Recompute) -> Tensor:
        receivers = tuple(x for x in inputs if _differentiable(x))
        for x in receivers:
            if x.numel() != output.numel():
                raise ValueError(
                    f"IdentityRule on {type(module).__name__} needs inputs with the output's "
                    f"number of elements; input shape {tuple(x.shape)}, output shape "
                    f"{tuple(output.shape)} (choose a z-rule such as EpsilonRule)")
        return _PassThrough.apply(output.detach(), *receivers)


def _differentiable(x: object) -> bool:
    return isinstance(x, Tensor) and (x.is_floating_point() or x.is_complex())


def _tensor_attr(module: nn.Module, name: str) -> Tensor | None:
    value = getattr(module, name, None)
    return value if isinstance(value, Tensor) else None


def _zero_bias(module: nn.Module) -> dict[str, Tensor]:
    bias = _tensor_attr(module, "bias")
    return {} if bias is None else {"bias": torch.zeros_like(bias)}


def stabilized(z: Tensor, eps: float) -> Tensor:
    """z + eps * sign(z), with sign(0) taken as +1."""
    sign = torch.where(z >= 0, 1.0, -1.0).to(z.dtype)
    return z + sign * eps


class _TimesInput(torch.autograd.Function):
    """Identity forward; backward multiplies the gradient by the (saved) input."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * x


class _Divide(torch.autograd.Function):
    """Forward: ``values``; backward: the gradient divided by stabilised ``z``, sent to ``z``."""

    @staticmethod
    def forward(ctx, values: Tensor, z: Tensor, eps: float) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(stabilized(z.detach(), eps))
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (den,) = ctx.saved_tensors
        return None, grad / den, None


class _PassThrough(torch.autograd.Function):
    """Forward: ``values``; backward: the gradient, reshaped, to every receiver."""

    @staticmethod
    def forward(ctx, values: Tensor, *receivers: Tensor) -> Tensor:  # type: ignore[override]
        ctx.shapes = [x.shape for x in receivers]
        return values.clone()

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return (None, *(grad.reshape(shape) for shape in ctx.shapes))


RULE_CLASSES = (PropagationRule, EpsilonRule, GammaRule, Alpha1_Beta0_Rule, IdentityRule)

__all__ = ["PropagationRule", "EpsilonRule", "GammaRule", "Alpha1_Beta0_Rule", "IdentityRule",
           "stabilized"]
