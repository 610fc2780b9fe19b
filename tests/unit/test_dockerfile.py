"""Static checks of the Dockerfile (no Docker engine here): stages, order, user, ports, health."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "Dockerfile").read_text()
PORTS = {"8080", "8081", "8082", "50051"}


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE)
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _stages() -> dict[str, list[tuple[str, str]]]:
    stages: dict[str, list[tuple[str, str]]] = {}
    current = None
    for word, rest in _instructions():
        if word == "FROM":
            current = rest.split(" AS ")[-1].strip()
            stages[current] = []
        elif current is not None:
            stages[current].append((word, rest))
    return stages


def test_multi_stage_with_dependencies_before_sources():
    stages = _stages()
    assert list(stages) == ["deps", "models", "runtime"]
    deps = stages["deps"]
    copied = [rest for word, rest in deps if word == "COPY"]
    assert copied == ["pyproject.toml constraints.txt ./"]    # no source in the deps layer
    runtime = stages["runtime"]
    order = [(w, r) for w, r in runtime if w in ("COPY", "RUN")]
    venv = order.index(("COPY", "--from=deps /opt/venv /opt/venv"))
    first_source = next(i for i, (w, r) in enumerate(order) if r.startswith("service/"))
    assert venv < first_source


def test_python_311_and_java_17_runtime():
    assert "ARG PYTHON_IMAGE=python:3.11-" in DOCKERFILE
    runtime = " ".join(r for _, r in _stages()["runtime"])
    assert "openjdk-17-jre-headless" in runtime


def test_models_are_built_at_image_build_by_the_recipes():
    models = " ".join(r for w, r in _stages()["models"] if w == "RUN")
    assert "python -m model_store --handler handlers/explain_handler.py --out /models" in models
    assert ("COPY", "--from=models /models/*.mar model_store/build/") in _stages()["runtime"]


def test_runs_as_non_root_exposes_ports_and_has_a_health_check():
    runtime = _stages()["runtime"]
    users = [r for w, r in runtime if w == "USER"]
    assert users and not users[-1].startswith(("root", "0"))
    exposed = {p for w, r in runtime if w == "EXPOSE" for p in r.split()}
    assert exposed == PORTS
    health = [r for w, r in runtime if w == "HEALTHCHECK"]
    assert health and "docker/healthcheck.py" in health[0]
    assert (ROOT / "docker" / "healthcheck.py").is_file()


def test_torchserve_config_matches_the_exposed_ports():
    config = dict(line.split("=", 1) for line in
                  (ROOT / "docker" / "config.properties").read_text().splitlines()
                  if line and not line.startswith("#"))
    assert config["inference_address"] == "http://0.0.0.0:8080"
    # management and metrics on loopback unless exposed deliberately (TS_*_ADDRESS variables)
    assert config["management_address"] == "http://127.0.0.1:8081"
    assert config["metrics_address"] == "http://127.0.0.1:8082"
    assert config["enable_envvars_config"] == "true"
    assert "log4j.configurationFile=file:///app/docker/log4j2.xml" in config["vmargs"]
    assert (ROOT / "docker" / "log4j2.xml").is_file()
    # the models are registered by the lines the image build appends (models-config: batch
    # size and delay from each spec); `--models all` as well would register every model twice
    # and TorchServe exits ("Model version 1.0 is already registered"), and alone it means
    # batch size 1
    assert "load_models" not in config
    assert "--models all" not in (ROOT / "docker" / "entrypoint.sh").read_text()
    runtime = " ".join(r for w, r in _stages()["runtime"] if w == "RUN")
    assert ("python -m service.launcher models-config --model-store /app/model_store/build "
            ">> /app/docker/config.properties") in " ".join(runtime.split())


def test_models_config_registers_the_archives_with_their_batching():
    """What the image build appends: every archive with its spec's batch size and workers
    (digits: 8 and 2)."""
    import json

    from service.launcher.torchserve import models_properties

    store = ROOT / "model_store" / "build"
    if not (store / "digits.mar").is_file():
        import pytest

        pytest.skip("make models first")
    lines = dict(line.split("=", 1) for line in models_properties(store).splitlines())
    assert "digits.mar" in lines["load_models"].split(",")
    digits = json.loads(lines["models"])["digits"]
    (version,) = digits.values()
    import yaml

    spec = yaml.safe_load((store / "digits" / "spec.yaml").read_text())
    assert version["batchSize"] == spec["batch"]["batch_size"] > 1
    assert version["minWorkers"] == version["maxWorkers"] == spec["batch"]["workers"] == 2
    assert version["marName"] == "digits.mar"


def test_build_context_keeps_what_the_dockerfile_copies():
    ignored = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    for word, rest in _instructions():
        if word != "COPY" or rest.startswith("--from"):
            continue
        for src in rest.split()[:-1]:
            top = src.rstrip("/").split("/")[0]
            assert top not in {i.rstrip("/") for i in ignored}, src
    assert "model_store/build/" in ignored and ".venv" in ignored
