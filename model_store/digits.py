"""digits: SmallCNN trained on scikit-learn's 8x8 digits upscaled to 28x28 (1 channel)."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import Tensor
from torch.nn import functional as F

from service.nets import SmallCNN

from ._examples import EXAMPLES_FILE, example, first_per_class, png_b64, report
from ._recipe import (
    DEFAULT_PARAMS,
    SMALL_MODEL_BATCH,
    Built,
    accuracy,
    algorithms,
    baselines,
    deterministic,
    fit,
    stratified_reference,
)

NAME = "digits"
SEED = 0
SIZE = 28
N_REFERENCE = 32
EXAMPLES_PER_CLASS = 3


def load() -> tuple[Tensor, Tensor]:
    """All 1797 digits as ``(n, 1, 28, 28)`` float32 in [0, 1] (ink bright) and labels ``(n,)``."""
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0   # (n, 1, 8, 8)
    x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return x.clamp_(0.0, 1.0), torch.tensor(data.target, dtype=torch.long)


def split() -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """A stratified 80/20 train/held-out split with a fixed seed."""
    x, y = load()
    tr, te = train_test_split(torch.arange(len(y)).numpy(), test_size=0.2, random_state=SEED,
                              stratify=y.numpy())
    return x[tr], y[tr], x[te], y[te]


def build() -> Built:
    x_train, y_train, x_test, y_test = split()
    with deterministic(SEED) as gen:
        model = SmallCNN(n_classes=10)
        losses = fit(model, x_train, y_train, epochs=12, batch_size=64, lr=2e-3, generator=gen)
    acc = accuracy(model, x_test, y_test)
    spec = {
        "name": NAME,
        "version": "1.0",
        "description": "CNN trained on scikit-learn's 8x8 digits upscaled to 28x28",
        "purpose": "production",
        "model": {"file": "model.py", "class": "DigitsCNN", "weights": "weights.pt"},
        "input": {
            "kind": "image",
            "shape": [1, SIZE, SIZE],
            "image": {"mode": "L", "size": [SIZE, SIZE], "scale": 255.0, "mean": [0.0],
                      "std": [1.0], "invert": False},
        },
        "output": {"kind": "classification", "class_names": [str(d) for d in range(10)]},
        "explain": {
            "algorithms": algorithms(cam=True, perturbation=("Occlusion", "FeatureAblation")),
            "default_algorithm": "IntegratedGradients",
            "default_params": DEFAULT_PARAMS,
            # (16, 28, 28), (32, 14, 14) before pooling, and the 64 hidden units after fc1
            "layers": {"conv1": "conv1", "conv2": "conv2", "hidden": "relu3"},
            "cam_layer": "conv2",
            "default_target": "predicted",
            "top_k_features": 5,
            "reasons": [],
        },
        "baselines": baselines("zeros"),
        "batch": SMALL_MODEL_BATCH,
    }
    metrics = {
        "model": NAME,
        "dataset": "sklearn.datasets.load_digits, bilinear 8x8 -> 28x28, values / 16",
        "n_train": len(y_train),
        "n_held_out": len(y_test),
        "held_out_accuracy": round(acc, 4),
        "final_train_loss": round(losses[-1], 5),
    }
    return Built(
        name=NAME, model=model, base="SmallCNN", base_args="n_classes=10", spec=spec,
        data_files={
            "baseline_mean.pt": x_train.mean(0, keepdim=True),                     # (1, 1, 28, 28)
            "reference.pt": stratified_reference(x_train, y_train, N_REFERENCE),   # (32, 1, 28, 28)
        },
        reports={"metrics.json": metrics, EXAMPLES_FILE: examples(x_test, y_test)},
    )


def examples(x_test: Tensor, y_test: Tensor) -> dict:
    """The first held-out images of each digit as PNG (the pixels the model sees)."""
    names = [str(d) for d in range(10)]
    rows = first_per_class(y_test, EXAMPLES_PER_CLASS)
    return report(NAME, "the dataset's label", [
        example(f"{NAME}-{i}", {"image": png_b64(x_test[i, 0].numpy())}, int(y_test[i]), names)
        for i in rows])
