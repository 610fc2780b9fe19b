"""Bench rows for the perturbation family. Both sides get the same arguments, including
``perturbations_per_eval``, so they run the same number of forward passes of the same size."""

from __future__ import annotations

import captum.attr as ca
import torch

import service.attribution as sa

from .harness import BenchCase


def _superpixels(x, size: int):
    """One feature per ``size`` x ``size`` square, shared by all channels: (1, 1, H, W)."""
    h, w = x.shape[-2:]
    rows = torch.arange(h).div(size, rounding_mode="floor")
    cols = torch.arange(w).div(size, rounding_mode="floor")
    ids = rows.view(-1, 1) * ((w + size - 1) // size) + cols.view(1, -1)
    return ids.view(1, 1, h, w)


def _groups(n_features: int, size: int):
    return torch.arange(n_features).div(size, rounding_mode="floor").view(1, -1)


CASES: list[BenchCase] = [
    # ResNet-18-sized CNN, 3x224x224: 784 windows; 196 superpixels of 16x16.
    BenchCase("perturbation", "Occlusion 3x15x15 stride 8 ppe=16", "resnet18", 1,
              sa.Occlusion, ca.Occlusion,
              lambda x: {"target": 0, "sliding_window_shapes": (3, 15, 15), "strides": 8,
                         "perturbations_per_eval": 16}, target=0.8, repeats=1),
    BenchCase("perturbation", "FeatureAblation 16x16 superpixels ppe=16", "resnet18", 1,
              sa.FeatureAblation, ca.FeatureAblation,
              lambda x: {"target": 0, "feature_mask": _superpixels(x, 16),
                         "perturbations_per_eval": 16}, target=0.8, repeats=2),
    # Small CNN, 1x28x28.
    BenchCase("perturbation", "Occlusion 1x15x15 stride 8", "small_cnn", 16,
              sa.Occlusion, ca.Occlusion,
              lambda x: {"target": 0, "sliding_window_shapes": (1, 15, 15), "strides": 8},
              target=0.8),
    BenchCase("perturbation", "Occlusion 1x4x4 stride 2 ppe=8", "small_cnn", 16,
              sa.Occlusion, ca.Occlusion,
              lambda x: {"target": 0, "sliding_window_shapes": (1, 4, 4), "strides": 2,
                         "perturbations_per_eval": 8}, target=0.8),
    BenchCase("perturbation", "FeatureAblation every pixel", "small_cnn", 16,
              sa.FeatureAblation, ca.FeatureAblation, lambda x: {"target": 0}, target=0.8),
    BenchCase("perturbation", "FeatureAblation every pixel ppe=16", "small_cnn", 16,
              sa.FeatureAblation, ca.FeatureAblation,
              lambda x: {"target": 0, "perturbations_per_eval": 16}, target=0.8),
]

# Tabular MLP, 30 features.
for _batch in (1, 16):
    CASES += [
        BenchCase("perturbation", "KernelShap n_samples=200", "tabular", _batch,
                  sa.KernelShap, ca.KernelShap, lambda x: {"target": 0, "n_samples": 200}),
        BenchCase("perturbation", "Lime n_samples=200", "tabular", _batch, sa.Lime, ca.Lime,
                  lambda x: {"target": 0, "n_samples": 200}),
        BenchCase("perturbation", "ShapleyValueSampling n_samples=25", "tabular", _batch,
                  sa.ShapleyValueSampling, ca.ShapleyValueSampling,
                  lambda x: {"target": 0, "n_samples": 25}),
        BenchCase("perturbation", "ShapleyValueSampling 10 groups n_samples=25 ppe=10",
                  "tabular", _batch, sa.ShapleyValueSampling, ca.ShapleyValueSampling,
                  lambda x: {"target": 0, "n_samples": 25, "feature_mask": _groups(30, 3),
                             "perturbations_per_eval": 10}),
    ]
