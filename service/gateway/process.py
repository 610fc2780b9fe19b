"""Run the gateway as a background process next to a TorchServe instance (used by the launcher
and the end-to-end tests): logs in ``<run_dir>/logs/gateway.log``, pid in
``<run_dir>/tmp/gateway.pid``."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc


def _pid_file(run_dir: pathlib.Path) -> pathlib.Path:
    return run_dir / "tmp" / "gateway.pid"


def wait_serving(address: str, timeout: float = 60.0) -> None:
    """Waits until the gateway's health service says SERVING (TorchServe reachable)."""
    deadline = time.monotonic() + timeout
    with grpc.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while True:
            try:
                status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway on {address} not serving after {timeout:.0f} s")
            time.sleep(0.3)


def start_gateway(run_dir: pathlib.Path, port: int, torchserve_grpc_port: int,
                  management_url: str, key_file: pathlib.Path | None,
                  extra_args: list[str] | None = None, timeout: float = 60.0) -> int:
    """Starts ``python -m service.gateway`` detached; returns its pid once it serves."""
    stop_gateway(run_dir)
    (run_dir / "logs").mkdir(parents=True, exist_ok=True)
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "service.gateway", "--listen", f"127.0.0.1:{port}",
           "--torchserve", f"127.0.0.1:{torchserve_grpc_port}",
           "--management-url", management_url, *(extra_args or [])]
    if key_file is not None:
        cmd += ["--key-file", str(key_file)]
    with open(run_dir / "logs" / "gateway.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _pid_file(run_dir).write_text(str(proc.pid))
    try:
        wait_serving(f"127.0.0.1:{port}", timeout)
    except BaseException:
        stop_gateway(run_dir)
        raise
    return proc.pid


def stop_gateway(run_dir: pathlib.Path, timeout: float = 10.0) -> None:
    pid_file = _pid_file(run_dir)
    if not pid_file.is_file():
        return
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGTERM)
    except (ValueError, ProcessLookupError):
        pid_file.unlink(missing_ok=True)
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)
