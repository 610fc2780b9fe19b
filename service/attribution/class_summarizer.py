"""Summaries per class (Captum's ``ClassSummarizer``): each example of a labelled batch updates
its class's summary and the summary of all classes."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable
from typing import Any, Generic, TypeVar

from torch import Tensor

from ._common import AttributionInputError, as_tuple
from .stat import Stat
from .summarizer import Summarizer, Summary

KeyType = TypeVar("KeyType", bound=Hashable)


class ClassSummarizer(Summarizer, Generic[KeyType]):
    """A ``Summarizer`` of every example, plus one per label in ``summaries``.

    Labels are any dict keys; a label tensor counts by value (``tensor([3, 3])`` is class 3
    twice).
    """

    def __init__(self, stats: list[Stat]) -> None:
        super().__init__(stats)
        self._class_stats = list(stats)
        self.summaries: defaultdict[Any, Summarizer] = defaultdict(
            lambda: Summarizer(stats=self._class_stats))

    def update(self, x: Tensor | tuple[Tensor, ...],  # type: ignore[override]
               labels: Any = None) -> None:
        """Adds a batch ``x`` (B, ...) (or a tuple of them) whose examples have ``labels``: one
        label for all, or one per example (a list or a 1-D tensor of B). With no labels, ``x``
        as a whole is one sample of the overall summary."""
        if labels is None:
            super().update(x)
            return
        xs = as_tuple(x, "x")
        per_example = _label_list(labels)
        if len(per_example) > 1:
            for i, t in enumerate(xs):
                if t.dim() == 0 or t.shape[0] != len(per_example):
                    raise AttributionInputError(
                        f"`labels` has {len(per_example)} entries but `x`"
                        f"{f'[{i}]' if len(xs) > 1 else ''} has batch size "
                        f"{t.shape[0] if t.dim() else 'none (a scalar)'}; give one label or one "
                        f"per example")
        if xs[0].dim() == 0:
            raise AttributionInputError("`x` must have a batch dimension when `labels` is given")
        for b in range(xs[0].shape[0]):
            example = tuple(t[b] for t in xs)
            label = per_example[0] if len(per_example) == 1 else per_example[b]
            self.summaries[label].update(example)
            super().update(example)

    @property
    def class_summaries(self) -> dict[Any, Summary | list[Summary] | None]:
        """Label -> that class's summary."""
        return {key: summ.summary for key, summ in self.summaries.items()}


def _label_list(labels: Any) -> list:
    """One label, or a list / tensor of labels, as a list of dict keys."""
    if isinstance(labels, Tensor):
        if labels.dim() > 1 or labels.numel() == 0:
            raise AttributionInputError(f"`labels` tensor must be one label or 1-D with one per "
                                        f"example, got shape {tuple(labels.shape)}")
        values = labels.tolist()
        return values if isinstance(values, list) else [values]
    if isinstance(labels, list):
        if not labels:
            raise AttributionInputError("`labels` is an empty list")
        return labels
    return [labels]
