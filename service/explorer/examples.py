"""The bundled examples: ``<examples_dir>/<model>/examples.json``, written by the recipes in
model_store/ (``make models``)."""

from __future__ import annotations

import json
import pathlib
import re
from typing import Any

MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")  # TorchServe model names


def valid_model_name(name: str) -> bool:
    return bool(MODEL_NAME.match(name)) and ".." not in name


def load_examples(examples_dir: pathlib.Path, model: str) -> dict[str, Any] | None:
    """The model's examples file, or None when the model ships none (or the name is not a
    model name: never a path outside ``examples_dir``)."""
    if not valid_model_name(model):
        return None
    path = examples_dir / model / "examples.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())
