"""``ProductBaselines``: sample one baseline per feature from the Cartesian product (Captum 0.9)."""

from __future__ import annotations

import random
from typing import Any


class ProductBaselines:
    """A callable that returns one random choice from each feature's list of baselines.

    ``baseline_values`` is a list of lists (one list of choices per feature, returns a list) or
    a dict of lists keyed by feature name (returns a dict). A tuple key groups features whose
    baselines go together; its choices are tuples, unpacked into the keys of the tuple.
    Pass it as ``TextTemplateInput(..., baselines=ProductBaselines(...))``.
    """

    def __init__(self, baseline_values: list[list[Any]] | dict[Any, list[Any]]) -> None:
        if isinstance(baseline_values, dict):
            self.dict_keys: list[Any] = list(baseline_values)
            baseline_values = [baseline_values[k] for k in self.dict_keys]
        else:
            self.dict_keys = []
        self.baseline_values = baseline_values

    def sample(self) -> list[Any] | dict[str, Any]:
        chosen = [random.choice(choices) for choices in self.baseline_values]
        if not self.dict_keys:
            return chosen
        out: dict[str, Any] = {}
        for key, value in zip(self.dict_keys, chosen):
            if isinstance(key, tuple):
                out.update(zip(key, value))
            else:
                out[key] = value
        return out

    def __call__(self) -> list[Any] | dict[str, Any]:
        return self.sample()
