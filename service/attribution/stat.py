"""Running statistics of a stream of tensors (Captum's ``captum.attr`` stats): each ``update(x)``
adds one tensor, ``get()`` answers the statistic of every tensor seen so far, elementwise.

A stat names the stats it reads (``requires()``); a ``Summarizer`` tracks those too, updates
them first and hands them over in ``init()``. Mean and the sum of squared deviations use
Welford's update, so a stream far from zero keeps its precision (no sum of squares).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, Union, cast

import torch
from torch import Tensor

if TYPE_CHECKING:
    from .summarizer import SummarizerSingleTensor

StatValue = Union[Tensor, int, float]
_S = TypeVar("_S", bound="Stat")


class Stat:
    """A statistic updated one tensor at a time.

    Two stats are equal when they have the same class and parameters (``order`` for Var and
    StdDev), so a summarizer keeps one of each and stats can look each other up.
    """

    def __init__(self, name: str | None = None, **kwargs: Any) -> None:
        self.params: dict[str, Any] = kwargs
        self._name = name
        self._other_stats: SummarizerSingleTensor | None = None

    def requires(self) -> list[Stat]:
        """The stats this one reads; a summarizer tracks them and updates them before this."""
        return []

    def init(self) -> None:
        """Called once the summarizer holds every stat: look the required ones up here."""

    def _get_stat(self, stat: _S) -> _S | None:
        if self._other_stats is None:
            raise RuntimeError(f"stat {self.name!r} is not part of a summarizer")
        return cast(Union[_S, None], self._other_stats.get(stat))

    def _required(self, stat: _S) -> _S:
        found = self._get_stat(stat)
        if found is None:
            raise RuntimeError(f"stat {self.name!r} needs {stat.name!r} in its summarizer")
        return found

    def _bound(self, stat: _S | None) -> _S:
        """A required stat found by ``init()``; an error when this stat was never bound."""
        if stat is None:
            raise RuntimeError(f"stat {self.name!r} is not part of a summarizer: use it through "
                               f"Summarizer([...])")
        return stat

    def update(self, x: Tensor) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not implement update()")

    def get(self) -> StatValue | None:
        raise NotImplementedError(f"{type(self).__name__} does not implement get()")

    def __hash__(self) -> int:
        return hash((type(self), frozenset(self.params.items())))

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Stat) and type(self) is type(other)
                and self.params == other.params)

    def __ne__(self, other: object) -> bool:
        return not self == other

    @property
    def name(self) -> str:
        """The key of this stat in a summary: the given name, or the class name in lower case
        followed by the parameters."""
        if self._name is not None:
            return self._name
        default = type(self).__name__.lower()
        return f"{default}({self.params})" if self.params else default

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class Count(Stat):
    """The number of updates (an int; None before the first)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.n: int | None = None

    def update(self, x: Tensor) -> None:
        self.n = (self.n or 0) + 1

    def get(self) -> int | None:
        return self.n


class Mean(Stat):
    """The elementwise mean. Floating inputs keep their dtype, integer inputs give float64."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.rolling_mean: Tensor | None = None
        self.previous: Tensor | None = None    # the mean before the last update
        self._count: Count | None = None

    def requires(self) -> list[Stat]:
        return [Count()]

    def init(self) -> None:
        self._count = self._required(Count())

    def update(self, x: Tensor) -> None:
        count = self._bound(self._count)
        if self.rolling_mean is None:
            self.previous = None
            self.rolling_mean = x.clone() if x.is_floating_point() else x.double()
            return
        n = count.get() or 1
        self.previous = self.rolling_mean
        self.rolling_mean = self.previous + (x - self.previous) / n

    def get(self) -> Tensor | None:
        return self.rolling_mean


class MSE(Stat):
    """The elementwise sum of squared deviations from the mean, sum_i (x_i - mean)**2 (Captum
    calls it MSE; divided by n - order it is Var)."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name=name)
        self.mse: Tensor | None = None
        self._mean: Mean | None = None

    def requires(self) -> list[Stat]:
        return [Mean()]

    def init(self) -> None:
        self._mean = self._required(Mean())

    def update(self, x: Tensor) -> None:
        stat = self._bound(self._mean)
        mean, previous = stat.get(), stat.previous
        if mean is None:
            return
        if previous is None or self.mse is None:
            self.mse = torch.zeros_like(mean)
        else:
            # Welford: (x - mean before) * (x - mean after), no sum of squares
            self.mse = self.mse + (x - previous) * (x - mean)

    def get(self) -> Tensor | None:
        return self.mse


class Var(Stat):
    """The elementwise variance MSE / (n - order), in float64: ``order=0`` the population
    variance, ``order=1`` the sample variance. Zeros (of the mean's dtype) while n <= order."""

    def __init__(self, name: str | None = None, order: int = 0) -> None:
        if name is None:
            name = {0: "variance", 1: "sample_variance"}.get(order, f"variance({order})")
        super().__init__(name=name, order=order)
        self.order = order
        self._mse: MSE | None = None
        self._count: Count | None = None

    def requires(self) -> list[Stat]:
        return [MSE(), Count()]

    def init(self) -> None:
        self._mse = self._required(MSE())
        self._count = self._required(Count())

    def update(self, x: Tensor) -> None:
        pass  # read from MSE and Count

    def get(self) -> Tensor | None:
        mse, n = self._bound(self._mse).get(), self._bound(self._count).get()
        if mse is None:
            return None
        if n is None or n <= self.order:
            return torch.zeros_like(mse)          # Captum's dtype: the mean's until n > order
        return mse.to(torch.float64) / (n - self.order)


class StdDev(Stat):
    """The elementwise standard deviation, the square root of ``Var(order)``."""

    def __init__(self, name: str | None = None, order: int = 0) -> None:
        if name is None:
            name = {0: "std_dev", 1: "sample_std_dev"}.get(order, f"std_dev({order})")
        super().__init__(name=name, order=order)
        self.order = order
        self._var: Var | None = None

    def requires(self) -> list[Stat]:
        return [Var(order=self.order)]

    def init(self) -> None:
        self._var = self._required(Var(order=self.order))

    def update(self, x: Tensor) -> None:
        pass  # read from Var

    def get(self) -> Tensor | None:
        var = self._bound(self._var).get()
        return None if var is None else var.sqrt()


class GeneralAccumFn(Stat):
    """``result = fn(result, x)`` at each update; the first update's tensor starts it."""

    def __init__(self, fn: Callable[[Tensor, Tensor], Tensor], name: str | None = None) -> None:
        super().__init__(name=name)
        if not callable(fn):
            raise TypeError(f"the accumulating function must be callable, got {type(fn).__name__}")
        self.fn = fn
        self.result: Tensor | None = None

    def update(self, x: Tensor) -> None:
        self.result = x.clone() if self.result is None else self.fn(self.result, x)

    def get(self) -> Tensor | None:
        return self.result


class Min(GeneralAccumFn):
    """The elementwise minimum (or ``min_fn``'s accumulation)."""

    def __init__(self, name: str | None = None,
                 min_fn: Callable[[Tensor, Tensor], Tensor] = torch.min) -> None:
        super().__init__(fn=min_fn, name=name)


class Max(GeneralAccumFn):
    """The elementwise maximum (or ``max_fn``'s accumulation)."""

    def __init__(self, name: str | None = None,
                 max_fn: Callable[[Tensor, Tensor], Tensor] = torch.max) -> None:
        super().__init__(fn=max_fn, name=name)


class Sum(GeneralAccumFn):
    """The elementwise sum (or ``add_fn``'s accumulation)."""

    def __init__(self, name: str | None = None,
                 add_fn: Callable[[Tensor, Tensor], Tensor] = torch.add) -> None:
        super().__init__(fn=add_fn, name=name)


def CommonStats() -> list[Stat]:  # noqa: N802  (Captum's name)
    """Mean, sample variance, sample standard deviation, min and max."""
    return [Mean(), Var(order=1), StdDev(order=1), Min(), Max()]
