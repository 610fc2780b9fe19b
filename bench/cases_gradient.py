"""Bench rows for the gradient family."""

from __future__ import annotations

import captum.attr as ca
import torch

import service.attribution as sa

from .harness import BenchCase


def _zeros(x):
    return torch.zeros_like(x)


def _ref(x):
    g = torch.Generator().manual_seed(1)
    return 0.1 * torch.rand((8, *x.shape[1:]), generator=g)


def _algos(model: str, target: float):
    t = {"target": 0}

    def one(b):
        return b

    return [
        ("Saliency", sa.Saliency, ca.Saliency, lambda x: t, one),
        ("InputXGradient", sa.InputXGradient, ca.InputXGradient, lambda x: t, one),
        ("IntegratedGradients n_steps=50", sa.IntegratedGradients, ca.IntegratedGradients,
         lambda x: {**t, "baselines": _zeros(x), "n_steps": 50}, lambda b: 50 * b),
        ("NoiseTunnel(IG n_steps=10) smoothgrad x5",
         lambda m: sa.NoiseTunnel(sa.IntegratedGradients(m)),
         lambda m: ca.NoiseTunnel(ca.IntegratedGradients(m)),
         lambda x: {**t, "n_steps": 10, "nt_samples": 5, "stdevs": 0.1}, lambda b: 50 * b),
        ("GradientShap n_samples=20", sa.GradientShap, ca.GradientShap,
         lambda x: {**t, "baselines": _ref(x), "n_samples": 20}, lambda b: 20 * b),
        ("DeepLift", sa.DeepLift, ca.DeepLift, lambda x: {**t, "baselines": _zeros(x)},
         lambda b: 2 * b),
        ("DeepLiftShap 8 baselines", sa.DeepLiftShap, ca.DeepLiftShap,
         lambda x: {**t, "baselines": _ref(x)}, lambda b: 16 * b),
        ("GuidedBackprop", sa.GuidedBackprop, ca.GuidedBackprop, lambda x: t, one),
        ("Deconvolution", sa.Deconvolution, ca.Deconvolution, lambda x: t, one),
    ]


CASES: list[BenchCase] = []
for _model, _batches, _target in (("tabular", (1, 32), 0.3), ("small_cnn", (1, 16), 0.8)):
    for _batch in _batches:
        for _name, _ours, _theirs, _kw, _floor in _algos(_model, _target):
            CASES.append(BenchCase("gradient", _name, _model, _batch, _ours, _theirs, _kw,
                                   target=_target, floor_rows=_floor))

# The ResNet-18-sized model: IG is compute-bound; ours picks its own chunk size, and is compared
# with captum's default and with captum's best internal_batch_size (16, measured).
_big = {"target": 0, "n_steps": 50}
CASES += [
    BenchCase("gradient", "IntegratedGradients n_steps=50 (captum ibs=None)", "resnet18", 1,
              sa.IntegratedGradients, ca.IntegratedGradients, lambda x: _big, repeats=3,
              floor_rows=lambda b: 50 * b),
    BenchCase("gradient", "IntegratedGradients n_steps=50 (captum ibs=16)", "resnet18", 1,
              sa.IntegratedGradients,
              lambda m: _WithKwargs(ca.IntegratedGradients(m), internal_batch_size=16),
              lambda x: _big, repeats=3),
    BenchCase("gradient", "Saliency", "resnet18", 1, sa.Saliency, ca.Saliency,
              lambda x: {"target": 0}, floor_rows=lambda b: b),
    BenchCase("gradient", "DeepLift (reused in-place ReLU)", "resnet18", 1, sa.DeepLift,
              lambda m: _SeparateReluDeepLift(m), lambda x: {"target": 0}),
]


class _WithKwargs:
    """An attribution object with extra attribute() keyword arguments fixed."""

    def __init__(self, obj, **kwargs):
        self.obj, self.kwargs = obj, kwargs

    def attribute(self, inputs, **kwargs):
        return self.obj.attribute(inputs, **kwargs, **self.kwargs)


class _SeparateReluDeepLift:
    """captum cannot run DeepLift on a model that reuses its ReLU: it gets a copy of the model
    with one ReLU per call site, which computes the same function."""

    def __init__(self, model):
        from .models import untie_relus

        self.obj = ca.DeepLift(untie_relus(model))

    def attribute(self, inputs, **kwargs):
        return self.obj.attribute(inputs, **kwargs)
