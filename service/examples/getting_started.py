"""Captum's Getting Started example, run on this engine: ``python -m service.examples.getting_started``."""

from __future__ import annotations

import torch
from torch import nn

from service.attribution import DeepLift, IntegratedGradients


class ToyModel(nn.Module):
    """lin1 (3->3, weights arange(-4, 5), zero bias) -> ReLU -> lin2 (3->2, weights arange(-3, 3),
    bias ones)."""

    def __init__(self) -> None:
        super().__init__()
        self.lin1 = nn.Linear(3, 3)
        self.relu = nn.ReLU()
        self.lin2 = nn.Linear(3, 2)
        with torch.no_grad():
            self.lin1.weight.copy_(torch.arange(-4.0, 5.0).view(3, 3))
            self.lin1.bias.zero_()
            self.lin2.weight.copy_(torch.arange(-3.0, 3.0).view(2, 3))
            self.lin2.bias.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin2(self.relu(self.lin1(x)))


def example_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(123)
    inputs = torch.rand(2, 3)
    return inputs, torch.zeros(2, 3)


def main() -> None:
    model = ToyModel().eval()
    inputs, baseline = example_inputs()
    attributions, delta = IntegratedGradients(model).attribute(
        inputs, baseline, target=0, return_convergence_delta=True)
    print("IG Attributions:", attributions)
    print("Convergence Delta:", delta)
    attributions, delta = DeepLift(model).attribute(
        inputs, baseline, target=0, return_convergence_delta=True)
    print("DeepLift Attributions:", attributions)
    print("Convergence Delta:", delta)


if __name__ == "__main__":
    main()
