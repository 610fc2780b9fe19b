"""resnet18: ResNet-18's layout at 3x224x224 with untrained, seeded weights.

FOR LOAD AND SPEED TESTING ONLY: the weights are random, so its predictions and explanations mean
nothing. It exists to measure the service on a realistically sized image model.
"""

from __future__ import annotations

import torch

from service.nets import ResNet18

from ._examples import EXAMPLES_FILE, example, png_b64, report
from ._recipe import (
    BATCH,
    LAYER_ALGORITHMS,
    NEURON_ALGORITHMS,
    Built,
    algorithms,
    baselines,
    deterministic,
)

NAME = "resnet18"
SEED = 0
N_CLASSES = 1000
N_REFERENCE = 16
SHAPE = (3, 224, 224)
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def build() -> Built:
    with deterministic(SEED) as gen:
        model = ResNet18(n_classes=N_CLASSES).eval()
        # A synthetic reference set (there is no dataset): seeded noise around the ImageNet mean
        # colour, in the model's (normalised) input space.
        reference = 0.5 * torch.randn((N_REFERENCE, *SHAPE), generator=gen)
    label = "LOAD TEST ONLY (untrained, seeded random weights: predictions are meaningless)"
    spec = {
        "name": NAME,
        "version": "1.0",
        "description": f"ResNet-18-sized image model at 3x224x224. {label}",
        "purpose": "load_test_only",
        "model": {"file": "model.py", "class": "ResNet18LoadTest", "weights": "weights.pt"},
        "input": {
            "kind": "image",
            "shape": list(SHAPE),
            "image": {"mode": "RGB", "size": [224, 224], "scale": 255.0, "mean": IMAGENET_MEAN,
                      "std": IMAGENET_STD, "invert": False},
        },
        "output": {"kind": "classification",
                   "class_names": [f"class_{i}" for i in range(N_CLASSES)]},
        "explain": {
            # LayerFeatureAblation left out: one forward per channel (512 on layer4)
            "algorithms": algorithms(cam=True, perturbation=("Occlusion",),
                                     layer=tuple(a for a in LAYER_ALGORITHMS + NEURON_ALGORITHMS
                                                 if a != "LayerFeatureAblation")),
            "default_algorithm": "IntegratedGradients",
            # Occlusion's engine defaults (window 4, stride 2) slide 12,321 windows over
            # 224 x 224, above max_features: 32-pixel windows every 16 pixels are 169
            "default_params": {"IntegratedGradients": {"n_steps": 16},
                               "GradientShap": {"n_samples": 8},
                               "Occlusion": {"window": 32, "stride": 16}},
            "layers": {f"layer{i}": f"layer{i}" for i in range(1, 5)},
            "cam_layer": "layer4",
            "default_target": "predicted",
            "top_k_features": 5,
            "reasons": [],
        },
        # "zeros" is the ImageNet mean colour once normalised.
        "baselines": baselines("zeros"),
        # 3x224x224 rows are large: a smaller engine chunk and tighter request limits.
        "limits": {"max_n_steps": 64, "max_n_samples": 64, "max_batch_rows": 16},
        "batch": BATCH,
    }
    metrics = {
        "model": NAME,
        "purpose": "load_test_only",
        "note": label,
        "n_parameters": sum(p.numel() for p in model.parameters()),
    }
    return Built(
        name=NAME, model=model, base="ResNet18", base_args=f"n_classes={N_CLASSES}", spec=spec,
        data_files={
            "baseline_mean.pt": torch.zeros((1, *SHAPE)),    # (1, 3, 224, 224)
            "reference.pt": reference,                       # (16, 3, 224, 224)
        },
        reports={"metrics.json": metrics, EXAMPLES_FILE: examples()},
    )


def examples() -> dict:
    """Two smooth synthetic pictures (there is no dataset, so no true class)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, SHAPE[1]), torch.linspace(0, 1, SHAPE[2]),
                            indexing="ij")                                     # (224, 224)
    rings = 0.5 + 0.5 * torch.cos(18 * torch.hypot(xx - 0.5, yy - 0.5))
    pictures = {"gradient": torch.stack([xx, yy, 1 - xx], -1),
                "rings": torch.stack([rings, 0.5 * rings, 1 - rings], -1)}      # (224, 224, 3)
    names = [f"class_{i}" for i in range(N_CLASSES)]
    return report(NAME, "none (untrained, load test only)", [
        example(f"{NAME}-{k}", {"image": png_b64(v.numpy())}, None, names,
                note="synthetic picture") for k, v in pictures.items()])
