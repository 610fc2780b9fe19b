"""Greedy generation for all the prompts of a batch at once, on a causal LM with Hugging Face's
calling convention (``model(input_ids=..., attention_mask=...).logits``).

Prompts of different lengths share one forward pass per step: each row is padded on the right,
and its next token is read at its own last real position. That is exact for a causal LM, whose
logits at position ``i`` depend on tokens ``<= i`` only: a row's pads come after every position
it reads. The ``attention_mask`` (1 on real tokens, 0 on pads; Hugging Face's convention) thus
changes nothing at the positions read (a causal model already masks later tokens; the bundled
TinyCausalLM ignores it); it is passed, to a forward that takes one, so that a model using it
sees the usual inputs. With pads on the right no query is left without a key to attend
(position 0 is real), so a mask cannot produce NaN rows, and positions stay 0, 1, ... as the
model counts them without a mask.

Which rows share a forward pass, and whether the model's key/value cache is used, was measured
on tinylm (torch 1 thread, 2026-12-02), where a forward is mostly per-call overhead (1 row of 12
tokens 1.1 ms, 8 rows of 22 tokens 2.8 ms, a cached one-token step of 8 rows 1.3 ms):
- prompts of several lengths (``_padded``): every step reruns each row's whole sequence, padded,
  without a cache (a cache needs the rows of a forward to share their length). Grouping
  equal-length prompts and decoding each group on its cache costs one forward per group and
  step: on the 8 example prompts (4 lengths) 1.7-2.1x the time of one padded forward a step.
- prompts of one length, a batch of one included (``_lockstep``): one forward of the prompts,
  then one-token steps on the cache the model returns (as the model's own ``generate`` does):
  0.6-0.8x the time of padded full recomputes (8 rows, 8 new tokens; 1 row, 2 new tokens).

A row ends after the stop token, after its own ``n_new`` tokens (within the model's context:
the caller's ``n_new`` leaves room), or when its deadline has passed (checked before every
step, for every row: that row ends with ``DeadlineExceeded``, the others go on). Every token's
log-probability comes from the step that chose it (float64 log-softmax of that position's
logits), so no extra forward pass scores the generation afterwards.
"""

from __future__ import annotations

import functools
import inspect
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .errors import DeadlineExceeded

log = logging.getLogger("service.runtime.generate")


@dataclass(frozen=True)
class Row:
    """One prompt to continue."""

    prompt_ids: Tensor        # (n_prompt,) long, on the model's device
    n_new: int                # at most this many new tokens
    expires_at: float         # time.monotonic() reading at which the request's deadline passes


@dataclass(frozen=True)
class Continuation:
    """A row's greedy continuation (the stop token included, if generated)."""

    tokens: Tensor            # (n_generated,) long
    log_probs: Tensor         # (n_generated,) float64, each token's log-probability


Outcome = Continuation | Exception


@torch.no_grad()
def greedy(model: nn.Module, rows: Sequence[Row], stop_id: int | None) -> list[Outcome]:
    """Every row's continuation, or ``DeadlineExceeded`` for a row whose deadline passed;
    one forward pass per step for all the rows still going. Raises what the model raises."""
    if not rows:
        return []
    progress = _Progress(rows, stop_id)
    if len({r.prompt_ids.numel() for r in rows}) == 1 and _takes(model, "past_key_values"):
        _lockstep(model, progress)
    _padded(model, progress)            # the rest, if the model gave no cache
    return progress.outcomes()


class _Progress:
    """The rows' tokens so far, which rows are still going, and the finished rows' outcomes."""

    def __init__(self, rows: Sequence[Row], stop_id: int | None) -> None:
        self.rows, self.stop_id = rows, stop_id
        self.device = rows[0].prompt_ids.device
        self.tokens: list[list[int]] = [[] for _ in rows]
        self.log_probs: list[list[float]] = [[] for _ in rows]
        self.done: list[Outcome | None] = [None] * len(rows)
        self.active = [i for i, r in enumerate(rows) if r.n_new > 0]

    def expire(self) -> None:
        """Ends the rows whose deadline has passed (called before every step)."""
        now = time.monotonic()
        for i in self.active:
            if now > self.rows[i].expires_at:
                self.done[i] = DeadlineExceeded("deadline_ms", "passed while generating")
        self.active = [i for i in self.active if self.done[i] is None]

    def step(self, last: Tensor) -> Tensor:
        """Appends each active row's greedy token, given its next-token logits ``last``
        ``(n_active, vocab)``; ends the rows at their stop token or their ``n_new``. Returns
        the tokens ``(n_active,)``."""
        nxt = last.argmax(-1)                                          # (n_active,)
        lp = torch.log_softmax(last.double(), dim=-1).gather(1, nxt[:, None])[:, 0]
        for i, t, p in zip(self.active, nxt.tolist(), lp.tolist()):
            self.tokens[i].append(t)
            self.log_probs[i].append(p)
            if t == self.stop_id or len(self.tokens[i]) >= self.rows[i].n_new:
                self.done[i] = self._continuation(i)
        self.active = [i for i in self.active if self.done[i] is None]
        return nxt

    def _continuation(self, i: int) -> Continuation:
        return Continuation(
            torch.tensor(self.tokens[i], dtype=torch.long, device=self.device),
            torch.tensor(self.log_probs[i], dtype=torch.float64, device=self.device))

    def outcomes(self) -> list[Outcome]:
        return [self._continuation(i) if o is None else o for i, o in enumerate(self.done)]


def _lockstep(model: nn.Module, progress: _Progress) -> None:
    """Prompts of one length: decoding on the model's key/value cache, one new token a row a
    step; rows that have ended stay in the batch (their tokens are ignored), so the cache is
    passed back as the model gave it. Returns early, leaving the rest to ``_padded``, if the
    model gives no cache."""
    rows, device = progress.rows, progress.device
    n = len(rows)
    x = torch.stack([r.prompt_ids for r in rows])                      # (n, n_prompt)
    past = None
    forward: Any = model
    while True:
        progress.expire()
        if not progress.active:
            return
        out = forward(input_ids=x, past_key_values=past, use_cache=True)
        last = out.logits[:, -1]                                        # (n, vocab)
        if len(progress.active) == n:
            x = progress.step(last)[:, None]                            # (n, 1)
        else:
            index = torch.tensor(progress.active, device=device)       # (n_active,)
            x = torch.zeros(n, 1, dtype=torch.long, device=device)
            x[index, 0] = progress.step(last[index])
        past = getattr(out, "past_key_values", None)
        if past is None:
            return


def _padded(model: nn.Module, progress: _Progress) -> None:
    """Prompts of several lengths: every step reruns each active row's whole sequence, padded
    on the right ``(n_active, longest)``, and reads its next token at its last real position."""
    rows, device = progress.rows, progress.device
    if not progress.active:
        return
    n_prompt = [r.prompt_ids.numel() for r in rows]
    width = max(p + r.n_new for p, r in zip(n_prompt, rows))
    ids = torch.zeros(len(rows), width, dtype=torch.long, device=device)   # (n, width)
    for i, r in enumerate(rows):
        ids[i, :n_prompt[i]] = r.prompt_ids
        ids[i, n_prompt[i]:n_prompt[i] + len(progress.tokens[i])] = torch.tensor(
            progress.tokens[i], dtype=torch.long)
    positions = torch.arange(width, device=device)                    # (width,)
    forward: Any = model
    masked = _takes(model, "attention_mask")
    while True:
        progress.expire()
        active = progress.active
        if not active:
            return
        lens = [n_prompt[i] + len(progress.tokens[i]) for i in active]
        index = torch.tensor(active, device=device)                   # (n_active,)
        lens_t = torch.tensor(lens, device=device)                    # (n_active,)
        x = ids[index, :max(lens)]                                    # (n_active, longest)
        mask = (positions[:x.size(1)] < lens_t[:, None]).long()       # (n_active, longest)
        logits = (forward(input_ids=x, attention_mask=mask) if masked    # (n_active, longest, V)
                  else forward(input_ids=x)).logits
        ids[index, lens_t] = progress.step(
            logits[torch.arange(len(active), device=device), lens_t - 1])


def _takes(model: nn.Module, name: str) -> bool:
    """Whether the model's forward takes the keyword ``name`` (or any keyword)."""
    return _forward_takes(type(model).forward, name)


@functools.lru_cache(maxsize=64)
def _forward_takes(forward: Callable[..., Any], name: str) -> bool:  # a signature: ~0.1 ms
    try:
        params = inspect.signature(forward).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def greedy_isolated(model: nn.Module, rows: Sequence[Row], stop_id: int | None) -> list[Outcome]:
    """``greedy`` for all the rows; if the model raises there, each row again on its own, so
    that only a row the model fails on ends with the model's exception."""
    try:
        return greedy(model, rows, stop_id)
    except Exception as e:
        if len(rows) == 1:
            return [e]
        log.warning("generation for %d prompts failed (%s: %s); generating prompt by prompt",
                    len(rows), type(e).__name__, e)
    outcomes: list[Outcome] = []
    for r in rows:
        try:
            outcomes.extend(greedy(model, [r], stop_id))
        except Exception as e:
            outcomes.append(e)
    return outcomes


__all__ = ["Continuation", "Row", "greedy", "greedy_isolated"]
