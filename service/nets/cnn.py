"""A small convolutional classifier for 1x28x28 images."""

from __future__ import annotations

from torch import Tensor, nn


class SmallCNN(nn.Module):
    """1x28x28 images: two conv blocks (conv, MaxPool, ReLU), then two linear layers.

    ``conv2`` is the last convolution (the layer CAM methods use).
    """

    def __init__(self, n_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.pool1 = nn.MaxPool2d(2)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.pool2 = nn.MaxPool2d(2)
        self.relu2 = nn.ReLU()
        self.fc1 = nn.Linear(32 * 7 * 7, 64)
        self.relu3 = nn.ReLU()
        self.fc2 = nn.Linear(64, n_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = self.relu1(self.pool1(self.conv1(x)))    # (batch, 16, 14, 14)
        h = self.relu2(self.pool2(self.conv2(h)))    # (batch, 32, 7, 7)
        return self.fc2(self.relu3(self.fc1(h.flatten(1))))
