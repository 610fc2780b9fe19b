"""The launcher's memory settings (service/launcher/torchserve.py: MEMORY_ENV, JAVA_OPTS), the
same in the container, and an operator's own values winning."""

from __future__ import annotations

import pathlib

from service.launcher import torchserve as ts

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _vmargs(run_dir: pathlib.Path) -> str:
    for line in (run_dir / "config.properties").read_text().splitlines():
        if line.startswith("vmargs="):
            return line.removeprefix("vmargs=")
    raise AssertionError("no vmargs line")


def test_server_env_sets_malloc_unless_the_operator_did(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    env = ts.server_env(tmp_path)
    assert {k: env[k] for k in ts.MEMORY_ENV} == ts.MEMORY_ENV
    assert not set(ts.MEMORY_ENV) & set(ts.server_env(tmp_path, memory_tuning=False))
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert ts.server_env(tmp_path)["MALLOC_ARENA_MAX"] == "4"
    assert env["TMPDIR"] == str(tmp_path / "tmp")


def test_vmargs_tuned_untuned_and_overridden(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("EXPLAIN_JAVA_OPTS", raising=False)
    ports = ts.choose_ports(None)
    ts.write_config(tmp_path, tmp_path, [], ports, True, 1)
    assert _vmargs(tmp_path).startswith(ts.JAVA_OPTS + " -Dlog4j.configurationFile=")
    ts.write_config(tmp_path, tmp_path, [], ports, True, 1, memory_tuning=False)
    assert _vmargs(tmp_path).startswith(ts.JAVA_OPTS_UNTUNED + " -D")
    monkeypatch.setenv("EXPLAIN_JAVA_OPTS", "-Xmx1g")
    ts.write_config(tmp_path, tmp_path, [], ports, True, 1)
    assert _vmargs(tmp_path).startswith("-Xmx1g -D")


def test_the_container_uses_the_same_settings() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    for key, value in ts.MEMORY_ENV.items():
        assert f"{key}={value}" in dockerfile
    assert _vmargs(ROOT / "docker").startswith(ts.JAVA_OPTS + " ")


def test_worker_threads_share_the_cores_out() -> None:
    assert ts.worker_threads(5, cores=2) == 1      # the bundled models on the 2-core machine
    assert ts.worker_threads(4, cores=32) == 8
    assert ts.worker_threads(3, cores=32) == 10    # rounded down: never more threads than cores
    assert ts.worker_threads(0, cores=4) == 4
    assert ts.worker_threads(1) >= 1


def test_server_env_sets_threads_unless_the_operator_did(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert ts.server_env(tmp_path, threads=3)["OMP_NUM_THREADS"] == "3"
    assert "OMP_NUM_THREADS" not in ts.server_env(tmp_path)  # 0: left to torch
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert ts.server_env(tmp_path, threads=3)["OMP_NUM_THREADS"] == "2"
