"""Bench rows for the layer and neuron family."""

from __future__ import annotations

import captum.attr as ca
import torch
from torch import Tensor, nn

import service.attribution as sa

from .harness import EXTRA_MODELS, BenchCase
from .models import untie_relus

VOCAB, SEQ, DIM = 5000, 64, 64


class TextClassifier(nn.Module):
    """Embedding (5000 x 64) -> mean over 64 tokens -> 64 -> ReLU -> 4 classes."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, DIM, padding_idx=0)
        self.fc1 = nn.Linear(DIM, 64)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(64, 4)

    def forward(self, tokens: Tensor) -> Tensor:
        return self.fc2(self.relu(self.fc1(self.embedding(tokens).mean(1))))


def _text() -> nn.Module:
    torch.manual_seed(3)
    return TextClassifier().eval()


def _tokens(batch: int) -> Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(1, VOCAB, (batch, SEQ), generator=g)


EXTRA_MODELS["text"] = _text

_REF = sa.TokenReferenceBase(0)


def _text_kwargs(x: Tensor) -> dict:
    return {"baselines": _REF.generate_reference(SEQ, x.device).unsqueeze(0), "target": 1}


class _OnUntied:
    """captum's GuidedBackprop cannot run on the ResNet that reuses one in-place ReLU per block:
    it gets a copy with one ReLU per call site, which computes the same function."""

    def __init__(self, cls, model, layer_name: str):
        untied = untie_relus(model)
        self.obj = cls(untied, getattr(untied, layer_name))

    def attribute(self, inputs, **kwargs):
        return self.obj.attribute(inputs, **kwargs)


def _zeros(x: Tensor) -> dict:
    return {"baselines": torch.zeros_like(x), "target": 0}


# floor_rows: one forward + input-gradient pass over the rows the method evaluates (for the
# layer-gradient methods this is more than they need: they stop the backward at the layer).
CASES: list[BenchCase] = [
    BenchCase("layer", "LayerGradCam layer4", "resnet18", 1,
              lambda m: sa.LayerGradCam(m, m.layer4), lambda m: ca.LayerGradCam(m, m.layer4),
              lambda x: {"target": 0}, floor_rows=lambda b: b),
    BenchCase("layer", "GuidedGradCam layer4", "resnet18", 1,
              lambda m: sa.GuidedGradCam(m, m.layer4),
              lambda m: _OnUntied(ca.GuidedGradCam, m, "layer4"), lambda x: {"target": 0},
              floor_rows=lambda b: b),
]
for _batch in (1, 16):
    CASES.append(BenchCase(
        "layer", "LayerIntegratedGradients embedding n_steps=50", "text", _batch,
        lambda m: sa.LayerIntegratedGradients(m, m.embedding),
        lambda m: ca.LayerIntegratedGradients(m, m.embedding), _text_kwargs, inputs=_tokens,
        target=0.7 if _batch == 1 else 1.0))
for _batch in (1, 16):
    _t = 0.7 if _batch == 1 else 1.0
    CASES += [
        BenchCase("layer", "LayerConductance conv2 n_steps=50", "small_cnn", _batch,
                  lambda m: sa.LayerConductance(m, m.conv2),
                  lambda m: ca.LayerConductance(m, m.conv2), _zeros, target=_t,
                  floor_rows=lambda b: 51 * b),
        BenchCase("neuron", "NeuronConductance conv2 (3,5,5) n_steps=50", "small_cnn", _batch,
                  lambda m: sa.NeuronConductance(m, m.conv2),
                  lambda m: ca.NeuronConductance(m, m.conv2),
                  lambda x: {**_zeros(x), "neuron_selector": (3, 5, 5)}, target=_t,
                  floor_rows=lambda b: 50 * b),
    ]
