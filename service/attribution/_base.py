"""The public class hierarchy, mirroring Captum's (users test it with ``isinstance``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (
    Target,
    as_tuple,
    check_baselines,
    check_choice,
    format_args,
    format_baselines,
    run_forward,
    sum_rows,
    tensorize_baselines,
)


class Attribution:
    """An attribution method over ``forward_func``.

    Like Captum's (whose ``attribute`` methods carry a logging decorator), every subclass's
    ``attribute`` is a thin wrapper whose ``__wrapped__`` is the method as written, so
    ``inspect.getfullargspec(Method.attribute.__wrapped__)`` works on ours too.
    """

    # Captum's two capability queries are answered from these: a method with a
    # `multiply_by_inputs` option sets `_multiply_by_inputs` on the instance (a method that
    # always multiplies, on the class); a method with completeness sets `_has_delta`.
    _multiply_by_inputs: bool = False
    _has_delta: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("attribute")
        if callable(method) and not hasattr(method, "__wrapped__"):
            cls.attribute = _unwrappable(method)  # type: ignore[method-assign]

    def __init__(self, forward_func: Callable) -> None:
        if not callable(forward_func):
            raise TypeError(f"`forward_func` must be callable, got {type(forward_func).__name__}")
        self.forward_func = forward_func

    def attribute(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} does not implement attribute()")

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:
        """Captum's asynchronous ``attribute``; like Captum's gradient methods, not offered."""
        raise NotImplementedError(f"attribute_future is not implemented for {type(self).__name__}")

    @property
    def multiplies_by_inputs(self) -> bool:
        return self._multiply_by_inputs

    def has_convergence_delta(self) -> bool:
        return self._has_delta

    @classmethod
    def get_name(cls) -> str:
        """The class name split into words: ``IntegratedGradients`` -> ``Integrated Gradients``."""
        name = cls.__name__
        return "".join(c if c.islower() or i == 0 else " " + c for i, c in enumerate(name))


def _unwrappable(method: Callable) -> Callable:
    @functools.wraps(method)
    def attribute(self: Attribution, *args: Any, **kwargs: Any) -> Any:
        return method(self, *args, **kwargs)

    return attribute


class GradientAttribution(Attribution):
    """Methods built on gradients of the targeted output with respect to the inputs."""

    def compute_convergence_delta(self, attributions: Tensor | tuple[Tensor, ...],
                                  start_point: Any, end_point: Tensor | tuple[Tensor, ...],
                                  target: Any = None,
                                  additional_forward_args: Any = None) -> Tensor:
        """Per example: sum of attributions - (F(end_point) - F(start_point))."""
        end = as_tuple(end_point, "end_point")
        start = format_baselines(start_point, end, "start_point")
        check_baselines(end, start, "start_point")
        start_t = tensorize_baselines(end, start)
        attrs = as_tuple(attributions, "attributions")
        for a, e in zip(attrs, end):
            if a.shape[0] != e.shape[0]:
                raise ValueError(
                    f"attributions have {a.shape[0]} rows but end_point has {e.shape[0]}"
                )
        tgt = Target.of(target, end[0].shape[0])
        args = format_args(additional_forward_args)
        with torch.no_grad():
            start_out = sum_rows(run_forward(self.forward_func, start_t, tgt, args))
            end_out = sum_rows(run_forward(self.forward_func, end, tgt, args))
            attr_sum = torch.stack([sum_rows(a) for a in attrs]).sum(0)
            return attr_sum - (end_out - start_out)

    def _with_delta(self, result: Any, return_convergence_delta: bool,
                    attributions: Tensor | tuple[Tensor, ...], start_point: Any,
                    end_point: Tensor | tuple[Tensor, ...], target: Any,
                    additional_forward_args: Any) -> Any:
        """The tail of every method with completeness: ``result``, or ``(result, delta)`` with
        the per-example delta (B,) when ``return_convergence_delta``."""
        if not return_convergence_delta:
            return result
        return result, self.compute_convergence_delta(attributions, start_point, end_point,
                                                      target, additional_forward_args)


class PerturbationAttribution(Attribution):
    """Methods that run the model on perturbed inputs, with no gradients."""

    @property
    def multiplies_by_inputs(self) -> bool:
        return True


class InternalAttribution(Attribution):
    """Attribution with respect to a hidden layer or neuron."""

    def __init__(self, forward_func: Callable, layer: Any, device_ids: list[int] | None = None) -> None:
        # explicit, not super(): Captum's own internal classes call this on their instances
        Attribution.__init__(self, forward_func)
        self.layer = layer
        self.device_ids = device_ids


class LayerAttribution(InternalAttribution):
    """Attribution of the output to the neurons of a layer."""

    @staticmethod
    def interpolate(layer_attribution: Tensor, interpolate_dims: int | tuple[int, ...],
                    interpolate_mode: str = "nearest") -> Tensor:
        """Resizes a layer attribution (N, C, *spatial) to the spatial size ``interpolate_dims``
        with ``torch.nn.functional.interpolate``'s ``interpolate_mode``: nearest, nearest-exact,
        area (any spatial rank), linear (1), bilinear/bicubic (2), trilinear (3)."""
        if not isinstance(layer_attribution, Tensor):
            raise TypeError("`layer_attribution` must be a tensor, "
                            f"got {type(layer_attribution).__name__}")
        check_choice(interpolate_mode, "interpolate_mode", INTERPOLATE_MODES)
        spatial = layer_attribution.dim() - 2
        need = MODE_RANK.get(interpolate_mode)
        if spatial < 1 or (need is not None and spatial != need):
            raise ValueError(
                f"`interpolate_mode` {interpolate_mode!r} needs a layer attribution with "
                f"{need if need else 'one or more'} spatial dimensions after (N, C); got shape "
                f"{tuple(layer_attribution.shape)}")
        dims = (interpolate_dims,) if isinstance(interpolate_dims, int) else tuple(interpolate_dims)
        if len(dims) not in (1, spatial):
            raise ValueError(f"`interpolate_dims` {interpolate_dims!r} must give 1 or {spatial} "
                             "sizes, one per spatial dimension")
        return F.interpolate(layer_attribution, interpolate_dims, mode=interpolate_mode)


INTERPOLATE_MODES = ("nearest", "nearest-exact", "area", "linear", "bilinear", "bicubic",
                     "trilinear")
MODE_RANK = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}


class NeuronAttribution(InternalAttribution):
    """Attribution of one neuron of a layer to the inputs."""

    def __init__(self, forward_func: Callable, layer: nn.Module,
                 device_ids: list[int] | None = None) -> None:
        InternalAttribution.__init__(self, forward_func, layer, device_ids)
