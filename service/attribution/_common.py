"""Argument normalisation shared by every algorithm: inputs, baselines, targets, extra forward
arguments and output formatting. Captum's accepted forms, checked once, with errors that name
the argument.

Row layouts: when an algorithm evaluates ``n`` variants of a batch of ``B`` examples in one
forward it stacks them either *step-major* (row ``s * B + b``, Captum's ``repeat``) or
*example-major* (row ``b * n + s``, Captum's ``repeat_interleave``). ``interleave`` selects the
second.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Union

import torch
from torch import Tensor

Inputs = tuple[Tensor, ...]
Baseline = Union[Tensor, int, float]
Baselines = tuple[Baseline, ...]
TargetType = Union[None, int, tuple, Tensor, list]


class AttributionInputError(ValueError, AssertionError):
    """A user mistake in an argument that Captum rejects with ``assert``.

    A ``ValueError`` for our callers, and an ``AssertionError`` for code written against Captum
    that catches the latter. The message names the argument.
    """


def is_tuple(inputs: object) -> bool:
    return isinstance(inputs, tuple)


def as_tuple(inputs: Tensor | Sequence[Tensor], name: str = "inputs") -> Inputs:
    """A tensor or tuple of tensors as a non-empty tuple of tensors."""
    if isinstance(inputs, Tensor):
        return (inputs,)
    if isinstance(inputs, tuple) and inputs and all(isinstance(t, Tensor) for t in inputs):
        return inputs
    raise TypeError(f"`{name}` must be a tensor or a non-empty tuple of tensors, got {_kind(inputs)}")


def format_output(was_tuple: bool, outputs: Inputs) -> Tensor | Inputs:
    if was_tuple:
        return tuple(outputs)
    if len(outputs) != 1:
        raise ValueError(f"expected a single output tensor, got {len(outputs)}")
    return outputs[0]


def _kind(value: object) -> str:
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# Baselines


def format_baselines(baselines: object, inputs: Inputs, name: str = "baselines") -> Baselines:
    """None, a number, a tensor or a tuple of those, one per input tensor."""
    if baselines is None:
        return tuple(False if x.dtype is torch.bool else 0 for x in inputs)
    items = baselines if isinstance(baselines, tuple) else (baselines,)
    if len(items) != len(inputs):
        raise AttributionInputError(
            f"`{name}` has {len(items)} entries but there are {len(inputs)} input tensors"
        )
    for i, b in enumerate(items):
        if not isinstance(b, (Tensor, int, float)):
            raise TypeError(f"`{name}[{i}]` must be a tensor or a number, got {_kind(b)}")
    return items


def callable_baselines(baselines: object, inputs: Tensor | Inputs, name: str = "baselines"):
    """Resolves a baseline callable (with no argument or with the inputs) to its value."""
    if callable(baselines) and not isinstance(baselines, Tensor):
        n_params = len(inspect.signature(baselines).parameters)
        baselines = baselines() if n_params == 0 else baselines(inputs)
    return format_baselines(baselines, as_tuple(inputs), name)


def distribution_baselines(baselines: object, inputs: Tensor | Inputs,
                           method: str) -> tuple[Tensor, ...]:
    """SHAP-style baselines (a callable resolved first): a tensor, or a tuple of tensors, one
    per input, each holding any number of reference examples."""
    if callable(baselines) and not isinstance(baselines, Tensor):
        n_params = len(inspect.signature(baselines).parameters)
        baselines = baselines() if n_params == 0 else baselines(inputs)
    items = baselines if isinstance(baselines, tuple) else (baselines,)
    if not all(isinstance(b, Tensor) for b in items):
        raise AttributionInputError(
            f"`baselines` for {method} must be a tensor (or a tuple of tensors, or a callable "
            "returning them) holding a distribution of reference examples; got "
            f"{', '.join(_kind(b) for b in items)}")
    return format_baselines(items, as_tuple(inputs))  # type: ignore[return-value]


def check_baselines(inputs: Inputs, baselines: Baselines, name: str = "baselines") -> None:
    """A tensor baseline has the input's shape or is one example broadcast to the batch."""
    for i, (x, b) in enumerate(zip(inputs, baselines)):
        if isinstance(b, Tensor) and not (
            b.shape == x.shape or (b.dim() == x.dim() and b.shape[0] == 1 and b.shape[1:] == x.shape[1:])
        ):
            raise AttributionInputError(
                f"`{name}[{i}]` has shape {tuple(b.shape)}; it must be a number, have the input's "
                f"shape {tuple(x.shape)}, or be one example of shape {(1, *x.shape[1:])}"
            )


def check_distribution(inputs: Inputs, baselines: Baselines, name: str = "baselines") -> None:
    """Baselines used as a distribution: any number of examples of the input's example shape."""
    for i, (x, b) in enumerate(zip(inputs, baselines)):
        if isinstance(b, Tensor) and b.shape[1:] != x.shape[1:]:
            raise AttributionInputError(
                f"`{name}[{i}]` has example shape {tuple(b.shape[1:])}, "
                f"input {i} has {tuple(x.shape[1:])}"
            )


def tensorize_baselines(inputs: Inputs, baselines: Baselines) -> Inputs:
    """Baselines as full tensors of the inputs' shapes."""
    out = []
    for x, b in zip(inputs, baselines):
        if not isinstance(b, Tensor):
            out.append(torch.full_like(x, b))
        elif b.shape[0] == 1 and x.shape[0] > 1:
            out.append(b.expand_as(x))
        else:
            out.append(b)
    return tuple(out)


# ---------------------------------------------------------------------------------------------
# Extra forward arguments


def format_args(additional_forward_args: object) -> tuple | None:
    if additional_forward_args is None:
        return None
    if isinstance(additional_forward_args, tuple):
        return additional_forward_args
    return (additional_forward_args,)


def expand_args(args: tuple | None, n: int, interleave: bool = False) -> tuple | None:
    """Repeats every tensor argument with a batch dimension ``n`` times along it."""
    if args is None or n == 1:
        return args
    return tuple(_expand_rows(a, n, interleave) if isinstance(a, Tensor) and a.dim() > 0 else a
                 for a in args)


def slice_args(args: tuple | None, start: int, stop: int, rows: int) -> tuple | None:
    """Rows [start, stop) of every tensor argument whose first dimension is the ``rows`` batch."""
    if args is None:
        return None
    return tuple(a[start:stop] if isinstance(a, Tensor) and a.dim() > 0 and a.shape[0] == rows
                 else a for a in args)


def expand_target_rows(target: Any, n: int) -> Any:
    """A public-form target for ``n`` example-major copies of each example."""
    if isinstance(target, list):
        return [t for t in target for _ in range(n)]
    if isinstance(target, Tensor) and target.numel() > 1:
        return target.repeat_interleave(n, dim=0)
    return target


def _expand_rows(t: Tensor, n: int, interleave: bool) -> Tensor:
    if interleave:
        return t.repeat_interleave(n, dim=0)
    return t.repeat(n, *([1] * (t.dim() - 1)))


# ---------------------------------------------------------------------------------------------
# Targets


@dataclass(frozen=True)
class Target:
    """A normalised target: which output each example's attribution explains.

    ``column``: one index tuple for every row (an int or tuple target); ``rows``: a per-row
    class index for 2-D outputs; ``row_tuples``: a per-row index tuple. All empty: the output
    itself (a scalar per example).
    """

    column: tuple | None = None
    rows: Tensor | None = None
    row_tuples: tuple[tuple, ...] | None = None

    @staticmethod
    def of(target: TargetType, n_examples: int) -> Target:
        if target is None:
            return Target()
        if isinstance(target, bool):
            raise TypeError("`target` must be an int, a tuple, a tensor or a list, not a bool")
        if isinstance(target, int):
            return Target(column=(target,))
        if isinstance(target, tuple):
            return Target(column=target)
        if isinstance(target, Tensor):
            if target.numel() == 1 and not target.is_floating_point():
                return Target(column=(int(target.item()),))
            if target.dim() == 1 and target.numel() == n_examples and not target.is_floating_point():
                return Target(rows=target.long())
            raise AttributionInputError(
                f"`target` tensor has shape {tuple(target.shape)}; expected one integer or one "
                f"integer per example ({n_examples})"
            )
        if isinstance(target, list):
            if len(target) != n_examples:
                raise AttributionInputError(
                    f"`target` list has {len(target)} entries but there are {n_examples} examples"
                )
            if all(isinstance(t, int) and not isinstance(t, bool) for t in target):
                return Target(rows=torch.tensor(target, dtype=torch.long))
            if all(isinstance(t, tuple) for t in target):
                return Target(row_tuples=tuple(target))
            raise TypeError("`target` list entries must all be ints or all be tuples")
        raise TypeError(f"`target` must be None, an int, a tuple, a tensor or a list, got {_kind(target)}")

    @property
    def per_example(self) -> bool:
        return self.rows is not None or self.row_tuples is not None

    def expand(self, n: int, interleave: bool = False) -> Target:
        """The target for ``n`` stacked variants of the batch (see the module doc for layouts)."""
        if n == 1 or not self.per_example:
            return self
        if self.rows is not None:
            return Target(rows=_expand_rows(self.rows, n, interleave))
        tuples = self.row_tuples or ()
        if interleave:
            return Target(row_tuples=tuple(t for t in tuples for _ in range(n)))
        return Target(row_tuples=tuples * n)

    def rows_slice(self, start: int, stop: int) -> Target:
        """The target of rows [start, stop)."""
        if self.rows is not None:
            return Target(rows=self.rows[start:stop])
        if self.row_tuples is not None:
            return Target(row_tuples=self.row_tuples[start:stop])
        return self

    def select(self, output: Tensor) -> Tensor:
        """The targeted output of every row: shape (rows,) or (rows, *rest) when a tuple target
        leaves dimensions."""
        if self.column is not None:
            if output.dim() < 1 + len(self.column):
                raise AttributionInputError(
                    f"`target` {self.column if len(self.column) > 1 else self.column[0]} "
                    f"needs {len(self.column)} output dimensions besides the batch; the model "
                    f"output has shape {tuple(output.shape)}"
                )
            for d, idx in enumerate(self.column):
                size = output.shape[1 + d]
                if isinstance(idx, int) and not -size <= idx < size:
                    raise AttributionInputError(
                        f"`target` index {idx} is out of range for output dimension {1 + d} "
                        f"of size {size} (model output shape {tuple(output.shape)})"
                    )
            return output[(slice(None),) + tuple(self.column)]
        if self.rows is not None:
            if output.dim() != 2:
                raise AttributionInputError(
                    f"a per-example `target` needs a 2-D model output, got shape {tuple(output.shape)}"
                )
            rows = self.rows.to(output.device)
            if rows.shape[0] != output.shape[0]:
                raise AttributionInputError(
                    f"`target` has {rows.shape[0]} entries for {output.shape[0]} output rows"
                )
            n_classes = output.shape[1]
            if rows.numel() and (int(rows.min()) < -n_classes or int(rows.max()) >= n_classes):
                raise AttributionInputError(f"`target` has an index outside [0, {n_classes}) for "
                                            f"output shape {tuple(output.shape)}")
            return output.gather(1, (rows % n_classes).view(-1, 1)).squeeze(1)
        if self.row_tuples is not None:
            return torch.stack([output[(i,) + tuple(t)] for i, t in enumerate(self.row_tuples)])
        return output


def run_forward(forward_func: Callable, inputs: Inputs, target: Target | None = None,
                args: tuple | None = None) -> Tensor:
    """Calls the model on inputs and extra arguments; selects the target when one is given."""
    output = forward_func(*inputs, *args) if args else forward_func(*inputs)
    if not isinstance(output, Tensor):
        output = torch.as_tensor(output)
    return output if target is None else target.select(output)


def sum_rows(t: Tensor) -> Tensor:
    """(rows, *rest) -> (rows,); a 0-d tensor stays a scalar per single example."""
    if t.dim() == 0:
        return t.reshape(1)
    return t.reshape(t.shape[0], -1).sum(1)


def check_positive_int(value: Any, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"`{name}` must be an integer >= {minimum}, got {value!r}")
    return value


def check_choice(value: Any, name: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ValueError(f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def call_with_arity(func: Callable, *args: Any, name: str) -> Any:
    """Calls ``func`` with as many leading ``args`` as it takes (Captum's custom functions)."""
    n = len(inspect.signature(func).parameters)
    if not 1 <= n <= len(args):
        raise ValueError(f"`{name}` must take between 1 and {len(args)} arguments, it takes {n}")
    return func(*args[:n])
