"""Models the benchmarks run on (float32, eval mode, fixed seeds)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn


class TabularMLP(nn.Module):
    """30 features -> 64 -> 32 -> 2 (the breast-cancer shape)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(30, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU(),
                                 nn.Linear(32, 2))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class SmallCNN(nn.Module):
    """1x28x28 digits: two conv blocks with MaxPool, then two linear layers."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu1(self.pool1(self.conv1(x)))
        h = self.relu2(self.pool2(self.conv2(h)))
        return self.fc2(self.relu3(self.fc1(h.flatten(1))))


class BasicBlock(nn.Module):
    """A ResNet basic block that reuses one in-place ReLU, as torchvision's does."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False),
                                            nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18(nn.Module):
    """ResNet-18's layout (11.7M parameters) at 3x224x224, random weights: for speed only."""

    def __init__(self, n_classes: int = 1000) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers.append(nn.Sequential(BasicBlock(cin, cout, stride), BasicBlock(cout, cout)))
            cin = cout
        self.layer1, self.layer2, self.layer3, self.layer4 = layers
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(512, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        h = self.layer4(self.layer3(self.layer2(self.layer1(h))))
        return self.fc(self.avgpool(h).flatten(1))


def _build(cls: type[nn.Module], seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return cls().eval()


MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...]]] = {
    "tabular": (lambda: _build(TabularMLP, 0), (30,)),
    "small_cnn": (lambda: _build(SmallCNN, 1), (1, 28, 28)),
    "resnet18": (lambda: _build(ResNet18, 2), (3, 224, 224)),
}


def make_inputs(model: str, batch: int, seed: int = 0) -> Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand((batch, *MODELS[model][1]), generator=g)


class _UntiedBlock(nn.Module):
    """A BasicBlock with a separate, not in-place, ReLU per call site (same weights)."""

    def __init__(self, block: BasicBlock) -> None:
        super().__init__()
        self.block = block
        self.relu1 = nn.ReLU()
        self.relu2 = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        b = self.block
        identity = x if b.downsample is None else b.downsample(x)
        out = self.relu1(b.bn1(b.conv1(x)))
        out = b.bn2(b.conv2(out))
        return self.relu2(out + identity)


def untie_relus(model: nn.Module) -> nn.Module:
    """A copy of a ResNet18 whose ReLUs each run once per forward, for captum's DeepLift."""
    import copy

    m = copy.deepcopy(model)
    for name in ("layer1", "layer2", "layer3", "layer4"):
        seq = getattr(m, name)
        setattr(m, name, nn.Sequential(*[_UntiedBlock(b) for b in seq]))
    m.relu = nn.ReLU()
    return m
