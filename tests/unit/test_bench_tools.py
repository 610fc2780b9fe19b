"""bench/service_throughput's window sizing and bench/machine_load's meter."""

from __future__ import annotations

import math
import os
import pathlib
import time

from bench.machine_load import LoadMeter, instance_pids
from bench.service_throughput import MAX_WINDOW_S, MIN_COMPLETIONS, window_seconds


def test_window_scales_to_latency_within_bounds() -> None:
    assert window_seconds(20, 0.05) == 20
    assert window_seconds(20, 3.0) == math.ceil(MIN_COMPLETIONS * 3.0)
    assert window_seconds(20, 1e4) == MAX_WINDOW_S


def test_meter_counts_its_own_busy_loop(tmp_path: pathlib.Path) -> None:
    meter = LoadMeter(tmp_path)
    wall0 = time.monotonic()
    meter.start()
    t0 = time.process_time()
    while time.process_time() - t0 < 0.3:
        pass
    load = meter.stop()
    wall = time.monotonic() - wall0
    cores = os.cpu_count() or 1
    assert 0.0 <= load.ours <= load.busy <= 1.0 + 1e-9
    assert load.ours >= 0.8 * 0.3 / (wall * cores)  # this loop's CPU is ours, not "other"
    assert math.isclose(load.other, max(load.busy - load.ours, 0.0))
    assert "machine busy" in load.describe()


def test_instance_pids_find_processes_naming_the_run_dir(tmp_path: pathlib.Path) -> None:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)",
                             str(tmp_path)])
    try:
        deadline = time.time() + 5
        while proc.pid not in instance_pids(tmp_path) and time.time() < deadline:
            time.sleep(0.05)
        assert proc.pid in instance_pids(tmp_path)
        assert os.getpid() not in instance_pids(tmp_path)
    finally:
        proc.kill()
        proc.wait()


def test_stage_clock_charges_nested_time_once() -> None:
    import sys
    import types

    from bench.stages import StageClock

    mod = types.ModuleType("stage_clock_probe")

    def inner() -> None:
        time.sleep(0.05)

    def outer() -> None:
        time.sleep(0.01)
        mod.inner()

    mod.inner, mod.outer = inner, outer
    sys.modules[mod.__name__] = mod
    try:
        clock = StageClock((("outer", "stage_clock_probe:outer"), ("inner", "stage_clock_probe:inner"),
                            ("gone", "stage_clock_probe:nothing"))).install()
        mod.outer()
        clock.remove()
        mod.outer()  # removed: not counted
    finally:
        del sys.modules[mod.__name__]
    t = clock.snapshot()
    # outer's own 10 ms, not its 60 ms with inner's 50 ms counted again
    assert t["inner"] >= 0.05 and 0.01 <= t["outer"] < 0.045
    assert clock.missing == ["stage_clock_probe:nothing"] and mod.outer is outer


def test_soak_slope_is_the_least_squares_rate_per_minute() -> None:
    from bench.soak import slope_mb_per_min

    samples = [{"t_s": t, "rss_mb": {"p": 100.0 + 0.5 * t / 10}} for t in range(0, 300, 10)]
    assert slope_mb_per_min(samples, "p", 60, 290) == 3.0   # 0.5 MB per 10 s
    assert slope_mb_per_min(samples, "p", 60, 70) is None     # fewer than 3 points
    flat = [{"t_s": t, "rss_mb": {"p": 50.0 + (t % 20 == 0)}} for t in range(0, 600, 10)]
    assert abs(slope_mb_per_min(flat, "p", 0, 600)) <= 0.02   # a plateau with noise: ~0


def test_wrk_window_reads_wrks_summary_line(tmp_path: pathlib.Path, monkeypatch) -> None:
    """service_throughput --load wrk: the window's figures come from the summary line the
    Lua script's done() writes (a stand-in wrk on PATH prints one), and a run that completed
    nothing reports 0 rps with a note instead of failing the whole bench."""
    import types

    from bench.service_throughput import WRK_SCRIPT, wrk_run

    assert "done = function(summary, latency, requests)" in WRK_SCRIPT
    fake = tmp_path / "wrk"
    fake.write_text("#!/bin/sh\necho 'Running 8s test'\n"
                    "echo '{\"requests\": 4000, \"seconds\": 2.000000, \"failures\": 3, "
                    "\"p50\": 1.500, \"p95\": 4.000, \"p99\": 9.250}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    server = types.SimpleNamespace(inference_url="http://127.0.0.1:1")
    body = tmp_path / "body.json"
    body.write_text("{}")
    res = wrk_run(server, "m", "predictions", body, "application/json", 16, 2,
                  tmp_path / "out")
    assert (res["requests"], res["failures"], res["rps"]) == (4000, 3, 2000.0)
    assert (res["p50"], res["p95"], res["p99"]) == (1.5, 4.0, 9.25)
    assert (tmp_path / "out.lua").read_text() == WRK_SCRIPT
    fake.write_text("#!/bin/sh\necho 'unable to connect to 127.0.0.1:1' >&2\nexit 1\n")
    res = wrk_run(server, "m", "predictions", body, "application/json", 16, 2,
                  tmp_path / "out")
    assert res["rps"] == 0.0 and "unable to connect" in res["note"]


class _RecordingContext:
    def __init__(self, model_dir) -> None:
        self.system_properties = {"model_dir": str(model_dir)}
        self.request_ids = {0: "r0", 1: "r1", 2: "r2"}
        self.content_types: dict[int, str] = {}
        self.headers_read: list[int] = []

    def get_all_request_header(self, idx):
        self.headers_read.append(idx)
        return {"Content-Type": "application/json"}

    def get_request_header(self, idx, key):
        return None

    def set_response_content_type(self, idx, value):
        self.content_types[idx] = value


def test_the_null_handler_answers_its_specs_text_and_handles_headers_only_when_asked(tmp_path):
    import yaml

    from bench.null_handler import NullHandler

    def served(spec: dict) -> tuple[list[str], dict[int, str], list[int]]:
        (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
        ctx = _RecordingContext(tmp_path)
        h = NullHandler()
        h.initialize(ctx)
        return h.handle([{}, {}, {}], ctx), ctx.content_types, ctx.headers_read

    assert served({"name": "m"}) == (["{}"] * 3, {}, [])
    answer = '{"model": "m", "x": "' + "a" * 50 + '"}'
    assert served({"null_handler": {"answer": answer}}) == ([answer] * 3, {}, [])
    assert served({"null_handler": {"answer": answer, "headers": True}}) == (
        [answer] * 3, {i: "application/json" for i in range(3)}, [0, 1, 2])
