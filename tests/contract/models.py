"""Small float64 models shared by the contract suites. Each model key maps to a builder and an
input maker; inputs are deterministic for a given list of example indices, so a batch and its
single examples see the same data."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

DTYPE = torch.float64


def _rows(rows: list[int], shape: tuple[int, ...], salt: int, low: float = -1.0,
          high: float = 1.0) -> Tensor:
    """One deterministic random example per index in ``rows``."""
    out = []
    for r in rows:
        g = torch.Generator().manual_seed(1000 * salt + r)
        out.append(low + (high - low) * torch.rand(shape, generator=g, dtype=DTYPE))
    return torch.stack(out)


def _init(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Embedding)):
            m.reset_parameters()
    return model.to(DTYPE).eval()


class Linear(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin(x)


class MLP(nn.Module):
    """ReLU, Sigmoid, Tanh, then Softmax over 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(6, 8)
        self.relu = nn.ReLU()
        self.lin2 = nn.Linear(8, 8)
        self.sigmoid = nn.Sigmoid()
        self.lin3 = nn.Linear(8, 8)
        self.tanh = nn.Tanh()
        self.lin4 = nn.Linear(8, 4)
        self.softmax = nn.Softmax(dim=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu(self.lin1(x))
        h = self.sigmoid(self.lin2(h))
        h = self.tanh(self.lin3(h))
        return self.softmax(self.lin4(h))


class CNN(nn.Module):
    """conv -> MaxPool -> ReLU -> conv -> ReLU -> linear, on 1x10x10 images.

    captum 0.9.0's DeepLift loses completeness when a MaxPool sits next to another
    non-linearity (captum issues #1104, #1276), so on this model DeepLift is checked by
    completeness and by the hand-written rule of tests/unit/test_deeplift_oracle.py."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(6 * 4 * 4, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu1(self.pool(self.conv1(x)))
        h = self.relu2(self.conv2(h))
        return self.fc(h.flatten(1))


class Pool(nn.Module):
    """conv -> MaxPool (overlapping windows) -> linear: MaxPool is the only non-linearity.
    captum 0.9.0's MaxPool rule loses completeness here (windows sharing an argmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3)
        self.pool = nn.MaxPool2d(3, stride=2)
        self.fc = nn.Linear(3 * 3 * 3, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.conv(x)).flatten(1))


class TwoInput(nn.Module):
    """Two input tensors and an extra per-example tensor argument passed through
    ``additional_forward_args``."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 6)
        self.b = nn.Linear(3, 6)
        self.relu = nn.ReLU()
        self.out = nn.Linear(6, 2)

    def forward(self, x1: Tensor, x2: Tensor, scale: Tensor) -> Tensor:
        return self.out(self.relu(self.a(x1) + self.b(x2) * scale))


@dataclass(frozen=True)
class ModelSpec:
    build: Callable[[], nn.Module]
    inputs: Callable[[list[int]], tuple[Tensor, ...]]
    # Extra forward arguments for the given rows, or None.
    extra_args: Callable[[list[int]], tuple | None] = lambda rows: None
    n_outputs: int = 1


MODELS: dict[str, ModelSpec] = {
    "linear": ModelSpec(lambda: _init(Linear(), 1), lambda r: (_rows(r, (5,), 1),), n_outputs=3),
    "mlp": ModelSpec(lambda: _init(MLP(), 2), lambda r: (_rows(r, (6,), 2),), n_outputs=4),
    "cnn": ModelSpec(lambda: _init(CNN(), 3), lambda r: (_rows(r, (1, 10, 10), 3, 0.0, 1.0),),
                     n_outputs=3),
    "pool": ModelSpec(lambda: _init(Pool(), 5), lambda r: (_rows(r, (1, 9, 9), 7),), n_outputs=3),
    "two_input": ModelSpec(
        lambda: _init(TwoInput(), 4),
        lambda r: (_rows(r, (4,), 4), _rows(r, (3,), 5)),
        extra_args=lambda r: (_rows(r, (1,), 6, 0.5, 1.5),),
        n_outputs=2,
    ),
}
