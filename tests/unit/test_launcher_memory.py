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


def test_small_models_workers_raise_the_fixed_mmap_threshold() -> None:
    from service.runtime import malloc

    fixed = {"MALLOC_MMAP_THRESHOLD_": ts.MEMORY_ENV["MALLOC_MMAP_THRESHOLD_"]}
    assert malloc.threshold_for((1, 28, 28), fixed) == 32 * 2**20     # digits
    assert malloc.threshold_for((30,), fixed) == 32 * 2**20           # breast_cancer
    assert malloc.threshold_for((3, 224, 224), fixed) is None         # resnet18 keeps 128 KiB
    assert malloc.threshold_for((1, 28, 28), {}) is None              # glibc's dynamic one
    assert malloc.threshold_for((30,), {"MALLOC_MMAP_THRESHOLD_": str(64 * 2**20)}) == 64 * 2**20


def test_the_handler_applies_it(tmp_path, monkeypatch) -> None:
    """In a process started with the launcher's fixed threshold, a small model's handler raises
    it (observable: a 1 MiB block is then taken from the heap, not mmap'ed)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import ctypes, sys
        from service.runtime import malloc
        class Info(ctypes.Structure):
            _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks",
                        "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = Info
        libc.malloc.restype = ctypes.c_void_p
        def mmapped_after_malloc():
            p = libc.malloc(1 << 20)
            n = libc.mallinfo2().hblks
            libc.free(ctypes.c_void_p(p))
            return n
        before = mmapped_after_malloc()
        assert malloc.tune_worker((1, 28, 28)) == 32 * 2**20
        after = mmapped_after_malloc()
        print(before, after)
    """)
    env = {**__import__("os").environ, **ts.MEMORY_ENV, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert int(out[0]) >= 1 and int(out[1]) == int(out[0]) - 1, out
