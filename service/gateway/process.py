"""The gateway as a child process (of the launcher's supervisor, service/launcher/supervisor.py):
its command line, spawning it, waiting until it serves, and stopping it by its pid file
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

ROOT = pathlib.Path(__file__).resolve().parents[2]


def pid_file(run_dir: pathlib.Path) -> pathlib.Path:
    return run_dir / "tmp" / "gateway.pid"


def gateway_command(listen: str, torchserve_grpc: str, management_url: str,
                    key_file: pathlib.Path | None, extra_args: list[str] | None = None,
                    inference_url: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "service.gateway", "--listen", listen,
           "--torchserve", torchserve_grpc, "--management-url", management_url,
           *(["--inference-url", inference_url] if inference_url is not None else []),
           *(extra_args or [])]
    if key_file is not None:
        cmd += ["--key-file", str(key_file)]
    return cmd


def spawn_gateway(cmd: list[str], run_dir: pathlib.Path,
                  log_path: pathlib.Path | None) -> subprocess.Popen:
    """Starts the gateway as a child of the caller (so the caller sees its exit at once), its
    output appended to ``log_path`` (or the caller's own output), and records its pid."""
    (run_dir / "tmp").mkdir(parents=True, exist_ok=True)
    if log_path is None:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, cwd=ROOT)
    else:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    cwd=ROOT)
    pid_file(run_dir).write_text(str(proc.pid))
    return proc


def health_status(address: str, timeout: float = 1.0) -> int | None:
    """The gateway's overall health (SERVING / NOT_SERVING), or None when it does not answer."""
    with grpc.insecure_channel(address) as channel:
        try:
            return health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout).status
        except grpc.RpcError:
            return None


def wait_serving(address: str, timeout: float = 60.0, alive=lambda: True) -> None:
    """Waits until the gateway's health says SERVING (TorchServe reachable); ``alive()``
    returning False (its supervisor died) ends the wait early."""
    deadline = time.monotonic() + timeout
    while True:
        if health_status(address, timeout=2) == health_pb2.HealthCheckResponse.SERVING:
            return
        if not alive():
            raise RuntimeError(f"the gateway for {address} is not running (see its log)")
        if time.monotonic() > deadline:
            raise TimeoutError(f"gateway on {address} not serving after {timeout:.0f} s")
        time.sleep(0.3)


def _is_gateway(pid: int) -> bool:
    try:
        cmd = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc: trust the pid file
    return b"service.gateway" in cmd


def stop_gateway(run_dir: pathlib.Path, timeout: float = 10.0) -> None:
    """SIGTERM (then SIGKILL after ``timeout``) to the pid in the pid file, if it is a gateway."""
    path = pid_file(run_dir)
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        path.unlink(missing_ok=True)
        return
    if not _is_gateway(pid):
        path.unlink(missing_ok=True)
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        path.unlink(missing_ok=True)
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
    path.unlink(missing_ok=True)
