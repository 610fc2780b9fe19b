"""A causal LM's key/value cache, where the model offers one (Hugging Face's convention).

A model offers a cache when its ``forward`` takes ``past_key_values`` and ``use_cache``, or its
``config.use_cache`` is true (Hugging Face's models). Such a model, called with
``use_cache=True``, returns ``.past_key_values``: the keys and values of the tokens it has
seen, which a later call continues from (``model(more_ids, past_key_values=past)`` gives the
logits of ``more_ids`` only). The engine never builds a cache itself: it keeps the one the model
returned, and only expands it over a batch.

``SharedPrefix`` is the prompt prefix every perturbed prompt of one attribution starts with
(the tokens before the first one any feature can change), cached once per attribution; its cache
is expanded over each batch of perturbed prompts, which then run only their own suffix.
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import torch
from torch import Tensor, nn


def offers_cache(model: nn.Module) -> bool:
    """Whether ``model`` takes and returns a key/value cache (see the module docstring)."""
    forward = getattr(model, "forward", None)
    try:
        params = inspect.signature(forward).parameters if callable(forward) else {}
    except (TypeError, ValueError):
        params = {}
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


def crop_cache(past: Any, n_total: int, length: int) -> Any:
    """From a cache of ``n_total`` tokens, the first row's cache of the first ``length``;
    ``None`` where the form does not say which dimension is the sequence.

    Tensors in nested tuples or lists are cut along dim -2 only when that dim, and not dim -1,
    has ``n_total`` entries (Hugging Face's legacy ``(batch, heads, seq, head_dim)``); a cache
    object with ``crop`` and ``batch_select_indices`` (``DynamicCache``) is copied and cut.
    """
    if isinstance(past, Tensor):
        if past.dim() >= 3 and past.size(-2) == n_total and past.size(-1) != n_total:
            return past[:1, ..., :length, :]
        return None
    if isinstance(past, (tuple, list)):
        parts = [crop_cache(p, n_total, length) for p in past]
        return None if not parts or any(p is None for p in parts) else type(past)(parts)
    if callable(getattr(past, "crop", None)) and callable(
            getattr(past, "batch_select_indices", None)):
        mine = copy.deepcopy(past)
        mine.crop(length)
        mine.batch_select_indices(torch.tensor([0]))
        return mine
    return None


class SharedPrefix:
    """Tokens ``ids`` ``(1, n)`` every perturbed prompt of one attribution starts with, and the
    model's cache of them (batch 1), obtained once.

    The first batch of prompts that starts with the prefix runs whole with ``use_cache`` and
    hands its cache to ``keep``, which cuts the prefix out of it when the cache's form allows
    (``crop_cache``: no extra forward); otherwise the prefix runs on its own, once, when a later
    batch first asks ``past_for``.
    """

    def __init__(self, ids: Tensor) -> None:
        self.ids = ids                                                 # (1, n)
        self.past: Any = None
        self._kept = False        # the first covered batch has handed over its cache
        self._usable = True       # False: the model's cache cannot be expanded over a batch

    @property
    def length(self) -> int:
        return self.ids.size(1)

    def covers(self, ids: Tensor) -> bool:
        """Whether every row of ``ids`` ``(batch, n_prompt)`` starts with the prefix and has at
        least one token after it (whose logits predict the answer's first token)."""
        n = self.length
        return (self._usable and ids.size(1) > n
                and bool((ids[:, :n] == self.ids.to(ids.device)).all()))

    def wants_cache(self) -> bool:
        """Whether the next covered batch should run whole and ``keep`` its cache."""
        return not self._kept

    def keep(self, past: Any, n_total: int) -> None:
        """The cache of a covered batch of ``n_total`` tokens (its rows start with the prefix)."""
        self._kept = True
        if past is not None:
            self.past = crop_cache(past, n_total, self.length)

    def past_for(self, model: nn.Module, batch: int) -> Any:
        """The prefix's cache for ``batch`` rows; ``None`` if the model's cache is of a form we
        cannot expand."""
        if self.past is None and self._usable:
            out = model(input_ids=self.ids, attention_mask=self.ids.new_ones(self.ids.shape),
                        use_cache=True)
            self.past = getattr(out, "past_key_values", None)
            self._usable = expandable(self.past)
        return expand_cache(self.past, batch) if self._usable else None


def common_prefix(prompts: list[Tensor]) -> int:
    """Length of the longest token prefix shared by ``prompts`` (each ``(1, n_i)``), at most
    ``min(n_i) - 1`` so that every prompt keeps a token of its own."""
    shortest = min(p.size(1) for p in prompts)
    first = prompts[0][0, :shortest]                                   # (shortest,)
    n = 0
    while n < shortest - 1 and all(bool(p[0, n] == first[n]) for p in prompts[1:]):
        n += 1
    return n


def shared_prefix(prompts: list[Tensor]) -> SharedPrefix | None:
    """The common prefix of ``prompts`` (each ``(1, n_i)``), ``None`` when they share no token
    (its cache is obtained later, see ``SharedPrefix``)."""
    n = common_prefix(prompts)
    return SharedPrefix(prompts[0][:, :n]) if n else None
