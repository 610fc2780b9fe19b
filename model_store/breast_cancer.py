"""breast_cancer: MLP on scikit-learn's breast-cancer data (30 named features, standardised)."""

from __future__ import annotations

import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import Tensor

from service.nets import MLP

from ._examples import EXAMPLES_FILE, example, first_per_class, report, tabular
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

NAME = "breast_cancer"
SEED = 0
N_REFERENCE = 32
EXAMPLES_PER_CLASS = 8


def split() -> tuple[Tensor, Tensor, Tensor, Tensor, list[str], list[str]]:
    """Raw features, stratified 80/20 split with a fixed seed, plus feature and class names."""
    data = load_breast_cancer()
    x = torch.tensor(data.data, dtype=torch.float32)       # (569, 30), raw units
    y = torch.tensor(data.target, dtype=torch.long)        # 0 = malignant, 1 = benign
    tr, te = train_test_split(torch.arange(len(y)).numpy(), test_size=0.2, random_state=SEED,
                              stratify=y.numpy())
    return (x[tr], y[tr], x[te], y[te], [str(n) for n in data.feature_names],
            [str(n) for n in data.target_names])


def build() -> Built:
    x_train, y_train, x_test, y_test, features, classes = split()
    # The scaler is fitted on the training split only; the model sees standardised features and
    # the runtime applies spec.input.scaler to raw requests.
    mean = x_train.mean(0)
    std = x_train.std(0, unbiased=False)
    z_train, z_test = (x_train - mean) / std, (x_test - mean) / std
    with deterministic(SEED) as gen:
        model = MLP(30, (64, 32), 2)
        losses = fit(model, z_train, y_train, epochs=40, batch_size=16, lr=3e-4,
                     weight_decay=1e-2, generator=gen)
    acc = accuracy(model, z_test, y_test)
    spec = {
        "name": NAME,
        "version": "1.0",
        "description": "MLP (30-64-32-2) on scikit-learn's breast-cancer data, 30 named features",
        "purpose": "production",
        "model": {"file": "model.py", "class": "BreastCancerMLP", "weights": "weights.pt"},
        "input": {
            "kind": "tabular",
            "shape": [30],
            "feature_names": features,
            # 9 significant digits: float32 values round-trip exactly through YAML.
            "scaler": {"mean": [float(f"{v:.9g}") for v in mean.tolist()],
                       "std": [float(f"{v:.9g}") for v in std.tolist()]},
        },
        "output": {"kind": "classification", "class_names": classes},
        "explain": {
            "algorithms": algorithms(cam=False),
            "default_algorithm": "IntegratedGradients",
            "default_params": DEFAULT_PARAMS,
            # the 64 and 32 hidden units (after their ReLUs)
            "layers": {"hidden1": "net.1", "hidden2": "net.3"},
            "default_layer": "hidden1",
            "default_target": "predicted",
            "top_k_features": 5,
            "reasons": [],
        },
        # Baselines live in the model's input space (standardised): "mean" is the training
        # mean, i.e. an average patient.
        "baselines": baselines("mean"),
        "batch": SMALL_MODEL_BATCH,
    }
    metrics = {
        "model": NAME,
        "dataset": "sklearn.datasets.load_breast_cancer, standardised with the training split",
        "n_train": len(y_train),
        "n_held_out": len(y_test),
        "held_out_accuracy": round(acc, 4),
        "final_train_loss": round(losses[-1], 5),
    }
    return Built(
        name=NAME, model=model, base="MLP", base_args="30, (64, 32), 2", spec=spec,
        data_files={
            "baseline_mean.pt": z_train.mean(0, keepdim=True),                    # (1, 30)
            "reference.pt": stratified_reference(z_train, y_train, N_REFERENCE),  # (32, 30)
        },
        reports={"metrics.json": metrics,
                 EXAMPLES_FILE: examples(x_test, y_test, features, classes)},
    )


def examples(x_test: Tensor, y_test: Tensor, features: list[str], classes: list[str]) -> dict:
    """The first held-out patients of each class, raw feature values (what a client sends)."""
    return report(NAME, "the dataset's diagnosis", [
        example(f"{NAME}-{i}", tabular(x_test[i].tolist(), features), int(y_test[i]), classes)
        for i in first_per_class(y_test, EXAMPLES_PER_CLASS)])
