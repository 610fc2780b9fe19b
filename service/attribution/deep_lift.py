"""DeepLift with the Rescale rule (Shrikumar et al., 2017) and DeepLiftShap.

The model runs once on the inputs and the baselines stacked, (2N, ...). Each non-linearity call
is rewritten so that its backward pass carries the DeepLift multiplier
``(f(x) - f(x')) / (x - x')`` instead of ``f'(x)``; the gradient of the targeted outputs with
respect to the inputs is then the multiplier, and ``(x - x') * multiplier`` the attribution.

Unlike Captum, the rule is attached to every *call* of a module, not to the module: a model that
calls one ReLU several times per forward (torchvision's ResNet blocks) gets correct
attributions. Softmax's multiplier normalisation is taken per example (Captum takes it over the
whole batch, so an example's attribution depends on its batch-mates); for one example the two
agree exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.modules.pooling import _MaxPoolNd

from ._base import GradientAttribution
from ._common import (
    AttributionInputError,
    Inputs,
    Target,
    as_tuple,
    call_with_arity,
    check_baselines,
    check_distribution,
    distribution_baselines,
    expand_args,
    expand_target_rows,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
    run_forward,
    tensorize_baselines,
)
from ._gradients import grad_ready, output_for_grad
from ._hooks import CallRule, call_rules, map_grad

# Captum's set of rescaled non-linearities, plus the elementwise activations Captum silently
# treats as linear (for which the rescale rule is exact and keeps completeness).
ELEMENTWISE = (
    nn.ReLU, nn.ELU, nn.LeakyReLU, nn.Sigmoid, nn.Tanh, nn.Softplus,
    nn.ReLU6, nn.Hardtanh, nn.SELU, nn.CELU, nn.GELU, nn.SiLU, nn.Mish, nn.Softsign,
    nn.LogSigmoid, nn.Hardsigmoid, nn.Hardswish, nn.Threshold, nn.PReLU, nn.Tanhshrink,
    nn.Softshrink, nn.Hardshrink, nn.RReLU,
)
MAXPOOLS = {nn.MaxPool1d: 1, nn.MaxPool2d: 2, nn.MaxPool3d: 3}
# Non-linear modules whose DeepLift rule is not defined here: refused rather than silently
# treated as linear.
UNSUPPORTED = (
    nn.LogSoftmax, nn.Softmin, nn.Softmax2d, nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d,
    nn.AdaptiveMaxPool3d, nn.FractionalMaxPool2d, nn.FractionalMaxPool3d, nn.LPPool1d,
    nn.LPPool2d, nn.GLU, nn.MaxUnpool1d, nn.MaxUnpool2d, nn.MaxUnpool3d,
)


def _halves(t: Tensor) -> tuple[Tensor, Tensor]:
    if t.shape[0] % 2:
        raise RuntimeError(
            f"DeepLift expects every non-linearity to see the inputs and baselines stacked along "
            f"dimension 0, but one got a tensor of shape {tuple(t.shape)}; models that mix "
            "examples along the batch dimension cannot be explained with DeepLift"
        )
    a, b = t.chunk(2)
    return a, b


def _diff(t: Tensor) -> Tensor:
    """(2N, ...) inputs-then-baselines -> (N, ...) per-example difference."""
    a, b = _halves(t)
    return a - b


def _both_halves(g: Tensor, m: Tensor) -> Tensor:
    """g (2N, ...) times the per-example m (N, ...), for both halves."""
    return (g.view(2, *m.shape) * m).view(g.shape)


def _safe_div(num: Tensor, den: Tensor, small: Tensor) -> Tensor:
    return (num / torch.where(small, torch.ones_like(den), den)).masked_fill_(small, 0.0)


class _Rescale(torch.autograd.Function):
    """Returns ``y``; backward sends ``grad * m`` to ``x`` and, where ``small``, ``grad`` to
    ``y`` (whose own graph then applies f'(x)). ``m`` and ``small`` are per example (N, ...)
    and serve both halves."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, m: Tensor, small: Tensor) -> Tensor:  # type: ignore[override]
        ctx.any_small = bool(small.any())
        ctx.save_for_backward(m, small)
        return y.detach().clone()

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        m, small = ctx.saved_tensors
        to_y = _both_halves(g, small.to(g.dtype)) if ctx.any_small else None
        return _both_halves(g, m), to_y, None, None


def _rescale(x: Tensor, y: Tensor, eps: float) -> Tensor:
    """y's values; backward multiplies by (y - y') / (x - x'), or by f'(x) where x ~ x'."""
    with torch.no_grad():
        dx = _diff(x.detach())
        small = dx.abs() < eps
        m = _safe_div(_diff(y.detach()), dx, small)
    return _Rescale.apply(x, y, m, small)


def _rescale_rule(eps: float) -> CallRule:
    return lambda module, x, y: _rescale(x, y, eps)


def _softmax_rule(eps: float) -> CallRule:
    def rule(module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        n = x.shape[0] // 2

        def center(g: Tensor) -> Tensor:
            a, b = _halves(g)
            per_example = (a.reshape(n, -1).sum(1) + b.reshape(n, -1).sum(1)) / (2 * a[0].numel())
            shift = per_example.view(n, *([1] * (g.dim() - 1)))
            return g - torch.cat([shift, shift])

        xc = map_grad(x, center)
        dim = cast(nn.Softmax, module).dim  # deeplift_rule gives this rule nn.Softmax only
        return _rescale(xc, F.softmax(xc, dim, _stacklevel=5), eps)

    return rule


_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}


def _route(values: Tensor, idx: Tensor, shape: torch.Size) -> Tensor:
    """Sums each pooled value into the input position its window's max came from.

    values, idx (B, C, *out) -> (B, C, *in) = ``shape``. Overlapping windows can share one
    argmax, so the values are *added* (``F.max_unpool`` writes: all but one would be lost)."""
    b, c = shape[0], shape[1]
    out = values.new_zeros(b, c, shape[2:].numel())
    out.scatter_add_(2, idx.reshape(b, c, -1), values.reshape(b, c, -1))
    return out.view(shape)


class _MaxPoolRescale(torch.autograd.Function):
    """MaxPool's rescale rule. For each window j with outputs y_j (inputs) and y'_j
    (baselines), the part max(y_j, y'_j) - y'_j of the difference is credited to the inputs'
    argmax, the rest y_j - max(y_j, y'_j) to the baselines' argmax; an input position's
    multiplier is the sum of the credits it receives over every window, divided by its own
    x - x'. Where x ~ x' it is the gradient at the inputs (routed by the inputs' argmax)."""

    @staticmethod
    def forward(ctx, x: Tensor, module: nn.Module, dims: int, eps: float) -> Tensor:  # type: ignore[override]
        # x (2N, C, *in) -> y, idx (2N, C, *out); idx: flat positions in *in
        pool = cast(_MaxPoolNd, module)  # deeplift_rule gives this rule MaxPool modules only
        y, idx = _POOL[dims](x, pool.kernel_size, pool.stride, pool.padding, pool.dilation,
                             pool.ceil_mode, True)
        ya, yb = _halves(y)
        top = torch.max(ya, yb)
        dy = torch.cat([top - yb, ya - top])  # (2N, C, *out): credits to each half's argmax
        ctx.save_for_backward(_diff(x), dy, idx)
        ctx.eps, ctx.shape = eps, x.shape
        return y

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        dx, dy, idx = ctx.saved_tensors
        a, b = _halves(_route(g * dy, idx, ctx.shape))  # (N, C, *in) each
        small = dx.abs() < ctx.eps
        half = _safe_div(a + b, dx, small)  # (N, C, *in): the same multiplier for both halves
        grad = torch.cat([half, half])
        if bool(small.any()):
            # x ~ x': the gradient at the inputs, for both halves (one multiplier per example)
            grad_a, _ = _halves(g)
            idx_a, _ = _halves(idx)
            plain = _route(grad_a, idx_a, dx.shape)
            grad = torch.where(torch.cat([small, small]), torch.cat([plain, plain]), grad)
        return grad, None, None, None


class _MaxPoolRule:
    """MaxPool's DeepLift rule. It computes the pooled output itself (with the indices it
    needs), so the module's own forward is handed a minimal input instead of being run twice."""

    def __init__(self, dims: int, eps: float) -> None:
        self.dims, self.eps = dims, eps

    def dummy_input(self, module: nn.Module, x: Tensor) -> Tensor:
        pool = cast(_MaxPoolNd, module)  # deeplift_rule gives this rule MaxPool modules only
        k = _ntuple(pool.kernel_size, self.dims)
        d = _ntuple(pool.dilation, self.dims)
        size = [dd * (kk - 1) + 1 for kk, dd in zip(k, d)]
        return x.new_zeros(1, 1, *size)

    def __call__(self, module: nn.Module, x: Tensor, y: Tensor) -> Tensor:
        if x.dim() != self.dims + 2:
            raise RuntimeError(f"DeepLift's {type(module).__name__} rule needs a batched input of "
                               f"{self.dims + 2} dimensions, got shape {tuple(x.shape)}")
        return _MaxPoolRescale.apply(x, module, self.dims, self.eps)


def _ntuple(v: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def deeplift_rule(module: nn.Module, eps: float) -> CallRule | None:
    """The DeepLift rule for one module, None for linear/structural modules."""
    if isinstance(module, UNSUPPORTED):
        raise ValueError(
            f"DeepLift has no rule for {type(module).__name__}; supported non-linearities: "
            f"{', '.join(t.__name__ for t in (*ELEMENTWISE, nn.Softmax, *MAXPOOLS))}"
        )
    kind = type(module)
    if kind in MAXPOOLS:
        if module.return_indices:
            raise ValueError(f"DeepLift cannot explain {kind.__name__} with return_indices=True")
        return _MaxPoolRule(MAXPOOLS[kind], eps)
    if kind is nn.Softmax:
        return _softmax_rule(eps)
    if isinstance(module, ELEMENTWISE):
        return _rescale_rule(eps)
    return None


def deeplift_multipliers(model: nn.Module, inputs: Inputs, baselines: Inputs, target: Target,
                         args: tuple | None, eps: float,
                         forward: Callable | None = None) -> Inputs:
    """DeepLift multipliers d(target)/d(input) under the rescale rules, one per input.
    ``forward`` (default: the model) is what is differentiated, e.g. one neuron of the model."""
    with call_rules(model, lambda m: deeplift_rule(m, eps)), torch.enable_grad():
        ready = grad_ready(inputs)
        joined = tuple(torch.cat([x, b.to(dtype=x.dtype, device=x.device).expand_as(x)])
                       for x, b in zip(ready, baselines))  # (2N, ...): inputs, then baselines
        out = run_forward(model if forward is None else forward, joined, target.expand(2),
                          expand_args(args, 2))
        grads = torch.autograd.grad(output_for_grad(out), ready, allow_unused=True)
    return tuple(torch.zeros_like(x) if g is None else g for x, g in zip(ready, grads))


class DeepLift(GradientAttribution):
    def __init__(self, model: nn.Module, multiply_by_inputs: bool = True, eps: float = 1e-10) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError("`model` must be a torch.nn.Module for DeepLift")
        super().__init__(model)
        self.model = model
        self.eps = eps
        self._multiply_by_inputs = multiply_by_inputs

    def attribute(self, inputs, baselines=None, target=None, additional_forward_args=None,
                  return_convergence_delta: bool = False,
                  custom_attribution_func: Callable | None = None):
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        bs = format_baselines(baselines, xs)
        check_baselines(xs, bs)
        bt = tensorize_baselines(xs, bs)
        tgt = Target.of(target, xs[0].shape[0])
        args = format_args(additional_forward_args)
        grads = deeplift_multipliers(self.model, xs, bt, tgt, args, self.eps)
        with torch.no_grad():
            if custom_attribution_func is not None:
                attrs = tuple(call_with_arity(custom_attribution_func, grads, xs, bt,
                                              name="custom_attribution_func"))
            elif self._multiply_by_inputs:
                attrs = tuple((x - b) * g for x, b, g in zip(xs, bt, grads))
            else:
                attrs = grads
        result = format_output(was_tuple, attrs)
        if return_convergence_delta:
            return result, self.compute_convergence_delta(attrs, bt, xs, target,
                                                          additional_forward_args)
        return result

    def has_convergence_delta(self) -> bool:
        return True

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs


class DeepLiftShap(DeepLift):
    """DeepLift averaged over a distribution of baselines (each input against every baseline)."""

    def __init__(self, model: nn.Module, multiply_by_inputs: bool = True) -> None:
        super().__init__(model, multiply_by_inputs=multiply_by_inputs)

    # captum's signature: baselines are required (a distribution), unlike DeepLift's
    def attribute(self, inputs, baselines, target=None,  # type: ignore[override]
                  additional_forward_args=None, return_convergence_delta: bool = False,
                  custom_attribution_func: Callable | None = None):
        was_tuple = is_tuple(inputs)
        pairs = DistributionPairs.of(inputs, baselines, target, additional_forward_args,
                                     "DeepLift")
        exp_inputs = pairs.inputs
        out = DeepLift.attribute(
            self, exp_inputs if was_tuple else exp_inputs[0], pairs.baselines,
            target=pairs.target, additional_forward_args=pairs.args,
            return_convergence_delta=return_convergence_delta,
            custom_attribution_func=custom_attribution_func)
        attrs, delta = out if return_convergence_delta else (out, None)
        result = format_output(was_tuple, pairs.mean(as_tuple(attrs)))
        return (result, delta) if return_convergence_delta else result


@dataclass(frozen=True)
class DistributionPairs:
    """Every input paired with every baseline of a distribution, example-major (input ``i``
    with baseline ``j`` at row ``i * m + j``): the expansion of the DeepLiftShap family."""

    n: int
    m: int
    inputs: Inputs
    baselines: Inputs
    target: Any
    args: tuple | None

    @staticmethod
    def of(inputs: Any, baselines: Any, target: Any, additional_forward_args: Any,
           single: str) -> DistributionPairs:
        bs = distribution_baselines(baselines, inputs, f"{single}Shap")
        if bs[0].shape[0] < 2:
            raise AttributionInputError(
                "`baselines` must be a tensor distribution with more than one example; with a "
                f"single baseline use {single}"
            )
        xs = as_tuple(inputs)
        check_distribution(xs, bs)
        n, m = xs[0].shape[0], bs[0].shape[0]
        return DistributionPairs(
            n, m,
            tuple(x.repeat_interleave(m, dim=0) for x in xs),
            tuple(b.repeat(n, *([1] * (b.dim() - 1))) if isinstance(b, Tensor) else b
                  for b in bs),
            expand_target_rows(target, m),
            expand_args(format_args(additional_forward_args), m, interleave=True))

    def mean(self, attrs: Inputs) -> Inputs:
        """(n * m, ...) attributions -> (n, ...) means over the baselines."""
        with torch.no_grad():
            return tuple(a.reshape(self.n, self.m, *a.shape[1:]).mean(1) for a in attrs)
