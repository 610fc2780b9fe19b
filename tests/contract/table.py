"""The contract table: one row per algorithm configuration, run by the generic suites in
``test_contract.py``. Adding an algorithm means adding a row (in the family's ``rows_*.py``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .models import DTYPE, MODELS, ModelSpec, _rows

Kwargs = Callable[[ModelSpec, list[int]], dict]


@dataclass(frozen=True)
class Case:
    name: str
    model: str                                  # key of MODELS
    ours: Callable[[nn.Module], Any]            # builds our attribution object
    theirs: Callable[[nn.Module], Any] | None   # builds captum's (None: no captum oracle)
    kwargs: Kwargs = field(default=lambda spec, rows: {})
    sampled: bool = False            # random draws: compared with captum under the same seed
    completeness: float | None = None  # |delta| bound; the row must ask for the delta
    batch_equals_singles: bool = True
    captum_per_example: bool = False   # captum's result depends on batch-mates: compare singly
    atol: float = 1e-6
    rtol: float = 1e-5
    # Where the attribution lives: "input" (default) or a layer name for layer/neuron rows.
    note: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}-{self.model}"


# ---------------------------------------------------------------------------------------------
# kwargs helpers


def per_example_target(spec: ModelSpec, rows: list[int]) -> list[int]:
    return [r % spec.n_outputs for r in rows]


def per_example_baselines(spec: ModelSpec, rows: list[int], salt: int = 77,
                          scale: float = 0.1) -> tuple[Tensor, ...]:
    return tuple(scale * _rows(rows, tuple(x.shape[1:]), salt + i)
                 for i, x in enumerate(spec.inputs(rows[:1])))


def distribution(spec: ModelSpec, n: int = 4, salt: int = 91) -> tuple[Tensor, ...]:
    """A reference set of ``n`` examples, the same whatever the rows."""
    return tuple(0.2 * _rows(list(range(n)), tuple(x.shape[1:]), salt + i)
                 for i, x in enumerate(spec.inputs([0])))


def extra(spec: ModelSpec, rows: list[int]) -> dict:
    args = spec.extra_args(rows)
    return {} if args is None else {"additional_forward_args": args}


def one_or_tuple(ts: tuple[Tensor, ...]) -> Tensor | tuple[Tensor, ...]:
    return ts[0] if len(ts) == 1 else ts


# ---------------------------------------------------------------------------------------------
# running a row


def seed_all(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def run(case: Case, impl: Callable[[nn.Module], Any], rows: list[int], seed: int = 0,
        model: nn.Module | None = None) -> tuple[Any, nn.Module]:
    spec = MODELS[case.model]
    model = spec.build() if model is None else model
    inputs = one_or_tuple(spec.inputs(rows))
    kwargs = case.kwargs(spec, rows)
    seed_all(seed)
    obj = impl(model)
    return obj.attribute(inputs, **kwargs), model


def split(result: Any, want_delta: bool) -> tuple[tuple[Tensor, ...], Tensor | None]:
    attrs, delta = result if want_delta else (result, None)
    if isinstance(attrs, list):  # a list of layers: flatten each layer's tensor(s)
        attrs = tuple(t for a in attrs for t in (a if isinstance(a, tuple) else (a,)))
    if isinstance(delta, list):  # one delta per layer: example-major, (N * layers,)
        delta = torch.stack(delta, dim=1).flatten()
    return (attrs if isinstance(attrs, tuple) else (attrs,)), delta


__all__ = ["Case", "DTYPE", "per_example_target", "per_example_baselines", "distribution",
           "extra", "run", "split", "seed_all"]
