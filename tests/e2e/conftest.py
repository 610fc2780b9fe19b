"""One real TorchServe for the whole session: the bundled archives from model_store/build (built
by `make models`, which `make test` runs first) plus small archives built here (``tiny``: batch
size 4 and every registered algorithm enabled; ``tab``: tabular). Free ports, its own run
directory, token auth on, always stopped at the end (also on failure)."""

from __future__ import annotations

import pathlib
import shutil

import pytest

from model_store.archive import pack_dir
from service import launcher
from tests.serving_fixture import tiny_image, tiny_tabular

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLED_STORE = ROOT / "model_store" / "build"
CLASSIFIERS = ("digits", "breast_cancer", "recommender", "resnet18")   # class_names, reference.pt
TEXT_MODELS = ("tinylm",)                                               # causal LMs
BUNDLED = (*CLASSIFIERS, *TEXT_MODELS)
HANDLER = ROOT / "handlers" / "explain_handler.py"


def archive(src: pathlib.Path, name: str, store: pathlib.Path) -> pathlib.Path:
    return pack_dir(src, name, "1.0", HANDLER, store)


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> dict[str, pathlib.Path]:
    root = tmp_path_factory.mktemp("e2e_models")
    return {"tiny": tiny_image(root, "tiny", batch_size=4), "tab": tiny_tabular(root, "tab")}


@pytest.fixture(scope="session")
def server(tmp_path_factory, sources):
    if shutil.which("java") is None:
        pytest.fail("the end-to-end tests need Java 17 on PATH (TorchServe's frontend)")
    missing = [m for m in BUNDLED if not (BUNDLED_STORE / f"{m}.mar").is_file()]
    if missing:
        pytest.fail(f"bundled archives missing: {missing}; run `make models` (make test does)")
    store = tmp_path_factory.mktemp("store")
    for name, src in sources.items():
        archive(src, name, store)
    for m in BUNDLED:
        (store / f"{m}.mar").symlink_to(BUNDLED_STORE / f"{m}.mar")
    run_dir = tmp_path_factory.mktemp("run") / "e2e"
    srv = launcher.start(store, run_dir, auth=True, timeout=400)
    try:
        yield srv
    finally:
        launcher.stop(run_dir)
