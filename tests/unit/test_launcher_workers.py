"""The launcher registers each model with the workers its spec asks for (``batch.workers``,
default 1); ``--workers`` gives every model that many instead; the torch threads per worker
share the cores out over all of them."""

from __future__ import annotations

import json
import pathlib
import zipfile

import pytest
import yaml

from service.launcher import torchserve as ts
from service.runtime.spec import SpecError, parse_spec


def _spec(name: str, batch: dict | None) -> dict:
    spec = {"name": name, "version": "1.0", "model": {"file": "m.py", "class": "M"},
            "input": {"kind": "tensor", "shape": [3]},
            "output": {"kind": "classification", "class_names": ["a", "b"]}}
    if batch is not None:
        spec["batch"] = batch
    return spec


def _mar(store: pathlib.Path, name: str, batch: dict | None) -> pathlib.Path:
    mar = store / f"{name}.mar"
    with zipfile.ZipFile(mar, "w") as z:
        z.writestr("spec.yaml", yaml.safe_dump(_spec(name, batch)))
    return mar


def _registered(models_cfg: dict) -> dict[str, tuple[int, int, int]]:
    return {name: (v["minWorkers"], v["maxWorkers"], v["batchSize"])
            for name, versions in models_cfg.items() for v in versions.values()}


def test_each_model_gets_its_specs_workers_unless_the_launcher_says(tmp_path) -> None:
    mars = [_mar(tmp_path, "cheap", {"batch_size": 8, "workers": 2}),
            _mar(tmp_path, "plain", {"batch_size": 4}), _mar(tmp_path, "bare", None)]
    _, cfg = ts.models_config(mars)
    assert _registered(cfg) == {"cheap": (2, 2, 8), "plain": (1, 1, 4), "bare": (1, 1, 1)}
    assert ts.total_workers(cfg) == 4
    _, cfg = ts.models_config(mars, workers=3)
    assert _registered(cfg) == {"cheap": (3, 3, 8), "plain": (3, 3, 4), "bare": (3, 3, 1)}
    assert ts.total_workers(cfg) == 9


def test_the_written_config_and_the_threads_count_every_worker(tmp_path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    mars = [_mar(store, "cheap", {"batch_size": 8, "workers": 2}), _mar(store, "plain", None)]
    specs, n = ts.write_config(tmp_path, store, mars, ts.choose_ports(None), False, None)
    assert set(specs) == {"cheap", "plain"} and n == 3
    lines = dict(line.split("=", 1) for line in
                 (tmp_path / "config.properties").read_text().splitlines())
    assert _registered(json.loads(lines["models"])) == {"cheap": (2, 2, 8), "plain": (1, 1, 1)}
    assert ts.worker_threads(n, cores=8) == 2  # 8 cores over 3 workers
    props = ts.models_properties(store)
    assert _registered(json.loads(props.splitlines()[1].split("=", 1)[1]))["cheap"] == (2, 2, 8)


@pytest.mark.parametrize("key", ["workers", "batch_size"])
def test_a_spec_asking_for_no_worker_or_an_empty_batch_is_refused(key) -> None:
    with pytest.raises(SpecError, match=f"batch.{key}"):
        parse_spec(_spec("m", {key: 0}))
