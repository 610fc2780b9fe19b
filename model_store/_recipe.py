"""What every recipe shares: the deterministic scope, the training loop, and the result type."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

# Algorithms a spec enables, by Captum name. Every name must be in the server's algorithm table
# (service/runtime/algorithms): a model whose spec enables an unknown one fails to load.
GRADIENT_ALGORITHMS = (
    "IntegratedGradients",
    "Saliency",
    "InputXGradient",
    "DeepLift",
    "DeepLiftShap",
    "GradientShap",
    "InputBaselineXGradient",
    "GuidedBackprop",
    "Deconvolution",
    "NoiseTunnel",
)

# Methods on a layer the spec lists (`explain.layers`): the CAM methods answer in the input's
# shape (LayerGradCam's map upsampled) and need a convolutional layer; the layer methods answer
# in the layer's shape (TargetExplanation.attributed_to); the neuron methods explain one neuron
# of a layer (ExplainRequest.layer.neuron).
CAM_ALGORITHMS = ("LayerGradCam", "GuidedGradCam")
LAYER_ALGORITHMS = (
    "LayerIntegratedGradients",
    "LayerConductance",
    "LayerDeepLift",
    "LayerDeepLiftShap",
    "LayerGradientShap",
    "LayerGradientXActivation",
    "LayerActivation",
    "InternalInfluence",
    "LayerFeatureAblation",
)
NEURON_ALGORITHMS = (
    "NeuronGradient",
    "NeuronIntegratedGradients",
    "NeuronConductance",
    "NeuronDeepLift",
    "NeuronDeepLiftShap",
    "NeuronGradientShap",
    "NeuronGuidedBackprop",
    "NeuronDeconvolution",
    "NeuronFeatureAblation",
)
PERTURBATION_ALGORITHMS = ("FeatureAblation", "Occlusion", "ShapleyValueSampling", "KernelShap",
                           "Lime")


def algorithms(*, cam: bool, perturbation: tuple[str, ...] = PERTURBATION_ALGORITHMS,
               layer: tuple[str, ...] = LAYER_ALGORITHMS + NEURON_ALGORITHMS) -> list[str]:
    """IntegratedGradients first (the default), then the rest of the gradient family, the CAM
    methods when the spec's layers are convolutional, the given layer and neuron methods (the
    spec lists ``explain.layers``), and the given perturbation methods."""
    return [*GRADIENT_ALGORITHMS, *(CAM_ALGORITHMS if cam else ()), *layer, *perturbation]


DEFAULT_PARAMS = {"IntegratedGradients": {"n_steps": 32}, "GradientShap": {"n_samples": 16}}

BATCH = {"batch_size": 8, "max_batch_delay_ms": 10}
# The small models' batches keep one core busy (a 30-feature MLP's batch of 8 takes ~0.3 ms):
# a second worker uses the second core of a 2-core machine and served 1.5-1.6x the
# explanations and 1.3x the predictions of one (bench/README.md, "One and two workers").
SMALL_MODEL_BATCH = {**BATCH, "workers": 2}


@dataclass(frozen=True)
class Built:
    """A trained model and everything its archive carries.

    ``base`` names the architecture in ``service.nets`` and ``base_args`` the Python source of
    its constructor arguments; the archive's model.py defines ``spec["model"]["class"]`` as a
    no-argument subclass of it. ``data_files`` are saved with ``torch.save`` under their names
    (the baselines, in the model's input space); ``reports`` are JSON files written next to the
    archive's work directory (metrics.json, planted.json, ...), not packed into the archive;
    ``text_files`` are JSON files packed into the archive (a text model's vocabulary).
    """

    name: str
    model: nn.Module
    base: str
    base_args: str
    spec: dict[str, Any]
    data_files: dict[str, Tensor]
    reports: dict[str, dict[str, Any]] = field(default_factory=dict)
    text_files: dict[str, dict[str, Any]] = field(default_factory=dict)


@contextmanager
def deterministic(seed: int) -> Iterator[torch.Generator]:
    """Seed everything and force reproducible kernels; restores the caller's settings on exit.

    One intra-op thread: reductions then run in a fixed order, so two builds give bit-identical
    weights on the same CPU regardless of its core count.
    """
    threads = torch.get_num_threads()
    det = torch.are_deterministic_algorithms_enabled()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True)
        try:
            yield torch.Generator().manual_seed(seed)
        finally:
            torch.use_deterministic_algorithms(det)
            torch.set_num_threads(threads)


def fit(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int, batch_size: int, lr: float,
        generator: torch.Generator, weight_decay: float = 0.0) -> list[float]:
    """Adam on cross-entropy over shuffled minibatches; returns the mean loss of each epoch.

    ``y`` holds class indices ``(n,)`` or class probabilities ``(n, n_classes)``.
    """
    opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    n = x.shape[0]
    losses = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
            loss.backward()
            opt.step()
            total += loss.item() * idx.numel()
        losses.append(total / n)
    model.eval()
    if not all(math.isfinite(v) for v in losses):
        raise RuntimeError(f"training diverged: epoch losses {losses}")
    return losses


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return (model(x).argmax(1) == y).float().mean().item()


def stratified_reference(x: Tensor, y: Tensor, k: int) -> Tensor:
    """``k`` training rows, round-robin over classes, first rows first: ``(k, *x.shape[1:])``."""
    per_class = [torch.nonzero(y == c).flatten().tolist() for c in torch.unique(y).tolist()]
    picked: list[int] = []
    depth = 0
    while len(picked) < k:
        for rows in per_class:
            if depth < len(rows) and len(picked) < k:
                picked.append(rows[depth])
        depth += 1
    return x[sorted(picked)].clone()


def baselines(default: str) -> dict[str, Any]:
    """The spec's ``baselines`` block with the three standard entries."""
    return {
        "default": default,
        "definitions": {
            "zeros": {"kind": "zeros"},
            "mean": {"kind": "tensor", "file": "baseline_mean.pt"},
            "reference": {"kind": "reference_set", "file": "reference.pt"},
        },
    }
