"""Models for the LRP rows: only modules that LRP has rules for (Captum's table), float64 and in
eval mode. Registered into ``MODELS``."""

from __future__ import annotations

import torch
from captum.attr._utils.custom_modules import Addition_Module as CaptumAddition
from torch import Tensor, nn

from .models import DTYPE, MODELS, ModelSpec, _init, _rows


class LrpMLP(nn.Module):
    """Linear -> ReLU -> Dropout -> Linear -> Tanh -> Linear, with biases."""

    def __init__(self, bias: bool = True) -> None:
        super().__init__()
        self.lin1 = nn.Linear(6, 8, bias=bias)
        self.relu = nn.ReLU()
        self.drop = nn.Dropout(0.3)
        self.lin2 = nn.Linear(8, 8, bias=bias)
        self.tanh = nn.Tanh()
        self.lin3 = nn.Linear(8, 4, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.lin3(self.tanh(self.lin2(self.drop(self.relu(self.lin1(x))))))


class LrpCNN(nn.Module):
    """conv -> BatchNorm -> ReLU -> MaxPool -> conv -> ReLU -> AvgPool -> AdaptiveAvgPool ->
    linear, on 1x10x10 images."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3)
        self.bn = nn.BatchNorm2d(4)
        self.relu1 = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.avgpool = nn.AvgPool2d(2)
        self.adapt = nn.AdaptiveAvgPool2d((1, 2))
        self.fc = nn.Linear(6 * 2, 3)

    def forward(self, x: Tensor) -> Tensor:
        h = self.maxpool(self.relu1(self.bn(self.conv1(x))))
        h = self.adapt(self.avgpool(self.relu2(self.conv2(h))))
        return self.fc(h.flatten(1))


class LrpSkip(nn.Module):
    """Two inputs and a residual sum through Captum's Addition_Module (default rule: epsilon)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 5)
        self.b = nn.Linear(3, 5)
        self.relu = nn.ReLU()
        self.add = CaptumAddition()
        self.out = nn.Linear(5, 2)

    def forward(self, x1: Tensor, x2: Tensor) -> Tensor:
        return self.out(self.add(self.relu(self.a(x1)), self.b(x2)))


def build_cnn() -> nn.Module:
    model = _init(LrpCNN(), 21)
    g = torch.Generator().manual_seed(22)
    with torch.no_grad():  # a BatchNorm that is not the identity
        model.bn.weight.copy_(torch.rand(4, generator=g, dtype=DTYPE) + 0.5)
        model.bn.bias.copy_(torch.rand(4, generator=g, dtype=DTYPE) - 0.5)
        model.bn.running_mean.copy_(torch.rand(4, generator=g, dtype=DTYPE) - 0.5)
        model.bn.running_var.copy_(torch.rand(4, generator=g, dtype=DTYPE) + 0.5)
    return model


MODELS.update({
    "lrp_mlp": ModelSpec(lambda: _init(LrpMLP(), 23), lambda r: (_rows(r, (6,), 23),),
                         n_outputs=4),
    "lrp_mlp_nobias": ModelSpec(lambda: _init(LrpMLP(bias=False), 24),
                                lambda r: (_rows(r, (6,), 24),), n_outputs=4),
    "lrp_cnn": ModelSpec(build_cnn, lambda r: (_rows(r, (1, 10, 10), 25, 0.0, 1.0),),
                         n_outputs=3),
    "lrp_skip": ModelSpec(lambda: _init(LrpSkip(), 26),
                          lambda r: (_rows(r, (4,), 26), _rows(r, (3,), 27)), n_outputs=2),
})

__all__ = ["LrpMLP", "LrpCNN", "LrpSkip", "build_cnn"]
