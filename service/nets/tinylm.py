"""A tiny decoder-only transformer LM with the Hugging Face calling convention (no transformers).

``TinyCausalLM(input_ids)`` returns a ``CausalLMOutput`` whose ``.logits`` are
``(batch, seq, vocab)``; ``generate(input_ids, max_new_tokens=..., eos_token_id=...)`` decodes
greedily. The token embedding is ``self.emb`` (the layer LLMGradientAttribution attributes
through); positions have their own embedding ``self.pos``, so ``emb`` runs once per forward.

Key/value cache, Hugging Face's legacy convention: ``model(ids, use_cache=True)`` also returns
``past_key_values``, one ``(key, value)`` pair per layer, each ``(batch, heads, n_past,
head_dim)``; ``model(more_ids, past_key_values=past)`` continues after those ``n_past`` tokens
(positions offset by ``n_past``) and gives the logits of ``more_ids`` only. Without a cache the
computation is exactly the one the bundled weights were trained with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

# per layer (key, value), each (batch, heads, n_past, head_dim)
KeyValues = tuple[tuple[Tensor, Tensor], ...]


@dataclass
class CausalLMOutput:
    logits: Tensor                                                   # (batch, seq, vocab)
    past_key_values: KeyValues | None = None                         # with use_cache=True


class _Block(nn.Module):
    """Pre-norm causal self-attention and a GELU MLP, each with a residual."""

    def __init__(self, dim: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x: Tensor, past: tuple[Tensor, Tensor] | None = None
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        """``x`` ``(batch, seq, dim)`` after ``past`` (this layer's cached key and value, each
        ``(batch, heads, n_past, head_dim)``) -> the new ``x`` and the key/value of all
        ``n_past + seq`` positions."""
        b, s, d = x.shape                                            # (batch, seq, dim)
        h = self.n_heads
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, h, d // h).permute(2, 0, 3, 1, 4)
        n_past = 0
        if past is not None:          # k, v: (batch, heads, n_past + seq, head_dim)
            n_past = past[0].size(-2)
            k, v = torch.cat([past[0], k], dim=-2), torch.cat([past[1], v], dim=-2)
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // h)  # (batch, heads, seq, n_past + seq)
        causal = torch.ones(s, n_past + s, dtype=torch.bool, device=x.device).triu(1 + n_past)
        att = scores.masked_fill(causal, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, s, d)               # (batch, seq, dim)
        x = x + self.proj(y)
        return x + self.mlp(self.ln2(x)), (k, v)


class TinyCausalLM(nn.Module):
    """``vocab_size`` tokens, ``n_layers`` blocks of width ``dim``, contexts of ``max_len``."""

    def __init__(self, vocab_size: int, dim: int = 64, n_layers: int = 2, n_heads: int = 4,
                 max_len: int = 32) -> None:
        super().__init__()
        self.max_len = max_len
        self.emb = nn.Embedding(vocab_size, dim)
        self.pos = nn.Embedding(max_len, dim)
        self.blocks = nn.ModuleList(_Block(dim, n_heads) for _ in range(n_layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None,
                past_key_values: KeyValues | None = None, use_cache: bool = False,
                **kwargs: Any) -> CausalLMOutput:
        """``input_ids`` ``(batch, seq)`` -> logits ``(batch, seq, vocab)``, after the
        ``past_key_values`` of earlier tokens if given (their batch must match); with
        ``use_cache`` also the key/values of all tokens so far. ``attention_mask`` is accepted
        for the Hugging Face convention; every position is attended (no padding)."""
        n_past = 0 if past_key_values is None else past_key_values[0][0].size(-2)
        seq = input_ids.size(1)
        if n_past + seq > self.max_len:
            raise ValueError(f"input_ids has {seq} tokens after {n_past} cached ones, the "
                             f"model's context is {self.max_len}")
        positions = torch.arange(n_past, n_past + seq, device=input_ids.device)
        x = self.emb(input_ids) + self.pos(positions)                # (batch, seq, dim)
        cache = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past_key_values is None else past_key_values[i])
            cache.append(kv)
        return CausalLMOutput(logits=self.head(self.ln(x)),
                              past_key_values=tuple(cache) if use_cache else None)

    @torch.no_grad()
    def generate(self, input_ids: Tensor, max_new_tokens: int = 25,
                 eos_token_id: int | None = None, use_cache: bool = True,
                 **kwargs: Any) -> Tensor:
        """Greedy decoding: ``(batch, seq)`` -> ``(batch, seq + n_new)``, at most
        ``max_new_tokens`` new tokens and no more than the context holds; stops once every row
        has produced ``eos_token_id`` (sampling arguments such as ``do_sample`` are ignored).
        With ``use_cache`` each step runs the new token only, on the cache of the ones before;
        without, each step reruns the whole sequence."""
        ids = input_ids
        done = torch.zeros(ids.size(0), dtype=torch.bool, device=ids.device)
        past: KeyValues | None = None
        for _ in range(max(0, min(max_new_tokens, self.max_len - ids.size(1)))):
            if use_cache:
                out = self(ids if past is None else ids[:, -1:], past_key_values=past,
                           use_cache=True)
                past = out.past_key_values
            else:
                out = self(ids)
            nxt = out.logits[:, -1].argmax(-1)                       # (batch,)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
            if eos_token_id is not None:
                done |= nxt == eos_token_id
                if bool(done.all()):
                    break
        return ids
