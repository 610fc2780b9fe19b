"""Models for the perturbation family: a model that aggregates its batch into one scalar
(Captum's "aggregate" output mode) and a model that only looks at one image patch."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .models import MLP, MODELS, ModelSpec, _init, _rows


class BatchSum(nn.Module):
    """One scalar for the whole batch: the sum over examples of class 0 of the MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.net = MLP()

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)[:, 0].sum()


class PatchOnly(nn.Module):
    """Sees only the 3x3 patch at rows 4..6, columns 2..4 of a 1x10x10 image."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(9, 2)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.fc(x[:, 0, 4:7, 2:5].flatten(1)))


PATCH = (slice(4, 7), slice(2, 5))

MODELS.update({
    "batch_sum": ModelSpec(lambda: _init(BatchSum(), 2), lambda r: (_rows(r, (6,), 2),)),
    "patch": ModelSpec(lambda: _init(PatchOnly(), 8),
                       lambda r: (_rows(r, (1, 10, 10), 3, 0.0, 1.0),), n_outputs=2),
})
