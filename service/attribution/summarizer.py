"""Summaries of a stream of attributions (Captum's ``Summarizer``): feed tensors, or tuples of
tensors, one update at a time, and read every requested statistic elementwise.

    summ = Summarizer([Mean(), Var(order=1)])
    for batch in loader:
        summ.update(ig.attribute(batch))        # each update is one sample of the stream
    summ.summary["mean"], summ.summary["sample_variance"]
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor

from ._common import AttributionInputError
from .stat import Stat, StatValue

Summary = dict[str, StatValue | None]


def plan_stats(stats: list[Stat]) -> tuple[list[Stat], list[int]]:
    """Every stat to track, each after the stats it requires, and the positions in that list
    of the requested ones (duplicates dropped, first occurrence kept)."""
    if not isinstance(stats, (list, tuple)) or not all(isinstance(s, Stat) for s in stats):
        raise TypeError("`stats` must be a list of Stat objects (Mean(), Var(order=1), ...)")
    order: list[Stat] = []
    placed: set[Stat] = set()

    def place(stat: Stat, path: tuple[Stat, ...]) -> None:
        if stat in placed:
            return
        if stat in path:
            raise ValueError(f"stats require each other in a cycle: {[s.name for s in path]}")
        for dep in stat.requires():
            place(dep, path + (stat,))
        placed.add(stat)
        order.append(stat)

    for stat in stats:
        place(stat, ())
    position = {stat: i for i, stat in enumerate(order)}
    requested = list(dict.fromkeys(stats))
    return order, [position[s] for s in requested]


class SummarizerSingleTensor:
    """The statistics of one stream of same-shaped tensors.

    ``stats`` must list each stat after the stats it requires (``Summarizer`` builds that
    order); ``summary_stats_indices`` picks the ones ``summary`` shows.
    """

    def __init__(self, stats: list[Stat], summary_stats_indices: list[int]) -> None:
        seen: set[Stat] = set()
        for stat in stats:
            missing = [d.name for d in stat.requires() if d not in seen]
            if missing:
                raise ValueError(f"stat {stat.name!r} needs {missing} listed before it in `stats`")
            seen.add(stat)
        self._stats = list(stats)
        self._stat_to_stat = {stat: stat for stat in self._stats}
        self._summary_stats = [self._stats[i] for i in summary_stats_indices]
        self._shape: torch.Size | None = None
        for stat in self._stats:
            stat._other_stats = self
            stat.init()

    def update(self, x: Tensor) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"a summarized value must be a tensor, got {type(x).__name__}")
        if self._shape is None:
            self._shape = x.shape
        elif x.shape != self._shape:
            raise ValueError(f"summarized tensors must keep one shape: got {tuple(x.shape)} after "
                             f"{tuple(self._shape)}")
        for stat in self._stats:
            stat.update(x)

    def get(self, stat: Stat) -> Stat | None:
        """This summarizer's stat equal to ``stat`` (same class and parameters), or None."""
        return self._stat_to_stat.get(stat)

    @property
    def summary(self) -> Summary:
        return {stat.name: stat.get() for stat in self._summary_stats}


class Summarizer:
    """Tracks ``stats`` for a tensor, or for each tensor of a tuple, across updates."""

    def __init__(self, stats: list[Stat]) -> None:
        self._stats, self._summary_stats_indicies = plan_stats(stats)
        self._summarizers: list[SummarizerSingleTensor] = []
        self._is_inputs_tuple: bool | None = None

    def update(self, x: float | Tensor | tuple[float | Tensor, ...]) -> None:
        """Adds one sample: a tensor (or number), or a tuple of them, the same form every time."""
        was_tuple = isinstance(x, tuple)
        if self._is_inputs_tuple is None:
            self._is_inputs_tuple = was_tuple
        elif was_tuple != self._is_inputs_tuple:
            raise AttributionInputError(
                f"`x` must keep one form: this summarizer was fed "
                f"{'tuples' if self._is_inputs_tuple else 'single tensors'}, got {type(x).__name__}")
        items = x if isinstance(x, tuple) else (x,)
        if self._summarizers and len(items) != len(self._summarizers):
            raise AttributionInputError(
                f"`x` must keep one length: got {len(items)} tensors after {len(self._summarizers)}")
        if not self._summarizers:
            # each tensor gets its own copies of the stats (shapes may differ between tensors)
            self._summarizers = [
                SummarizerSingleTensor(copy.deepcopy(self._stats), self._summary_stats_indicies)
                for _ in items]
        for summ, item in zip(self._summarizers, items):
            if not isinstance(item, Tensor):
                if isinstance(item, bool) or not isinstance(item, (int, float)):
                    raise TypeError(f"`x` must hold tensors or numbers, got {type(item).__name__}")
                item = torch.tensor(item, dtype=torch.float)
            summ.update(item)

    @property
    def summary(self) -> Summary | list[Summary] | None:
        """Stat name -> value; a list of those for tuple inputs; None before any update."""
        if not self._summarizers:
            return None
        summaries = [s.summary for s in self._summarizers]
        return summaries if self._is_inputs_tuple else summaries[0]
