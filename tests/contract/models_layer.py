"""Models for the layer and neuron rows: an embedding + mean-pooling text classifier (on token
ids, and the same model taking embeddings through an interpretable embedding layer) and a model
with a layer whose output is a tuple. Registered into ``MODELS``."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from service.attribution import configure_interpretable_embedding_layer

from .models import DTYPE, MODELS, ModelSpec, _init, _rows

VOCAB, SEQ, DIM = 20, 7, 6


class TextClassifier(nn.Module):
    """Embedding -> mean over tokens -> linear -> ReLU -> linear (3 classes)."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM, padding_idx=0)
        self.fc1 = nn.Linear(DIM, 8)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(8, 3)

    def forward(self, tokens: Tensor) -> Tensor:
        pooled = self.embedding(tokens).mean(1)  # (B, SEQ, DIM) -> (B, DIM)
        return self.fc2(self.relu(self.fc1(pooled)))


def _tokens(rows: list[int]) -> Tensor:
    out = []
    for r in rows:
        g = torch.Generator().manual_seed(5000 + r)
        out.append(torch.randint(1, VOCAB, (SEQ,), generator=g))
    return torch.stack(out)


def build_text() -> nn.Module:
    model = _init(TextClassifier(), 11)
    with torch.no_grad():
        model.embedding.weight[0].zero_()  # the padding row, as nn.Embedding initialises it
    return model


def build_text_embedded() -> nn.Module:
    model = build_text()
    configure_interpretable_embedding_layer(model, "embedding")
    return model


def _embedded(rows: list[int]) -> tuple[Tensor, ...]:
    emb = build_text().embedding
    with torch.no_grad():
        return (emb(_tokens(rows)),)


class Split(nn.Module):
    """A layer with a tuple output: (ReLU(x W1), tanh(x W2))."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(5, 4)
        self.b = nn.Linear(5, 3)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.relu(self.a(x)), torch.tanh(self.b(x))


class TupleLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.split = Split()
        self.out = nn.Linear(7, 2)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.split(x)
        return self.out(torch.cat([a, b], 1))


MODELS.update({
    "text": ModelSpec(build_text, lambda r: (_tokens(r),), n_outputs=3),
    "text_emb": ModelSpec(build_text_embedded, _embedded, n_outputs=3),
    "tuple_layer": ModelSpec(lambda: _init(TupleLayer(), 12), lambda r: (_rows(r, (5,), 13),),
                             n_outputs=2),
})

__all__ = ["DTYPE", "TextClassifier", "TupleLayer", "build_text", "SEQ", "VOCAB"]
