"""Small model directories in the archive layout of serving-contract.md, built by the tests
themselves (the bundled models come from model_store/): model.py, weights.pt, spec.yaml and
baseline files. ``tiny_image`` is a 1x8x8 CNN with 3 classes (layers conv, relu, fc; every algorithm
enabled); ``tiny_tabular`` a 4-feature MLP with a scaler, reason templates and layers hidden (the
ReLU's output) and linear1."""

from __future__ import annotations

import importlib.util
import pathlib
import sys

import torch
import yaml

from service.runtime import default_table

IMAGE_MODEL_SRC = '''
import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 3)

    def forward(self, x):
        return self.fc(self.pool(self.relu(self.conv(x))).flatten(1))
'''

TABULAR_MODEL_SRC = '''
import torch
from torch import nn


class TinyMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))

    def forward(self, x):
        return self.net(x)
'''


def _load_class(path: pathlib.Path, name: str) -> type:
    spec = importlib.util.spec_from_file_location(f"_fixture_{path.parent.name}_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return getattr(module, name)


def tiny_image(root: pathlib.Path, name: str = "tiny", batch_size: int = 4) -> pathlib.Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.py").write_text(IMAGE_MODEL_SRC)
    torch.manual_seed(0)
    model = _load_class(d / "model.py", "TinyCNN")()
    torch.save(model.state_dict(), d / "weights.pt")
    g = torch.Generator().manual_seed(1)
    torch.save(torch.rand(1, 1, 8, 8, generator=g), d / "mean.pt")
    torch.save(torch.rand(6, 1, 8, 8, generator=g), d / "reference.pt")
    spec = {
        "name": name, "version": "1.0", "description": "test CNN", "purpose": "production",
        "model": {"file": "model.py", "class": "TinyCNN", "weights": "weights.pt"},
        "input": {"kind": "image", "shape": [1, 8, 8],
                  "image": {"mode": "L", "size": [8, 8], "scale": 255.0, "mean": [0.0],
                            "std": [1.0], "invert": False}},
        "output": {"kind": "classification", "class_names": ["zero", "one", "two"]},
        # every registered algorithm, the default first
        "explain": {"algorithms": ["IntegratedGradients",
                                   *sorted(n for n in default_table() if n != "IntegratedGradients")],
                    "default_algorithm": "IntegratedGradients",
                    "default_params": {"IntegratedGradients": {"n_steps": 16}},
                    "layers": {"conv": "conv", "relu": "relu", "fc": "fc"},
                    "cam_layer": "conv", "default_target": "predicted", "top_k_features": 3},
        "baselines": {"default": "zeros",
                      "definitions": {"zeros": {"kind": "zeros"},
                                      "mean": {"kind": "tensor", "file": "mean.pt"},
                                      "reference": {"kind": "reference_set",
                                                    "file": "reference.pt"}}},
        "limits": {"max_n_steps": 64},
        "batch": {"batch_size": batch_size, "max_batch_delay_ms": 50},
    }
    (d / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return d


FEATURES = ["watched:Alien", "watched:Heat", "genre:scifi", "age"]


def tiny_tabular(root: pathlib.Path, name: str = "tab") -> pathlib.Path:
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    (d / "model.py").write_text(TABULAR_MODEL_SRC)
    torch.manual_seed(0)
    model = _load_class(d / "model.py", "TinyMLP")()
    torch.save(model.state_dict(), d / "weights.pt")
    spec = {
        "name": name, "version": "1.0", "model": {"file": "model.py", "class": "TinyMLP"},
        "input": {"kind": "tabular", "shape": [4], "feature_names": FEATURES,
                  "scaler": {"mean": [0.5, 0.5, 0.2, 40.0], "std": [0.5, 0.5, 0.4, 10.0]}},
        "output": {"kind": "classification", "class_names": ["Alien 2", "Heat 2"]},
        "explain": {"algorithms": ["IntegratedGradients", "Saliency", "DeepLift",
                                   "LayerIntegratedGradients", "LayerConductance",
                                   "NeuronIntegratedGradients", "NeuronGradient"],
                    "layers": {"hidden": "net.1", "linear1": "net.0"},
                    "top_k_features": 2,
                    "reasons": [{"prefix": "watched:", "template": "because you watched {name}"},
                                {"prefix": "genre:", "template": "because you like {name}"}]},
        "batch": {"batch_size": 2, "max_batch_delay_ms": 20},
    }
    (d / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return d


def load_model(d: pathlib.Path) -> torch.nn.Module:
    spec = yaml.safe_load((d / "spec.yaml").read_text())
    model = _load_class(d / spec["model"]["file"], spec["model"]["class"])()
    model.load_state_dict(torch.load(d / "weights.pt", weights_only=True))
    return model.eval()
