"""Builds each bundled model once per session (in a temp dir, with a placeholder handler)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from model_store._recipe import Built
from model_store.archive import pack

# A stand-in for handlers/explain_handler.py (the serving code's): the archiver only copies it.
PLACEHOLDER_HANDLER = "class PlaceholderHandler:\n    pass\n"


@pytest.fixture(scope="session")
def handler_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("handler") / "placeholder_handler.py"
    path.write_text(PLACEHOLDER_HANDLER)
    return path


_BUILT: dict[str, Built] = {}


def build(name: str) -> Built:
    """The recipe's result, built once per session."""
    if name not in _BUILT:
        _BUILT[name] = importlib.import_module(f"model_store.{name}").build()
    return _BUILT[name]


@pytest.fixture(scope="session")
def archived(tmp_path_factory: pytest.TempPathFactory, handler_file: Path):
    """``archived(name) -> (work_dir, mar_path)``, packed once per session."""
    root = tmp_path_factory.mktemp("model_store")
    done: dict[str, tuple[Path, Path]] = {}

    def get(name: str) -> tuple[Path, Path]:
        if name not in done:
            mar = pack(build(name), root / name, root, handler_file)
            done[name] = (root / name, mar)
        return done[name]

    return get
