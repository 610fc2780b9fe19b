"""Occlusion: slide a hyperrectangle over each input, replace it with the baseline, and give
every element the mean output change over the windows that covered it."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor

from ._batching import spans
from ._common import AttributionInputError, Inputs, Target, as_tuple, format_args, format_baselines, is_tuple
from ._perturbation import Evaluator, baseline_tensors, check_per_eval, evaluate, floating
from ._progress import progress
from .feature_ablation import FeatureAblation

Window = tuple[int, tuple[slice, ...]]   # (input index, one slice per non-batch dimension)


class Occlusion(FeatureAblation):
    """Captum's Occlusion: windows of ``sliding_window_shapes`` moved by ``strides``; the last
    window of a dimension is clipped at the input's edge. Attributions are float32 or wider
    (Captum's float32; a float64 output keeps float64)."""

    def __init__(self, forward_func: Callable) -> None:
        super().__init__(forward_func)

    def attribute(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                  sliding_window_shapes: tuple[int, ...] | tuple[tuple[int, ...], ...],
                  strides: Any = None, baselines: Any = None, target: Any = None,
                  additional_forward_args: Any = None, perturbations_per_eval: int = 1,
                  show_progress: bool = False) -> Tensor | tuple[Tensor, ...]:
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        per_eval = check_per_eval(perturbations_per_eval)
        windows = _windows(xs, _window_shapes(sliding_window_shapes, xs), _strides(strides, xs))
        bases = baseline_tensors(xs, format_baselines(baselines, xs))
        chunks = [windows[start:stop] for start, stop in spans(len(windows), per_eval)]
        n = xs[0].shape[0]
        bar = progress(show_progress, 1 + math.ceil(len(windows) / per_eval),
                       f"{self.get_name()} attribution")
        ev = Evaluator(self.forward_func, n, Target.of(target, n),
                       format_args(additional_forward_args), bar)

        def batches() -> Iterator[tuple[Inputs, int]]:
            for chunk in chunks:
                yield _occluded(xs, bases, chunk), len(chunk)

        def finish(initial: Tensor, outputs: list[Tensor]) -> Inputs:
            # initial (n_out,), outputs (k, n_out) per chunk
            n_out = initial.numel()
            dtype = floating(initial.dtype)
            attrs = [torch.zeros(n_out, *x.shape[1:], dtype=dtype, device=x.device) for x in xs]
            counts = [torch.zeros(x.shape[1:], dtype=dtype, device=x.device) for x in xs]
            for i, sl in windows:
                counts[i][sl] += 1
            for chunk, out in zip(chunks, outputs):
                diff = (initial.unsqueeze(0) - out).to(dtype)                  # (k, n_out)
                for j, (i, sl) in enumerate(chunk):
                    attrs[i][(slice(None),) + sl] += diff[j].reshape(n_out, *([1] * len(sl)))
            return tuple(a / c for a, c in zip(attrs, counts))

        return evaluate(ev, xs, batches(), finish, was_tuple)

    def attribute_future(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        """Not available for Occlusion, as in Captum."""
        raise NotImplementedError("attribute_future is not implemented for Occlusion")


def _occluded(xs: Inputs, bases: Inputs, chunk: list[Window]) -> Inputs:
    """One copy of the batch per window, the window set to the baseline: (k * B, *S)."""
    k = len(chunk)
    out = []
    for i, (x, b) in enumerate(zip(xs, bases)):
        rep = x.unsqueeze(0).repeat(k, *([1] * x.dim()))                   # (k, B, *S)
        for j, (wi, sl) in enumerate(chunk):
            if wi == i:
                rep[(j, slice(None)) + sl] = b[(slice(None),) + sl]
        out.append(rep.reshape(k * x.shape[0], *x.shape[1:]))
    return tuple(out)


def _window_shapes(shapes: Any, xs: Inputs) -> tuple[tuple[int, ...], ...]:
    if not isinstance(shapes, tuple) or not shapes and len(xs) > 1:
        raise AttributionInputError("`sliding_window_shapes` must be a tuple of ints, or one tuple per input")
    if not shapes or isinstance(shapes[0], int):
        shapes = (shapes,)
    if len(shapes) != len(xs):
        raise AttributionInputError(f"`sliding_window_shapes` has {len(shapes)} entries for {len(xs)} inputs")
    for i, (s, x) in enumerate(zip(shapes, xs)):
        if not isinstance(s, tuple) or len(s) != x.dim() - 1 or \
                not all(isinstance(v, int) and v >= 1 for v in s):
            raise AttributionInputError(
                f"`sliding_window_shapes` for input {i} is {s!r}; it must be a tuple of "
                f"{x.dim() - 1} positive ints (input shape {tuple(x.shape)})"
            )
        if any(v > d for v, d in zip(s, x.shape[1:])):
            raise AttributionInputError(
                f"`sliding_window_shapes` {s} for input {i} exceeds its dimensions "
                f"{tuple(x.shape[1:])}"
            )
    return shapes


def _strides(strides: Any, xs: Inputs) -> tuple[tuple[int, ...], ...]:
    if strides is None:
        strides = tuple(1 for _ in xs)
    if len(xs) == 1 and not (isinstance(strides, tuple) and len(strides) == 1):
        strides = (strides,)
    if not isinstance(strides, tuple) or len(strides) != len(xs):
        raise AttributionInputError("`strides` must be an int, or give one entry per input tensor")
    out = []
    for i, (s, x) in enumerate(zip(strides, xs)):
        dims = x.dim() - 1
        if isinstance(s, int) and not isinstance(s, bool):
            s = (s,) * dims
        if not isinstance(s, tuple) or len(s) != dims or \
                not all(isinstance(v, int) and v >= 1 for v in s):
            raise AttributionInputError(
                f"`strides` for input {i} is {s!r}; it must be a positive int or a tuple of "
                f"{dims} positive ints (input shape {tuple(x.shape)})"
            )
        out.append(s)
    return tuple(out)


def _windows(xs: Inputs, shapes: tuple[tuple[int, ...], ...],
             strides: tuple[tuple[int, ...], ...]) -> list[Window]:
    """Every window of every input; within an input the first dimension moves fastest
    (Captum's numbering)."""
    out: list[Window] = []
    for i, (x, shape, stride) in enumerate(zip(xs, shapes, strides)):
        starts_per_dim = []
        for d, (dim, w, s) in enumerate(zip(x.shape[1:], shape, stride)):
            if w < dim and s > w:
                raise AttributionInputError(
                    f"`strides` {s} is larger than the window {w} in dimension {d + 1} of "
                    f"input {i}: some elements would never be occluded"
                )
            n = math.ceil((dim - w) / s) + 1
            starts_per_dim.append([k * s for k in range(n)])
        total = math.prod(len(v) for v in starts_per_dim)
        for idx in range(total):
            rest, sl = idx, []
            for starts, w in zip(starts_per_dim, shape):
                start = starts[rest % len(starts)]
                rest //= len(starts)
                sl.append(slice(start, start + w))
            out.append((i, tuple(sl)))
    return out
