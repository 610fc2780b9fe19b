"""The bundled models' recipes: determinism, accuracy, spec schema and archive contents."""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import io
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from torch import nn

from model_store import RECIPES
from model_store.archive import mar_contents

from .conftest import build
from .spec_schema import check_spec

pytestmark = pytest.mark.slow


def _extract(mar: Path, into: Path) -> dict[str, Path]:
    with zipfile.ZipFile(mar) as zf:
        zf.extractall(into)
    return {p.relative_to(into).as_posix(): p for p in into.rglob("*") if p.is_file()}


def _load_archived_model(files: dict[str, Path], spec: dict) -> nn.Module:
    """Imports the archive's model.py by path, as the TorchServe worker does, and loads weights."""
    path = files[spec["model"]["file"]]
    mod_spec = importlib.util.spec_from_file_location(f"_archived_{spec['name']}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    defined = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module.__name__]
    # torch-model-archiver / TorchServe: the model file defines exactly one class.
    assert [c.__name__ for c in defined] == [spec["model"]["class"]]
    model = defined[0]()
    state = torch.load(files[spec["model"]["weights"]], weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval()


@pytest.fixture(params=RECIPES)
def name(request) -> str:
    return request.param


@pytest.fixture
def unpacked(name, archived, tmp_path):
    work, mar = archived(name)
    files = _extract(mar, tmp_path)
    spec = yaml.safe_load(files["spec.yaml"].read_text())
    return work, files, spec


def test_spec_follows_the_contract(name, unpacked):
    _, files, spec = unpacked
    check_spec(spec, files)
    assert spec["name"] == name


def test_spec_layers_are_modules_run_once(name, unpacked):
    """Every layer a request may name is a module of the archived model that runs once per
    forward (a layer hooked twice would make layer attributions wrong)."""
    _, files, spec = unpacked
    if spec["input"]["kind"] == "text":   # text requests name no layer (LLM methods use emb)
        assert not spec["explain"].get("layers")
        return
    model = _load_archived_model(files, spec)
    calls: dict[str, int] = {}
    handles = [model.get_submodule(path).register_forward_hook(
        lambda m, a, o, n=n: calls.__setitem__(n, calls.get(n, 0) + 1))
        for n, path in spec["explain"].get("layers", {}).items()]
    with torch.no_grad():
        model(torch.zeros(1, *spec["input"]["shape"]))
    for h in handles:
        h.remove()
    assert calls == {n: 1 for n in spec["explain"].get("layers", {})}
    assert spec["explain"].get("layers"), "every bundled model lists layers"


def test_archive_holds_the_expected_files(name, archived, handler_file):
    _, mar = archived(name)
    contents = mar_contents(mar)
    spec = yaml.safe_load(contents["spec.yaml"])
    data = ({spec["input"]["text"]["tokenizer"]} if spec["input"]["kind"] == "text"
            else {"baseline_mean.pt", "reference.pt"})
    assert set(contents) == {"MAR-INF/MANIFEST.json", "model.py", "weights.pt", "spec.yaml",
                             handler_file.name} | data
    manifest = json.loads(contents["MAR-INF/MANIFEST.json"])
    assert manifest["model"]["modelName"] == name
    assert manifest["model"]["handler"] == handler_file.name
    assert manifest["model"]["serializedFile"] == "weights.pt"
    assert manifest["model"]["modelFile"] == "model.py"
    assert contents[handler_file.name].decode() == handler_file.read_text()


def test_archived_model_reproduces_the_trained_one(name, unpacked):
    _, files, spec = unpacked
    model = _load_archived_model(files, spec)
    if spec["input"]["kind"] == "text":   # token ids of the probe prompts; logits compared
        from service.nets import WordTokenizer

        tok = WordTokenizer.load(files[spec["input"]["text"]["tokenizer"]])
        prompts = [p["prompt"] for p in importlib.import_module(f"model_store.{name}").probes()]
        reference = torch.tensor([tok.encode(p) for p in prompts
                                  if len(p.split()) == len(prompts[0].split())])
        with torch.no_grad():
            out, expected = model(reference).logits, build(name).model(reference).logits
        assert out.shape == (*reference.shape, tok.vocab_size)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)
        return
    reference = torch.load(files["reference.pt"], weights_only=True)
    with torch.no_grad():
        out = model(reference)
        expected = build(name).model(reference)
    assert out.shape == (reference.shape[0], len(spec["output"]["class_names"]))
    torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_two_builds_give_identical_weights_and_data(name):
    first = build(name)
    second = importlib.import_module(f"model_store.{name}").build()
    a, b = first.model.state_dict(), second.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert first.data_files.keys() == second.data_files.keys()
    for key in first.data_files:
        assert torch.equal(first.data_files[key], second.data_files[key]), key
    assert first.spec == second.spec
    assert first.reports == second.reports  # metrics, planted effects, examples.json
    # The global RNG and thread settings are the caller's again.
    assert not torch.are_deterministic_algorithms_enabled()


def test_digits_held_out_accuracy_through_png_bytes(archived, tmp_path):
    """Held-out digits, saved as 8-bit PNGs and decoded with the spec's image block, as a client
    would send them."""
    digits = importlib.import_module("model_store.digits")
    work, mar = archived("digits")
    files = _extract(mar, tmp_path)
    spec = yaml.safe_load(files["spec.yaml"].read_text())
    model = _load_archived_model(files, spec)
    _, _, x_test, y_test = digits.split()
    image = spec["input"]["image"]
    rows = []
    for x in x_test:
        buf = io.BytesIO()
        Image.fromarray((x[0].numpy() * 255).round().astype(np.uint8), mode="L").save(buf, "PNG")
        img = Image.open(io.BytesIO(buf.getvalue())).convert(image["mode"])
        img = img.resize(tuple(image["size"]))
        t = torch.tensor(np.asarray(img), dtype=torch.float32)[None] / image["scale"]
        rows.append((t - image["mean"][0]) / image["std"][0])
    with torch.no_grad():
        acc = (model(torch.stack(rows)).argmax(1) == y_test).float().mean().item()
    metrics = json.loads((work / "metrics.json").read_text())
    assert acc > 0.95
    assert metrics["held_out_accuracy"] > 0.95
    assert abs(acc - metrics["held_out_accuracy"]) <= 2 / len(y_test)   # 8-bit rounding
    assert metrics["n_held_out"] == len(y_test) == 360


def test_breast_cancer_held_out_accuracy_from_raw_features(archived, tmp_path):
    """Raw held-out rows, standardised with the spec's scaler as the runtime does."""
    from sklearn.datasets import load_breast_cancer

    bc = importlib.import_module("model_store.breast_cancer")
    work, mar = archived("breast_cancer")
    files = _extract(mar, tmp_path)
    spec = yaml.safe_load(files["spec.yaml"].read_text())
    assert spec["input"]["feature_names"] == list(load_breast_cancer().feature_names)
    assert len(spec["input"]["feature_names"]) == 30
    assert spec["output"]["class_names"] == ["malignant", "benign"]
    model = _load_archived_model(files, spec)
    _, _, x_test, y_test, _, _ = bc.split()
    scaler = spec["input"]["scaler"]
    z = (x_test - torch.tensor(scaler["mean"])) / torch.tensor(scaler["std"])
    with torch.no_grad():
        acc = (model(z).argmax(1) == y_test).float().mean().item()
    metrics = json.loads((work / "metrics.json").read_text())
    assert acc > 0.93
    assert acc == pytest.approx(metrics["held_out_accuracy"], abs=1e-4)
    # The "mean" baseline is the training mean in the model's (standardised) input space.
    mean = torch.load(files["baseline_mean.pt"], weights_only=True)
    torch.testing.assert_close(mean, torch.zeros(1, 30), atol=1e-5, rtol=0)


def test_cli_rejects_unknown_model_names(capsys):
    from model_store.__main__ import main

    with pytest.raises(SystemExit):
        main(["nope"])
    assert "unknown model(s) ['nope']" in capsys.readouterr().err


def test_pack_names_a_missing_handler(tmp_path):
    from model_store.archive import pack

    with pytest.raises(FileNotFoundError, match="handler file not found"):
        pack(build("breast_cancer"), tmp_path / "w", tmp_path, tmp_path / "missing.py")


def test_resnet18_is_labelled_load_test_only_and_shares_the_bench_architecture(archived):
    from bench.models import ResNet18 as BenchResNet18
    from service.nets import ResNet18

    work, _ = archived("resnet18")
    spec = yaml.safe_load((work / "spec.yaml").read_text())
    assert spec["purpose"] == "load_test_only"
    assert "LOAD TEST ONLY" in spec["description"]
    assert json.loads((work / "metrics.json").read_text())["purpose"] == "load_test_only"
    assert BenchResNet18 is ResNet18
    model = build("resnet18").model
    assert isinstance(model, ResNet18)
    assert sum(p.numel() for p in model.parameters()) == 11_689_512   # torchvision's resnet18


@pytest.mark.parametrize("name", ["breast_cancer", "recommender"])
def test_cli_build_in_a_fresh_process_matches_the_in_process_build(name, handler_file, tmp_path):
    """`make models` runs the CLI in its own process: same weights and data, bit for bit."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "model_store", name, "--handler", str(handler_file),
                    "--out", str(tmp_path)], cwd=root, check=True, capture_output=True)
    built = build(name)
    state = torch.load(tmp_path / name / "weights.pt", weights_only=True)
    for key, value in built.model.state_dict().items():
        assert torch.equal(state[key], value), key
    for fname, tensor in built.data_files.items():
        assert torch.equal(torch.load(tmp_path / name / fname, weights_only=True), tensor), fname
    assert yaml.safe_load((tmp_path / name / "spec.yaml").read_text()) == built.spec
