"""The core shared by every perturbation method: feature masks with global ids, inputs built
from feature coalitions, and the batched evaluation of perturbed inputs.

A perturbed batch stacks ``k`` perturbations of the ``B`` examples *step-major*
(row ``j * B + b``, Captum's layout), so targets and extra arguments repeat with
``Target.expand(k)`` and ``expand_args(args, k)``.

Everything here runs inside ``torch.inference_mode()`` opened by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ._common import Inputs, Target, expand_args, run_forward

# ---------------------------------------------------------------------------------------------
# Feature masks


@dataclass(frozen=True)
class FeatureMasks:
    """Feature masks as positions ``0..n_features-1`` into a feature axis.

    ``positions[i]``: long tensor of shape ``(1 or B, *input_i.shape[1:])``; ``ids``: the user's
    feature id at each position; ``order``: positions in Captum's iteration order (ids of
    input 0 ascending, then ids first seen in input 1, ...); ``present[i]``: (n_features,)
    bool, which features occur in input ``i``.
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
        return any(p.shape[0] > 1 for p in self.positions)


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
        raise ValueError(
            f"`{name}` has {len(items)} masks but there are {len(inputs)} input tensors"
        )
    out = []
    for i, (m, x) in enumerate(zip(items, inputs)):
        if not isinstance(m, Tensor):
            raise TypeError(f"`{name}[{i}]` must be an integer tensor, got {type(m).__name__}")
        if m.is_floating_point() or m.is_complex() or m.dtype is torch.bool:
            raise TypeError(f"`{name}[{i}]` must hold integer feature ids, got dtype {m.dtype}")
        if m.dim() > x.dim():
            raise ValueError(f"`{name}[{i}]` has {m.dim()} dimensions, input {i} only {x.dim()}")
        m = m.reshape((1,) * (x.dim() - m.dim()) + tuple(m.shape)).to(x.device)
        ok = all(ms in (1, xs) for ms, xs in zip(m.shape, x.shape))
        if not ok:
            raise ValueError(
                f"`{name}[{i}]` of shape {tuple(m.shape)} does not broadcast to input {i} of "
                f"shape {tuple(x.shape)} (each dimension must be 1 or the input's)"
            )
        if m.numel() and int(m.min()) < 0:
            raise ValueError(f"`{name}[{i}]` has negative feature ids")
        out.append(m.expand(m.shape[0], *x.shape[1:]).long())
    return tuple(out)


def feature_masks(feature_mask: object, inputs: Inputs, name: str = "feature_mask",
                  dense: bool = True) -> FeatureMasks:
    """Masks with ids global across inputs (the same id in two inputs is one feature).

    ``dense``: positions index the distinct ids; otherwise positions are the ids themselves,
    ``0..max id`` (Captum's Shapley and Lime numbering, where absent ids are idle features).
    """
    masks = _shape_masks(feature_mask, inputs, name)
    nonempty = [m for m in masks if m.numel()]
    if not nonempty:
        raise ValueError(f"`{name}` selects no features: every input is empty")
    device = inputs[0].device
    if dense:
        ids = torch.unique(torch.cat([m.reshape(-1).to(device) for m in nonempty]))
        positions = tuple(torch.searchsorted(ids.to(m.device), m) for m in masks)
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
    of shape (k * B, *input.shape[1:]), step-major.
    """
    if keep.dim() == 2:
        keep = keep.unsqueeze(1)
    k = keep.shape[0]
    changed = ~keep.reshape(-1, keep.shape[-1]).all(0)                     # (n_features,)
    out = []
    for x, b, pos, here in zip(inputs, baselines, masks.positions, masks.present):
        if not bool((changed.to(here.device) & here).any()):
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


def spread(values: Tensor, masks: FeatureMasks, inputs: Inputs) -> Inputs:
    """Per-feature values (n_features, n_out) onto every element of every input: tensors of
    shape (n_out, *input.shape[1:])."""
    n_out = values.shape[1]
    out = []
    for i, (x, pos) in enumerate(zip(inputs, masks.positions)):
        flat = pos.reshape(pos.shape[0], -1).to(values.device)                # (1|B, E)
        if pos.shape[0] == 1:
            attr = values[flat[0]].T                                          # (n_out, E)
        elif pos.shape[0] == n_out:
            attr = values.T.gather(1, flat)                                    # (B, E)
        else:
            raise ValueError(
                f"`feature_mask[{i}]` has one mask per example ({pos.shape[0]}) but the model "
                f"output has {n_out} values: per-example masks need one output per example"
            )
        out.append(attr.reshape(n_out, *x.shape[1:]))
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Evaluation


class Evaluator:
    """Runs the forward function on stacks of ``k`` perturbations of the batch and returns the
    targeted outputs as (k, n_out), where n_out is the number of values the unperturbed batch
    gives (one per example, or a fixed number for a model that aggregates its batch)."""

    def __init__(self, forward_func: Callable, n_examples: int, target: Target,
                 args: tuple | None, progress: Any) -> None:
        self.forward_func = forward_func
        self.n_examples = n_examples
        self.target = target
        self.args = args
        self.progress = progress
        self.out_shape: tuple[int, ...] | None = None
        self._checked = False

    def initial(self, inputs: Inputs) -> Tensor:
        """The unperturbed (or any single) batch: (n_out,). Fixes the output shape."""
        out = self._forward(inputs, 1)
        self.out_shape = tuple(out.shape)
        return out.reshape(-1)

    @property
    def n_out(self) -> int:
        assert self.out_shape is not None, "initial() first"
        return int(torch.Size(self.out_shape).numel())

    @property
    def per_example(self) -> bool:
        """The model gives its output per example (the output grows with the batch)."""
        assert self.out_shape is not None, "initial() first"
        return len(self.out_shape) >= 1 and self.out_shape[0] == self.n_examples

    def __call__(self, batch: Inputs, k: int) -> Tensor:
        out = self._forward(batch, k)
        if k > 1 and not self._checked:
            self._checked = True
            if self.out_shape is None or not self.out_shape or \
                    out.shape[0] != k * self.out_shape[0]:
                raise ValueError(
                    f"`perturbations_per_eval` > 1 needs a forward function whose output grows "
                    f"with the batch: {self.n_examples} examples gave shape {self.out_shape}, "
                    f"{k * self.n_examples} rows gave {tuple(out.shape)}; use "
                    f"perturbations_per_eval=1 for a model that aggregates its batch"
                )
        return out.reshape(k, -1)

    def _forward(self, batch: Inputs, k: int) -> Tensor:
        target = self.target.expand(k)
        out = run_forward(self.forward_func, batch, target, expand_args(self.args, k))
        self.progress.update()
        if not isinstance(out, Tensor):
            out = torch.as_tensor(out)
        return out.reshape(1) if out.dim() == 0 else out


def baseline_tensors(inputs: Inputs, baselines: tuple) -> Inputs:
    """Baselines (numbers or tensors of 1 or B rows) as tensors of the inputs' dtypes and
    devices, shaped (1 or B, *input.shape[1:])."""
    out = []
    for x, b in zip(inputs, baselines):
        t = torch.as_tensor(b, dtype=x.dtype, device=x.device)
        if t.dim() == 0:
            t = t.reshape((1,) * x.dim())
        out.append(t.expand(t.shape[0], *x.shape[1:]))
    return tuple(out)


def check_per_eval(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`perturbations_per_eval` must be an integer >= 1, got {value!r}")
    return value


def detach_out(ts: Inputs) -> Inputs:
    """Tensors made inside inference mode as ordinary tensors (usable later with autograd)."""
    return tuple(t.clone() for t in ts)
