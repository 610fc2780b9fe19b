"""A causal LM's key/value cache, where the model offers one (Hugging Face's convention).

A model offers a cache when its ``forward`` takes ``past_key_values`` and ``use_cache``, or its
``config.use_cache`` is true (Hugging Face's models). Such a model, called with
``use_cache=True``, returns ``.past_key_values``: the keys and values of the tokens it has
seen, which a later call continues from (``model(more_ids, past_key_values=past)`` gives the
logits of ``more_ids`` only). The engine never builds a cache itself: it keeps the one the model
returned, and only expands it over a batch.

``SharedPrefix`` is the prompt prefix every perturbed prompt of one attribution starts with
(the tokens before the first one any feature can change), run through the model once; its cache
is expanded over each batch of perturbed prompts, which then run only their own suffix.
"""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn


def offers_cache(model: nn.Module) -> bool:
    """Whether ``model`` takes and returns a key/value cache (see the module docstring)."""
    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        params = {}   # type: ignore[assignment]
    if "past_key_values" in params and "use_cache" in params:
        return True
    return bool(getattr(getattr(model, "config", None), "use_cache", False))


def expandable(past: Any) -> bool:
    """Whether ``expand_cache`` knows the form of ``past`` (a cache for one row)."""
    if isinstance(past, Tensor):
        return past.dim() > 0 and past.size(0) == 1
    if isinstance(past, (tuple, list)):
        return len(past) > 0 and all(expandable(p) for p in past)
    return callable(getattr(past, "batch_repeat_interleave", None))


def expand_cache(past: Any, batch: int) -> Any:
    """A cache computed for one row, for ``batch`` rows; ``None`` for a cache of unknown form.

    Nested tuples or lists of tensors ``(1, ...)`` (Hugging Face's legacy form: per layer
    ``(key, value)``, each ``(1, heads, n_past, head_dim)``) become views ``(batch, ...)``. A
    cache object with ``batch_repeat_interleave`` (Hugging Face's ``DynamicCache``, which the
    model extends in place) is copied first, so that ``past`` stays reusable.
    """
    if isinstance(past, Tensor):
        return past.expand(batch, *past.shape[1:]) if past.size(0) == 1 else None
    if isinstance(past, (tuple, list)):
        parts = [expand_cache(p, batch) for p in past]
        return None if not parts or any(p is None for p in parts) else type(past)(parts)
    if callable(getattr(past, "batch_repeat_interleave", None)):
        mine = copy.deepcopy(past)
        if batch > 1:
            mine.batch_repeat_interleave(batch)
        return mine
    return None


@dataclass(frozen=True)
class SharedPrefix:
    """Tokens ``ids`` ``(1, n)`` every perturbed prompt starts with, and the model's cache of
    them (batch 1)."""

    ids: Tensor
    past: Any

    @property
    def length(self) -> int:
        return self.ids.size(1)

    def covers(self, ids: Tensor) -> bool:
        """Whether every row of ``ids`` ``(batch, n_prompt)`` starts with the prefix and has at
        least one token after it (whose logits predict the answer's first token)."""
        n = self.length
        return ids.size(1) > n and bool((ids[:, :n] == self.ids.to(ids.device)).all())

    def past_for(self, batch: int) -> Any:
        """The prefix's cache for ``batch`` rows (``None``: its form is unknown)."""
        return expand_cache(self.past, batch)


def common_prefix(prompts: list[Tensor]) -> int:
    """Length of the longest token prefix shared by ``prompts`` (each ``(1, n_i)``), at most
    ``min(n_i) - 1`` so that every prompt keeps a token of its own."""
    shortest = min(p.size(1) for p in prompts)
    first = prompts[0][0, :shortest]                                   # (shortest,)
    n = 0
    while n < shortest - 1 and all(bool(p[0, n] == first[n]) for p in prompts[1:]):
        n += 1
    return n


def shared_prefix(model: nn.Module, prompts: list[Tensor]) -> SharedPrefix | None:
    """The common prefix of ``prompts`` (each ``(1, n_i)``) with its cache, from one forward;
    ``None`` when they share no token or the model's cache cannot be expanded over a batch."""
    n = common_prefix(prompts)
    if n == 0:
        return None
    ids = prompts[0][:, :n]                                            # (1, n)
    out = model(input_ids=ids, attention_mask=ids.new_ones(ids.shape), use_cache=True)
    past = getattr(out, "past_key_values", None)
    if not expandable(past):
        return None
    return SharedPrefix(ids=ids, past=past)
