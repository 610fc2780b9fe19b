"""A plain ReLU multilayer perceptron for tabular inputs."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """``n_in -> hidden[0] -> ... -> n_out`` with a ReLU after each hidden layer.

    The layers live in ``self.net`` (an ``nn.Sequential``), so ``net.0`` is the first Linear.
    """

    def __init__(self, n_in: int, hidden: Sequence[int], n_out: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_in
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_out))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        # (batch, n_in) -> (batch, n_out)
        return self.net(x)
