"""Chaos: ``python -m bench.chaos [--victim digits] [--concurrency 8]``.

Starts its own instance (service.launcher: own run directory under run/, free ports, token auth
on, all traffic to 127.0.0.1) and puts it under mixed REST + gRPC load (bench/load.py). Mid-load
it ``kill -9``s the victim model's TorchServe worker (its pid from the management API, checked
to be a descendant of this instance's own frontend), then the gateway (its pid checked to be
the child of this instance's supervisor). It reports requests failed (and which), seconds until
the model answers again, where the restart's time went (TorchServe spawning the new worker,
the worker registered and READY, the CPU seconds it used to get there: wall time far above it
means the machine's other load), seconds until the gateway serves again (restarted by the
supervisor), whether fixed probe requests answer identically before and after, and the
machine's load (bench/machine_load.py). Results also go to
bench/results/chaos-<stamp>.json. Goals: only the killed worker's in-flight batch fails
(the victim's batch size at most), the model answers again within 10 s, the gateway within 5 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pathlib
import random
import signal
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter

from google.protobuf import json_format

from bench.load import Keys, Load, Sender, request_for
from bench.machine_load import LoadMeter
from service import launcher
from service._proto.explain.v1 import explain_pb2 as pb
from service.gateway import process as gw_process
from service.launcher import procs, supervisor

ROOT = pathlib.Path(__file__).resolve().parents[1]


def canonical(raw: bytes, transport: str) -> bytes:
    """The answer without its per-call fields (request id, timings), serialized
    deterministically."""
    m = pb.ExplainResponse()
    if transport == "rest":
        json_format.Parse(raw, m, ignore_unknown_fields=True)
    else:
        m.ParseFromString(raw)
    m.ClearField("request_id")
    m.ClearField("timings")
    return m.SerializeToString(deterministic=True)


def probes(server: launcher.Server, victim: str) -> list[tuple[str, bool, pb.ExplainRequest]]:
    rng = random.Random(7)
    allowed = server.models[victim].get("explain", {}).get("algorithms", [])
    algo = "IntegratedGradients" if "IntegratedGradients" in allowed else allowed[0]
    explain = request_for(server, victim, algo, {"n_steps": 16} if algo == "IntegratedGradients"
                          else {}, rng)
    predict = request_for(server, victim, None, {}, rng)
    return [("rest", True, explain), ("grpc", True, explain), ("rest", False, predict),
            ("grpc", False, predict)]


def answers(sender: Sender, reqs) -> list[bytes | None]:
    out = []
    for transport, explain, req in reqs:
        ok, status, detail, raw = sender.send(transport, req, explain)
        out.append(canonical(raw, transport) if ok else None)
    return out


class Probe(threading.Thread):
    """Sequential victim predictions over REST from ``since`` on: (sent, done, ok) each."""

    def __init__(self, server: launcher.Server, keys: Keys, victim: str) -> None:
        super().__init__(daemon=True)
        self.sender = Sender(server, keys, timeout=60)
        self.request = request_for(server, victim, None, {}, random.Random(3))
        self.results: list[tuple[float, float, bool]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t0 = time.monotonic()
            ok, *_ = self.sender.rest(self.request, False)
            self.results.append((t0, time.monotonic(), ok))
            time.sleep(0.05)

    def median_latency_before(self, t: float) -> float | None:
        lat = sorted(d - s for s, d, ok in self.results if ok and d < t)
        return lat[len(lat) // 2] if lat else None

    def first_answer_after(self, t: float) -> float | None:
        done = [d for s, d, ok in self.results if ok and s >= t]
        return min(done) - t if done else None


def kill_worker(server: launcher.Server, victim: str) -> tuple[int, float]:
    front = server.frontend_pid()
    pids = server.worker_pids().get(victim) or []
    if front is None or not pids:
        raise RuntimeError(f"no worker of {victim!r} under this instance's frontend")
    pid = pids[0]
    assert pid in procs.descendants(front)  # worker_pids() checked it; never another instance's
    t = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return pid, t


def kill_gateway(server: launcher.Server) -> tuple[int, float]:
    pid = int(gw_process.pid_file(server.run_dir).read_text())
    sup = supervisor.running_pid(server.run_dir)
    if sup is None or pid not in procs.children(sup) or \
            not any("service.gateway" in a for a in procs.cmdline(pid)):
        raise RuntimeError(f"pid {pid} is not this instance's gateway")
    t = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    return pid, t


CLK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def started_s_ago(pid: int) -> float:
    """Seconds since ``pid`` started (its start time in /proc, exact whatever the polling)."""
    boot_now = time.clock_gettime(time.CLOCK_BOOTTIME)
    return boot_now - int(_stat(pid)[19]) / CLK


def cpu_s(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used."""
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / CLK


def wait_new_worker(server: launcher.Server, victim: str, old: int, t_kill: float,
                    timeout: float = 60) -> dict[str, float]:
    """Where a restart's time goes, in seconds after the kill: ``spawned`` (TorchServe started
    the new worker process), ``registered`` (the management API lists its pid), ``ready``
    (READY: torch imported, the handler initialized), and the CPU seconds the new worker used
    to get READY (wall time over CPU time is how much the machine's other load slowed it)."""
    out: dict[str, float] = {}
    while time.monotonic() - t_kill < timeout:
        code, body = torchserve_get(server, f"/models/{victim}")
        workers = json.loads(body)[0].get("workers", []) if code == 200 else []
        new = [w for w in workers if w.get("pid") and int(w["pid"]) != old]
        if new:
            pid = int(new[0]["pid"])
            now = time.monotonic()
            out.setdefault("registered", now - t_kill)
            with contextlib.suppress(OSError, IndexError, ValueError):
                out.setdefault("spawned", now - t_kill - started_s_ago(pid))
            if new[0].get("status") == "READY":
                out["ready"] = now - t_kill
                with contextlib.suppress(OSError, IndexError, ValueError):
                    out["worker_cpu_to_ready"] = cpu_s(pid)
                return {k: round(v, 2) for k, v in out.items()}
        time.sleep(0.1)
    raise TimeoutError(f"no new READY {victim} worker after {timeout:.0f} s")


def torchserve_get(server: launcher.Server, path: str) -> tuple[int, bytes]:
    req = urllib.request.Request(server.management_url + path,
                                 headers=server.headers("management"))
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="digits,breast_cancer,recommender")
    ap.add_argument("--victim", default="digits")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--workers", type=int, default=1, help="TorchServe workers per model")
    ap.add_argument("--warmup", type=float, default=10.0, help="seconds of load before a kill")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds of load after a kill")
    ap.add_argument("--store", default=str(ROOT / "model_store" / "build"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    a = ap.parse_args(argv)
    models = [m for m in a.models.split(",") if m]
    if a.victim not in models:
        ap.error("--victim must be one of --models")
    run_dir = ROOT / "run" / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}"
    server = launcher.start(pathlib.Path(a.store), run_dir, models, auth=True, timeout=600,
                            workers=a.workers)
    meter = LoadMeter(run_dir)
    try:
        meter.start()
        keys = Keys(server)
        checker = Sender(server, keys)
        reqs = probes(server, a.victim)
        before = answers(checker, reqs)
        load = Load(server, models, a.concurrency, seed=2)
        load.start(3600)
        probe = Probe(server, keys, a.victim)
        probe.start()
        time.sleep(a.warmup)
        worker_pid, t_worker = kill_worker(server, a.victim)
        print(f"chaos: kill -9 {a.victim} worker pid {worker_pid}", flush=True)
        restart = wait_new_worker(server, a.victim, worker_pid, t_worker)
        time.sleep(a.settle)
        gw_pid, t_gw = kill_gateway(server)
        print(f"chaos: kill -9 gateway pid {gw_pid}", flush=True)
        address = f"127.0.0.1:{server.ports['gateway']}"
        while gw_process.health_status(address, timeout=0.5) != 1:
            if time.monotonic() - t_gw > 60:
                raise TimeoutError("the gateway did not come back within 60 s")
            time.sleep(0.05)
        t_gw_back = time.monotonic()
        time.sleep(a.settle)
        load.stop()
        probe.stop.set()
        probe.join()
        after = answers(checker, reqs)
        new_gw = int(gw_process.pid_file(server.run_dir).read_text())
        machine = meter.stop()
    finally:
        launcher.stop(run_dir)
    calls = load.snapshot()
    failures = [c for c in calls if not c.ok]
    batch = int((server.models[a.victim].get("batch") or {}).get("batch_size", 1))
    # in flight at the kill: sent before it, answered (failed) after it
    worker_fail = [c for c in failures if c.model == a.victim and c.start <= t_worker
                   <= c.start + c.latency_s and c.transport in ("rest", "grpc")]
    # failed by the gateway's death: gRPC calls that ended with UNAVAILABLE during the outage
    # (in flight at the kill, or sent into the dying connection before the client noticed)
    gw_fail = [c for c in failures if c.transport == "grpc" and c.status == "UNAVAILABLE"
               and t_gw <= c.start + c.latency_s <= t_gw_back + 1.0 and c not in worker_fail]
    other = [c for c in failures if c not in worker_fail and c not in gw_fail]
    grpc_in_flight = sum(1 for c in calls if c.transport == "grpc" and c.start <= t_gw
                         <= c.start + c.latency_s)
    recovery = probe.first_answer_after(t_worker)
    before_p50 = probe.median_latency_before(t_worker)
    report = {
        "machine": vars(machine) | {"described": machine.describe()},
        "models": models, "victim": a.victim, "victim_batch_size": batch, "workers": a.workers,
        "concurrency": a.concurrency, "requests": len(calls), "failures": len(failures),
        "worker_kill": {"pid": worker_pid, "failed_in_flight": len(worker_fail),
                        "statuses": dict(Counter(f"{c.transport} {c.status} {c.detail[:40]}"
                                                 for c in worker_fail)),
                        "model_answers_again_s": None if recovery is None else round(recovery, 2),
                        # the same probe's latency under this load before the kill, for scale
                        "probe_p50_before_kill_s": None if before_p50 is None
                        else round(before_p50, 2),
                        # spawned / registered / ready seconds after the kill, worker CPU
                        "restart": restart},
        "gateway_kill": {"pid": gw_pid, "new_pid": new_gw, "grpc_in_flight": grpc_in_flight,
                         "failed_during_outage": len(gw_fail),
                         "statuses": dict(Counter(c.status for c in gw_fail)),
                         "serving_again_s": round(t_gw_back - t_gw, 2)},
        "other_failures": len(other),
        "other_failure_examples": [f"{c.transport} {c.model} {c.status} {c.detail[:80]}"
                                   for c in other[:5]],
        "answers_identical_after_recovery": before == after and None not in before,
        "probe_answers": [b is not None for b in before] + [x is not None for x in after],
    }
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"chaos-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    print(f"results: {path}")
    ok = (len(worker_fail) <= batch and not other and recovery is not None and recovery < 10
          and t_gw_back - t_gw < 5 and report["answers_identical_after_recovery"])
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
