"""The serving contract's spec.yaml schema, checked key by key (the runtime's ModelSpec parses the
same file; this checker keeps the recipes honest without depending on the runtime)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TOP_KEYS = {"name", "version", "description", "purpose", "model", "input", "output", "explain",
            "baselines"}
OPTIONAL_TOP = {"limits", "batch"}
PURPOSES = {"production", "load_test_only"}
INPUT_KINDS = {"image", "tensor", "tabular", "text"}
TEXT_KEYS = {"tokenizer", "embedding_layer", "stop_token", "baseline_token", "skip_tokens",
             "example"}
IMAGE_KEYS = {"mode", "size", "scale", "mean", "std", "invert"}
BASELINE_KINDS = {"zeros", "tensor", "reference_set"}
LIMIT_KEYS = {"max_n_steps", "max_n_samples", "max_batch_rows", "max_new_tokens"}


def check_spec(spec: dict[str, Any], files: dict[str, Path]) -> None:
    """Raises AssertionError naming the first violation. ``files``: archive file name -> path."""
    if spec.get("input", {}).get("kind") == "text":
        check_text_spec(spec, files)
        return
    assert TOP_KEYS <= spec.keys(), f"missing keys {TOP_KEYS - spec.keys()}"
    unknown = spec.keys() - TOP_KEYS - OPTIONAL_TOP
    assert not unknown, f"unknown keys {unknown}"
    assert isinstance(spec["name"], str) and spec["name"]
    assert isinstance(spec["version"], str), "version must be a string"
    assert isinstance(spec["description"], str) and spec["description"]
    assert spec["purpose"] in PURPOSES, spec["purpose"]

    model = spec["model"]
    assert model.keys() == {"file", "class", "weights"}, model.keys()
    assert model["file"] in files and model["weights"] in files

    inp = spec["input"]
    assert inp["kind"] in INPUT_KINDS, inp["kind"]
    shape = inp["shape"]
    assert isinstance(shape, list) and all(isinstance(d, int) and d > 0 for d in shape), shape
    if inp["kind"] == "image":
        image = inp["image"]
        assert image.keys() == IMAGE_KEYS, image.keys()
        channels = {"L": 1, "RGB": 3}[image["mode"]]
        assert shape[0] == channels and list(image["size"]) == shape[1:], (shape, image)
        assert len(image["mean"]) == len(image["std"]) == channels
        assert all(s > 0 for s in image["std"]) and image["scale"] > 0
        assert isinstance(image["invert"], bool)
        assert "feature_names" not in inp
    if inp["kind"] == "tabular":
        assert len(shape) == 1
        names = inp["feature_names"]
        assert len(names) == shape[0] and len(set(names)) == len(names)
        assert all(isinstance(n, str) and n for n in names)
        if "scaler" in inp:
            scaler = inp["scaler"]
            assert len(scaler["mean"]) == len(scaler["std"]) == shape[0]
            assert all(s > 0 for s in scaler["std"])

    out = spec["output"]
    assert out["kind"] == "classification"
    classes = out["class_names"]
    assert classes and all(isinstance(c, str) for c in classes)
    assert len(set(classes)) == len(classes)

    ex = spec["explain"]
    assert ex["default_algorithm"] in ex["algorithms"]
    assert set(ex["default_params"]) <= set(ex["algorithms"])
    target = ex["default_target"]
    assert target == "predicted" or target in classes or (
        isinstance(target, int) and 0 <= target < len(classes)), target
    assert isinstance(ex["top_k_features"], int) and ex["top_k_features"] > 0
    for reason in ex.get("reasons", []):
        assert reason.keys() == {"prefix", "template"} and "{name}" in reason["template"]
    layers = ex.get("layers", {})
    assert isinstance(layers, dict), layers
    for name, module in layers.items():
        assert isinstance(name, str) and name and isinstance(module, str) and module, name
    if "cam_layer" in ex:
        assert ex["cam_layer"] in layers, ("cam_layer must be one of the layers", ex["cam_layer"])
    if "default_layer" in ex:
        assert ex["default_layer"] in layers, ex["default_layer"]
    on_layer = [a for a in ex["algorithms"] if a.startswith(("Layer", "Neuron", "Internal",
                                                             "GuidedGradCam"))]
    assert not on_layer or layers, ("layer methods need explain.layers", on_layer)

    base = spec["baselines"]
    assert base["default"] in base["definitions"]
    for label, definition in base["definitions"].items():
        kind = definition["kind"]
        assert kind in BASELINE_KINDS, (label, kind)
        if kind == "zeros":
            continue
        assert definition["file"] in files, (label, definition["file"])
        tensor = torch.load(files[definition["file"]], weights_only=True)
        assert tensor.dtype == torch.float32, (label, tensor.dtype)
        assert list(tensor.shape[1:]) == shape, (label, tuple(tensor.shape))
        if kind == "tensor":
            assert tensor.shape[0] == 1, (label, tuple(tensor.shape))
        else:
            assert 16 <= tensor.shape[0] <= 32, (label, tuple(tensor.shape))
        assert torch.isfinite(tensor).all(), label

    for key, value in spec.get("limits", {}).items():
        assert key in LIMIT_KEYS and isinstance(value, int) and value > 0, (key, value)
    if "batch" in spec:
        batch = spec["batch"]
        assert {"batch_size", "max_batch_delay_ms"} <= batch.keys() <= {
            "batch_size", "max_batch_delay_ms", "workers"}, batch.keys()
        assert batch["batch_size"] >= 1 and batch["max_batch_delay_ms"] >= 0
        assert type(batch.get("workers", 1)) is int and batch.get("workers", 1) >= 1


def check_text_spec(spec: dict[str, Any], files: dict[str, Path]) -> None:
    """A causal LM's spec: no classes and no tensor baselines; a tokenizer file and the token
    settings the explanations use."""
    import json

    keys = TOP_KEYS - {"baselines"}
    assert keys <= spec.keys(), f"missing keys {keys - spec.keys()}"
    unknown = spec.keys() - keys - OPTIONAL_TOP
    assert not unknown, f"unknown keys {unknown}"
    assert spec["purpose"] in PURPOSES, spec["purpose"]
    assert spec["model"]["file"] in files and spec["model"]["weights"] in files
    inp = spec["input"]
    assert len(inp["shape"]) == 1 and inp["shape"][0] > 0, inp["shape"]   # the context length
    text = inp["text"]
    assert text.keys() == TEXT_KEYS, text.keys()
    words = json.loads(files[text["tokenizer"]].read_text())["words"]
    for token in [text["stop_token"], text["baseline_token"], *text["skip_tokens"]]:
        assert token in words, token
    example = text["example"]
    assert example["template"].format(**example["values"]), example
    assert spec["output"] == {"kind": "generation"}
    ex = spec["explain"]
    assert ex["default_algorithm"] in ex["algorithms"]
    assert set(ex["default_params"]) <= set(ex["algorithms"])
    assert ex["default_target"] == "generated"
    assert isinstance(ex["top_k_features"], int) and ex["top_k_features"] > 0
    for key, value in spec.get("limits", {}).items():
        assert key in LIMIT_KEYS and isinstance(value, int) and value > 0, (key, value)
