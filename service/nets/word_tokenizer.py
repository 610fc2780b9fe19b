"""A word-level tokenizer with the Hugging Face tokenizer protocol (no transformers).

Text is split on whitespace; each word is one token, unknown words map to ``unk_token``. With
``add_special_tokens`` (the default, as in Hugging Face) ``bos_token`` is prepended. The
vocabulary is a list of words (its JSON form is ``{"words": [...], "bos_token": ..., ...}``, the
file a text model's archive carries).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


class WordTokenizer:
    def __init__(self, words: Sequence[str], bos_token: str = "<s>", unk_token: str = "<unk>",
                 pad_token: str = "<pad>") -> None:
        self.words = list(words)
        if len(set(self.words)) != len(self.words):
            raise ValueError("the vocabulary repeats a word")
        self.ids = {w: i for i, w in enumerate(self.words)}
        for name, token in (("bos_token", bos_token), ("unk_token", unk_token),
                            ("pad_token", pad_token)):
            if token not in self.ids:
                raise ValueError(f"{name} {token!r} is not in the vocabulary")
        self.bos_token, self.unk_token, self.pad_token = bos_token, unk_token, pad_token
        self.bos_token_id, self.unk_token_id = self.ids[bos_token], self.ids[unk_token]
        self.pad_token_id = self.ids[pad_token]
        self.all_special_ids = [self.bos_token_id, self.unk_token_id, self.pad_token_id]

    # ---- the vocabulary file

    def to_json(self) -> dict[str, Any]:
        return {"words": self.words, "bos_token": self.bos_token, "unk_token": self.unk_token,
                "pad_token": self.pad_token}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WordTokenizer:
        return cls(data["words"], data["bos_token"], data["unk_token"], data["pad_token"])

    @classmethod
    def load(cls, path: str | pathlib.Path) -> WordTokenizer:
        return cls.from_json(json.loads(pathlib.Path(path).read_text()))

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def __len__(self) -> int:
        return len(self.words)

    # ---- Hugging Face's protocol

    def encode(self, text: str, add_special_tokens: bool = True,
               return_tensors: str | None = None) -> Any:
        """Token ids: a list, or ``(1, n_tokens)`` with ``return_tensors="pt"``."""
        ids = [self.ids.get(w, self.unk_token_id) for w in text.split()]
        if add_special_tokens:
            ids = [self.bos_token_id, *ids]
        return torch.tensor([ids], dtype=torch.long) if return_tensors == "pt" else ids

    def decode(self, token_ids: Tensor | Sequence[int], skip_special_tokens: bool = False) -> str:
        ids = torch.as_tensor(token_ids).reshape(-1).tolist()
        skip = set(self.all_special_ids) if skip_special_tokens else set()
        return " ".join(self.words[i] for i in ids if i not in skip)

    def convert_ids_to_tokens(self, token_ids: int | Sequence[int]) -> Any:
        if isinstance(token_ids, int):
            return self.words[token_ids]
        return [self.words[int(i)] for i in token_ids]

    def convert_tokens_to_ids(self, tokens: str | Sequence[str]) -> Any:
        if isinstance(tokens, str):
            return self.ids.get(tokens, self.unk_token_id)
        return [self.ids.get(t, self.unk_token_id) for t in tokens]

    def __call__(self, text: str, add_special_tokens: bool = True,
                 return_offsets_mapping: bool = False) -> dict[str, Any]:
        """``{"input_ids": [...]}``, plus ``offset_mapping`` (a ``(start, end)`` character span
        per token; ``(0, 0)`` for the special token) when asked."""
        out: dict[str, Any] = {"input_ids": self.encode(text, add_special_tokens)}
        if return_offsets_mapping:
            offsets = [(0, 0)] if add_special_tokens else []
            pos = 0
            for word in text.split():
                start = text.index(word, pos)
                offsets.append((start, start + len(word)))
                pos = start + len(word)
            out["offset_mapping"] = offsets
        return out
