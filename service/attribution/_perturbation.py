"""The core shared by every perturbation method: feature masks with global ids, inputs built
from feature coalitions, and the evaluation of perturbed inputs, synchronous or through a
forward function that returns ``torch.futures.Future`` (Captum's ``attribute_future``).

A perturbed batch stacks ``k`` perturbations of the ``B`` examples *step-major*
(row ``j * B + b``, Captum's layout), so targets and extra arguments repeat with
``Target.expand(k)`` and ``expand_args(args, k)``.

An algorithm states its work as a ``first`` batch (the unperturbed inputs, or the baselines),
a stream of perturbed batches, and a ``finish(first_output, outputs)`` that turns the outputs
into attributions; ``evaluate`` runs that plan under ``torch.inference_mode()``, or, for a
future-returning forward, submits every pass and returns a Future of the attributions.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.futures import Future

from ._common import AttributionInputError, Inputs, Target, expand_args, format_output

logger = logging.getLogger(__name__)

# ---------------------------------------------------------------------------------------------
# Feature masks


@dataclass(frozen=True)
class FeatureMasks:
    """Feature masks as positions ``0..n_features-1`` into a feature axis.

    ``positions[i]``: long tensor of shape ``(1 or B, *input_i.shape[1:])`` (any shape for an
    empty input, whose elements belong to no feature); ``ids``: the user's feature id at each
    position; ``order``: positions in Captum's iteration order (ids of input 0 ascending, then
    ids first seen in input 1, ...); ``present[i]``: (n_features,) bool, which features occur
    in input ``i``.
    """

    positions: tuple[Tensor, ...]
    ids: Tensor
    order: list[int]
    present: tuple[Tensor, ...]

    @property
    def n_features(self) -> int:
        return int(self.ids.numel())

    @property
    def per_example(self) -> bool:
        return any(p.shape[0] > 1 for p in self.positions if p.dim())


def _integer_mask(m: Tensor, name: str) -> Tensor:
    """Integer ids; a floating mask is accepted when it holds whole numbers (Captum compares
    masks with ``==``, so ``torch.zeros_like(x)`` is a valid mask there)."""
    if m.is_complex() or m.dtype is torch.bool:
        raise TypeError(f"`{name}` must hold integer feature ids, got dtype {m.dtype}")
    if m.is_floating_point():
        if m.numel() and not bool((m == m.round()).all()):
            raise TypeError(f"`{name}` must hold integer feature ids; it has fractional values")
        return m.long()
    return m


def _shape_masks(feature_mask: object, inputs: Inputs, name: str) -> tuple[Tensor, ...]:
    """The user's masks (or the default: one id per scalar, global across inputs), each
    reshaped to ``(1 or B, *input.shape[1:])`` and checked."""
    if feature_mask is None:
        masks, start = [], 0
        for x in inputs:
            n = x[0:1].numel()
            masks.append(start + torch.arange(n, device=x.device).reshape(x[0:1].shape))
            start += n
        return tuple(masks)
    items = feature_mask if isinstance(feature_mask, tuple) else (feature_mask,)
    if len(items) != len(inputs):
        raise AttributionInputError(
            f"`{name}` has {len(items)} masks but there are {len(inputs)} input tensors"
        )
    out = []
    for i, (m, x) in enumerate(zip(items, inputs)):
        if not isinstance(m, Tensor):
            raise TypeError(f"`{name}[{i}]` must be an integer tensor, got {type(m).__name__}")
        m = _integer_mask(m, f"{name}[{i}]")
        if x.numel() == 0:
            out.append(m.reshape(-1)[:0].long().to(x.device))   # an empty input has no features
            continue
        if m.dim() > x.dim():
            raise AttributionInputError(
                f"`{name}[{i}]` has {m.dim()} dimensions, input {i} only {x.dim()}")
        m = m.reshape((1,) * (x.dim() - m.dim()) + tuple(m.shape)).to(x.device)
        ok = all(ms in (1, xs) for ms, xs in zip(m.shape, x.shape))
        if not ok:
            raise AttributionInputError(
                f"`{name}[{i}]` of shape {tuple(m.shape)} does not broadcast to input {i} of "
                f"shape {tuple(x.shape)} (each dimension must be 1 or the input's)"
            )
        if m.numel() and int(m.min()) < 0:
            raise AttributionInputError(f"`{name}[{i}]` has negative feature ids")
        if m.shape[0] > 1 and bool((m == m[:1]).all()):
            m = m[:1]                                   # the same mask for every example
        out.append(m.expand(m.shape[0], *x.shape[1:]).long())
    return tuple(out)


def feature_masks(feature_mask: object, inputs: Inputs, name: str = "feature_mask",
                  dense: bool = True, allow_empty: bool = False) -> FeatureMasks:
    """Masks with ids global across inputs (the same id in two inputs is one feature).

    ``dense``: positions index the distinct ids; otherwise positions are the ids themselves,
    ``0..max id`` (Captum's Shapley and Lime numbering, where absent ids are idle features).
    ``allow_empty``: no features at all (every input empty) is allowed (ablation gives zeros).
    """
    masks = _shape_masks(feature_mask, inputs, name)
    nonempty = [m for m in masks if m.numel()]
    device = inputs[0].device
    if not nonempty:
        if not allow_empty:
            raise AttributionInputError(f"`{name}` selects no features: every input is empty")
        empty = tuple(torch.zeros(0, dtype=torch.bool, device=device) for _ in masks)
        return FeatureMasks(masks, torch.zeros(0, dtype=torch.long, device=device), [], empty)
    if dense:
        ids = torch.unique(torch.cat([m.reshape(-1).to(device) for m in nonempty]))
        positions = tuple(torch.searchsorted(ids.to(m.device), m.contiguous()) for m in masks)
    else:
        ids = torch.arange(max(int(m.max()) for m in nonempty) + 1, device=device)
        positions = masks
    n = int(ids.numel())
    present, order, seen = [], [], set()
    for p in positions:
        here = torch.zeros(n, dtype=torch.bool, device=device)
        if p.numel():
            here[p.reshape(-1).to(device)] = True
        present.append(here)
        for pos in here.nonzero().flatten().tolist():
            if pos not in seen:
                seen.add(pos)
                order.append(pos)
    return FeatureMasks(positions, ids, order, tuple(present))


def coalition_inputs(inputs: Inputs, baselines: Inputs, masks: FeatureMasks,
                     keep: Tensor) -> Inputs:
    """Inputs built from ``k`` coalitions: an element keeps its input value where its feature is
    kept, and takes the baseline otherwise.

    ``keep``: bool of shape (k, n_features), or (k, B, n_features) per example. Returns tensors
    of shape (k * B, *input.shape[1:]), step-major; a changed tensor has the dtype of input and
    baseline together (an int input with a float baseline becomes float, as in Captum).
    """
    if keep.dim() == 2:
        keep = keep.unsqueeze(1)
    k = keep.shape[0]
    changed = ~keep.reshape(-1, keep.shape[-1]).all(0)                     # (n_features,)
    out = []
    for x, b, pos, here in zip(inputs, baselines, masks.positions, masks.present):
        if x.numel() == 0 or not bool((changed.to(here.device) & here).any()):
            out.append(x.repeat(k, *([1] * (x.dim() - 1))))
            continue
        n_rows = max(keep.shape[1], pos.shape[0])
        flat = pos.reshape(pos.shape[0], -1).expand(n_rows, -1)             # (rows, E)
        sel = keep.to(x.device).expand(k, n_rows, -1).gather(
            2, flat.unsqueeze(0).expand(k, -1, -1))                         # (k, rows, E)
        sel = sel.reshape(k, n_rows, *x.shape[1:])
        mixed = torch.where(sel, x.unsqueeze(0), b.unsqueeze(0))             # (k, B, *S)
        out.append(mixed.reshape(k * x.shape[0], *x.shape[1:]))
    return tuple(out)


def spread(values: Tensor, masks: FeatureMasks, inputs: Inputs,
           per_example_output: bool = True) -> Inputs:
    """Per-feature values (n_features, n_out) onto every element of every input: tensors of
    shape (n_out, *input.shape[1:]).

    A per-example mask (B rows) needs a per-example output (``per_example_output``): its n_out
    values are B groups of n_out / B, and example b's mask places the values of group b.
    """
    n_out = values.shape[1]
    out = []
    for i, (x, pos) in enumerate(zip(inputs, masks.positions)):
        if x.numel() == 0 or pos.numel() == 0:
            out.append(values.new_zeros(n_out, *x.shape[1:]))
            continue
        flat = pos.reshape(pos.shape[0], -1).to(values.device)                # (1|B, E)
        if pos.shape[0] == 1:
            attr = values[flat[0]].T                                          # (n_out, E)
        else:
            rows = pos.shape[0]
            if not per_example_output or n_out % rows:
                raise AttributionInputError(
                    f"`feature_mask[{i}]` has one mask per example ({rows}) but the model "
                    f"output has {n_out} values for the batch: per-example masks need a "
                    f"per-example output (give masks with first dimension 1 otherwise)"
                )
            group = n_out // rows
            v = values.reshape(-1, rows, group).permute(1, 2, 0)              # (B, m, F)
            attr = v.gather(2, flat.unsqueeze(1).expand(rows, group, -1))     # (B, m, E)
        out.append(attr.reshape(n_out, *x.shape[1:]))
    return tuple(out)


def floating(dtype: torch.dtype) -> torch.dtype:
    """The dtype of averaged attributions: Captum's float32 for integer, bool and half outputs,
    the output's own dtype when it is float32 or wider (float64 is not rounded to float32)."""
    return torch.promote_types(dtype, torch.float32)


# ---------------------------------------------------------------------------------------------
# Baselines


def baseline_tensors(inputs: Inputs, baselines: tuple, name: str = "baselines") -> Inputs:
    """Baselines (numbers, or tensors broadcastable to the input) as tensors of the inputs'
    shapes (expanded views) and devices, in the dtype an input and its baseline give together."""
    out = []
    for i, (x, b) in enumerate(zip(inputs, baselines)):
        dtype = torch.result_type(x, b)
        t = torch.as_tensor(b, dtype=dtype, device=x.device)
        try:
            out.append(t.expand(x.shape) if t.dim() else t.reshape((1,) * x.dim()).expand(x.shape))
        except RuntimeError:
            raise AttributionInputError(
                f"`{name}[{i}]` of shape {tuple(t.shape)} does not broadcast to input {i} of "
                f"shape {tuple(x.shape)}"
            ) from None
    return tuple(out)


def check_per_eval(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AttributionInputError(
            f"`perturbations_per_eval` must be an integer >= 1, got {value!r}")
    return value


def detach_out(ts: Inputs) -> Inputs:
    """Tensors made inside inference mode as ordinary tensors (usable later with autograd)."""
    return tuple(t.clone() if t.is_inference() else t for t in ts)


# ---------------------------------------------------------------------------------------------
# Evaluation


def parse_output(output: object) -> Tensor:
    """A forward function's value as a tensor: Python ints as int64 and floats as float64
    (Captum's conversion); 0-d tensors as shape (1,)."""
    if isinstance(output, Future):
        raise AttributionInputError(
            "`forward_func` returned a torch.futures.Future: use attribute_future() for an "
            "asynchronous forward function"
        )
    if not isinstance(output, Tensor):
        if isinstance(output, bool):
            output = torch.tensor(output)
        elif isinstance(output, int):
            output = torch.tensor(output, dtype=torch.int64)
        elif isinstance(output, float):
            output = torch.tensor(output, dtype=torch.float64)
        else:
            raise AttributionInputError(
                f"`forward_func` must return a tensor, an int or a float, got "
                f"{type(output).__name__}"
            )
    return output.reshape(1) if output.dim() == 0 else output


class Evaluator:
    """Runs the forward function on stacks of ``k`` perturbations of the batch and returns the
    targeted outputs as (k, n_out), where n_out is the number of values the unperturbed batch
    gives (one per example, or a fixed number for a model that aggregates its batch).

    ``asynchronous``: the forward function returns Futures; ``submit`` returns them and
    ``accept`` turns a completed value into the targeted output."""

    def __init__(self, forward_func: Callable, n_examples: int, target: Target,
                 args: tuple | None, progress: Any, asynchronous: bool = False) -> None:
        self.forward_func = forward_func
        self.n_examples = n_examples
        self.target = target
        self.args = args
        self.progress = progress
        self.asynchronous = asynchronous
        self.out_shape: tuple[int, ...] | None = None
        self._checked = False

    # -- synchronous ------------------------------------------------------------------------

    def initial(self, inputs: Inputs) -> Tensor:
        """The unperturbed (or any single) batch: (n_out,). Fixes the output shape."""
        return self.accept_initial(self.submit(inputs, 1))

    def __call__(self, batch: Inputs, k: int) -> Tensor:
        return self.accept(self.submit(batch, k), k)

    # -- the two halves of a pass -----------------------------------------------------------

    def submit(self, batch: Inputs, k: int) -> Any:
        """Calls the forward function on ``k`` stacked perturbations; its raw value (a Future
        when asynchronous)."""
        args = expand_args(self.args, k)
        out = self.forward_func(*batch, *args) if args else self.forward_func(*batch)
        self.progress.update()
        if self.asynchronous and not isinstance(out, Future):
            raise AttributionInputError(
                f"attribute_future() needs a forward function that returns a "
                f"torch.futures.Future; it returned {type(out).__name__} (use attribute())"
            )
        return out

    def accept_initial(self, raw: object) -> Tensor:
        out = self._select(raw, 1)
        self.out_shape = tuple(out.shape)
        return out.reshape(-1)

    def accept(self, raw: object, k: int) -> Tensor:
        out = self._select(raw, k)
        if k > 1 and not self._checked:
            self._checked = True
            if self.out_shape is None or out.shape[0] != k * self.out_shape[0]:
                raise AttributionInputError(
                    f"`perturbations_per_eval` > 1 needs a forward function whose output grows "
                    f"with the batch: {self.n_examples} examples gave shape {self.out_shape}, "
                    f"{k * self.n_examples} rows gave {tuple(out.shape)}; use "
                    f"perturbations_per_eval=1 for a model that aggregates its batch"
                )
        return out.reshape(k, -1)

    def _select(self, raw: object, k: int) -> Tensor:
        return parse_output(self.target.expand(k).select(parse_output(raw)))

    @property
    def n_out(self) -> int:
        assert self.out_shape is not None, "initial() first"
        return int(torch.Size(self.out_shape).numel())

    @property
    def per_example(self) -> bool:
        """The model gives its output per example (the output grows with the batch)."""
        assert self.out_shape is not None, "initial() first"
        return len(self.out_shape) >= 1 and self.out_shape[0] == self.n_examples


def evaluate(ev: Evaluator, first: Inputs, batches: Iterable[tuple[Inputs, int]],
             finish: Callable[[Tensor, list[Tensor]], Inputs], was_tuple: bool) -> Any:
    """Evaluates ``first`` ((n_out,) output) and every ``(batch, k)`` ((k, n_out) each), then
    ``finish(first_output, outputs)``: the attributions, one tensor per input, returned as a
    tuple when ``was_tuple`` and as one tensor otherwise.

    Synchronous: everything under ``torch.inference_mode()``, the attributions returned as
    ordinary tensors. Asynchronous (``ev.asynchronous``): every pass is submitted at once under
    ``torch.no_grad()`` (inference tensors could not enter an autograd-enabled model in another
    thread) and a Future of the attributions is returned; an error in a pass or in ``finish``
    becomes the Future's exception, of its own type.
    """
    try:
        if not ev.asynchronous:
            with torch.inference_mode():
                initial = ev.initial(first)
                outputs = [ev(batch, k) for batch, k in batches]
                attrs = finish(initial, outputs)
            return format_output(was_tuple, detach_out(attrs))
        with torch.no_grad():
            raws = [ev.submit(first, 1)]
            ks = [1]
            for batch, k in batches:
                raws.append(ev.submit(batch, k))
                ks.append(k)
    finally:
        ev.progress.close()

    def complete(values: list[object]) -> Any:
        with torch.no_grad():
            initial = ev.accept_initial(values[0])
            attrs = finish(initial, [ev.accept(v, k) for v, k in zip(values[1:], ks[1:])])
            return format_output(was_tuple, attrs)

    return gather(raws, complete)


def gather(futures: list[Future], combine: Callable[[list[object]], Any]) -> torch.Future:
    """A ``torch.Future`` (the type ``Future.then`` gives, as Captum returns) of
    ``combine(values)`` once every future is done; the first error (a failed future, or
    ``combine`` raising) becomes its exception, keeping the exception's type (``then`` would
    wrap it in a RuntimeError)."""
    result: torch.Future = torch.Future([])
    pending = [len(futures)]
    lock = threading.Lock()

    def one_done(_: Future) -> None:
        with lock:
            pending[0] -= 1
            if pending[0]:
                return
        try:
            value = combine([f.value() for f in futures])
        except BaseException as e:  # noqa: BLE001 - delivered to the caller through the Future
            _set_exception(result, e)
        else:
            result.set_result(value)

    for f in futures:
        f.add_done_callback(one_done)
    return result


def _set_exception(future: torch.Future, error: BaseException) -> None:
    """``torch.futures.Future.set_exception`` for the base ``torch.Future``: ``wait()`` and
    ``value()`` raise ``error`` itself."""
    def unwrap(value: BaseException) -> None:
        raise value

    future._set_unwrap_func(unwrap)
    future.set_result(error)
