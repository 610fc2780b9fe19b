"""Models the benchmarks run on (float32, eval mode, fixed seeds)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

# The architectures live in service.nets, shared with the bundled models (model_store/).
from service.nets import MLP, BasicBlock, ResNet18, SmallCNN


class TabularMLP(MLP):
    """30 features -> 64 -> 32 -> 2 (the breast-cancer shape)."""

    def __init__(self) -> None:
        super().__init__(30, (64, 32), 2)


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
