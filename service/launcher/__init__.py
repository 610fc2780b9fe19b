"""Start and stop an instance of the service, everything in its run directory.

``python -m service.launcher start --instance NAME [--auth off] [--port-base N]
[--token-expiration-min M]`` writes ``run/NAME/`` (torchserve.py), starts TorchServe on
127.0.0.1, waits until every model has a READY worker, starts the supervisor (supervisor.py:
it keeps the gRPC gateway running and renews TorchServe's keys before they expire), waits until
the gateway serves, starts the explorer page (service/explorer, with ``explorer``) and prints
example requests (examples.py). ``stop --instance NAME`` stops
the supervisor, the gateway and TorchServe. Used by ``make serve``, the end-to-end tests and
the benchmarks.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys

from service.gateway import process as gw_process

from . import supervisor
from .torchserve import (
    PORT_NAMES,
    ROOT,
    TOKEN_EXPIRATION_MIN,
    Server,
    choose_ports,
    free_ports,
    frontend_pid,
    memory_env,
    read_spec,
    server_env,
    start_torchserve,
    stop_torchserve,
    wait_ready,
    worker_threads,
    write_config,
)

__all__ = ["PORT_NAMES", "ROOT", "TOKEN_EXPIRATION_MIN", "Server", "choose_ports", "free_ports",
           "frontend_pid", "read_spec", "server_env", "start", "stop", "wait_ready",
           "worker_threads", "write_config", "supervise_command"]


def supervise_command(server: Server, gateway: bool) -> list[str]:
    """The command line of the instance's supervisor."""
    p = server.ports
    cmd = [sys.executable, "-m", "service.launcher", "supervise", "--run-dir",
           str(server.run_dir), "--management-url", server.management_url,
           "--token-expiration-min", str(server.token_expiration_min),
           "--gateway-log", str(server.run_dir / "logs" / "gateway.log")]
    if gateway:
        cmd += ["--gateway-listen", f"127.0.0.1:{p['gateway']}",
                "--torchserve-grpc", f"127.0.0.1:{p['grpc_inference']}",
                "--torchserve-rest", server.inference_url]
    if server.auth:
        cmd += ["--key-file", str(server.key_file)]
    return cmd


def _start_supervisor(server: Server, gateway: bool) -> int:
    run_dir = server.run_dir
    env = memory_env(dict(os.environ)) if server.memory_tuning else None  # for the gateway
    with open(run_dir / "logs" / "supervisor.log", "ab") as log:
        proc = subprocess.Popen(supervise_command(server, gateway), stdout=log, stderr=log,
                                stdin=subprocess.DEVNULL, cwd=ROOT, start_new_session=True,
                                env=env)
    supervisor.pid_file(run_dir).write_text(str(proc.pid))
    return proc.pid


def start(store: pathlib.Path, run_dir: pathlib.Path, models: list[str] | None = None,
          auth: bool = True, port_base: int | None = None, workers: int | None = None,
          timeout: float = 300.0, gateway: bool = True,
          token_expiration_min: float = TOKEN_EXPIRATION_MIN, explorer: bool = False,
          access_log: bool = False, memory_tuning: bool = True) -> Server:
    """Start TorchServe with ``store``'s archives (all, or ``models``) and wait until ready;
    then the supervisor (with ``gateway``, it runs the gRPC Explainer gateway in front of
    TorchServe; with ``auth``, it renews the keys) and wait until the gateway serves; with
    ``explorer`` (and the gateway), the explorer page on 127.0.0.1. ``memory_tuning``: glibc
    malloc settings (torchserve.MEMORY_ENV) for TorchServe and the gateway. ``workers``: every
    model's TorchServe workers (None: each spec's ``batch.workers``)."""
    store, run_dir = store.resolve(), run_dir.resolve()
    if shutil.which("java") is None:
        raise RuntimeError("TorchServe needs Java 11+ (`java` is not on PATH)")
    if frontend_pid(run_dir) is not None or supervisor.running_pid(run_dir) is not None:
        raise RuntimeError(f"an instance already runs in {run_dir}; stop it first or pick "
                           "another instance name")
    if token_expiration_min <= 0:
        raise ValueError("token_expiration_min must be > 0")
    mars = sorted(store.glob("*.mar"))
    if models:
        mars = [m for m in mars if m.stem in models]
        missing = set(models) - {m.stem for m in mars}
        if missing:
            raise FileNotFoundError(f"no archive for {sorted(missing)} in {store}")
    if not mars:
        raise FileNotFoundError(f"no .mar archives in {store}; run `make models`")
    server = start_torchserve(store, run_dir, mars, auth, choose_ports(port_base), workers,
                              token_expiration_min, access_log, memory_tuning)
    try:
        wait_ready(server, timeout)
        if gateway or auth:
            pid = _start_supervisor(server, gateway)
        if gateway:
            gw_process.wait_serving(f"127.0.0.1:{server.ports['gateway']}", 60.0,
                                    alive=lambda: supervisor.running_pid(run_dir) == pid)
        if explorer and gateway:
            from service.explorer import process as explorer_process  # the `explorer` extra

            explorer_process.start_explorer(run_dir, server.ports["explorer"],
                                            server.inference_url,
                                            f"127.0.0.1:{server.ports['gateway']}")
    except BaseException:
        stop(run_dir)
        raise
    return server


def stop(run_dir: pathlib.Path) -> None:
    """Stops the explorer, the supervisor (and with it the gateway), then TorchServe."""
    run_dir = run_dir.resolve()
    if not (run_dir / "tmp").is_dir():
        return
    if (run_dir / "tmp" / "explorer.pid").is_file():
        from service.explorer import process as explorer_process  # the `explorer` extra

        explorer_process.stop_explorer(run_dir)
    supervisor.stop_detached(run_dir)
    gw_process.stop_gateway(run_dir)  # a gateway left by a supervisor that died
    stop_torchserve(run_dir)
