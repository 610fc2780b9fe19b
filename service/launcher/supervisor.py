"""The supervisor: keeps the gateway running and TorchServe's keys valid.

``python -m service.launcher supervise --run-dir DIR --gateway-listen H:P ...`` runs in the
foreground until SIGTERM/SIGINT:

- the gateway is its child: when it exits (crash, ``kill -9``) it is started again at once
  (then after 1, 2, 4 ... 30 s while it keeps dying within 10 s of its start); when it stops
  answering gRPC health for 3 probes in a row (5 s apart) it is killed and restarted;
- with token authorization, the inference and management keys are renewed through
  TorchServe's token API a quarter of their lifetime before they expire (keys.py);
- with ``-- CMD...`` (containers), CMD is TorchServe in the foreground as its child; when it
  exits the supervisor stops the gateway and exits with its status, so the container's restart
  policy takes over.

``make serve`` (service.launcher.start) starts one detached per instance, pid in
``<run_dir>/tmp/supervisor.pid``, log in ``<run_dir>/logs/supervisor.log``.
"""

from __future__ import annotations

import logging
import os
import pathlib
import signal
import subprocess
import threading
import time
from dataclasses import dataclass

from service.gateway import process as gw_process

from . import keys, procs

log = logging.getLogger("service.supervisor")


@dataclass(frozen=True)
class SupervisorConfig:
    run_dir: pathlib.Path
    gateway_cmd: tuple[str, ...] | None        # None: no gateway to keep
    gateway_address: str | None                # where its health service answers
    gateway_log: pathlib.Path | None           # None: the supervisor's own output
    key_file: pathlib.Path | None              # None: token authorization off
    management_url: str
    token_lifetime_s: float = 3600.0
    torchserve_cmd: tuple[str, ...] | None = None
    poll_s: float = 0.2
    liveness_every_s: float = 5.0
    liveness_failures: int = 3
    startup_grace_s: float = 30.0


class GatewayKeeper:
    """Starts the gateway and starts it again whenever it exits or hangs."""

    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen | None = None
        self.started = 0.0
        self.answered = False
        self.restart_at: float | None = 0.0
        self.quick_deaths = 0  # exits within 10 s of a start, in a row
        self.next_probe = 0.0
        self.failures = 0
        self.restarts = 0

    def _start(self) -> None:
        assert self.cfg.gateway_cmd is not None
        self.proc = gw_process.spawn_gateway(list(self.cfg.gateway_cmd), self.cfg.run_dir,
                                             self.cfg.gateway_log)
        self.started = time.monotonic()
        self.answered = False
        self.failures = 0
        self.restart_at = None
        log.info("gateway started (pid %d)", self.proc.pid)

    def check(self) -> None:
        now = time.monotonic()
        if self.proc is None or self.restart_at is not None:
            if self.restart_at is not None and now >= self.restart_at:
                if self.proc is not None:
                    self.restarts += 1
                self._start()
            return
        code = self.proc.poll()
        if code is not None:
            ran = now - self.started
            how = f"signal {-code}" if code < 0 else f"status {code}"
            self.quick_deaths = self.quick_deaths + 1 if ran < 10 else 0
            delay = min(2.0 ** (self.quick_deaths - 2), 30.0) if self.quick_deaths > 1 else 0.0
            log.warning("gateway (pid %d) exited with %s after %.1f s; restarting in %.1f s",
                        self.proc.pid, how, ran, delay)
            self.restart_at = now + delay
            return
        address = self.cfg.gateway_address
        if address is None:
            return
        if not self.answered:  # just started: probe often, to log when it answers
            if gw_process.health_status(address, timeout=0.5) is not None:
                self.answered = True
                self.next_probe = now + self.cfg.liveness_every_s
                log.info("gateway (pid %d) answering health %.2f s after its start",
                         self.proc.pid, time.monotonic() - self.started)
            elif now - self.started > self.cfg.startup_grace_s:
                self._hung(f"no health answer {self.cfg.startup_grace_s:.0f} s after its start")
            return
        if now < self.next_probe:
            return
        self.next_probe = now + self.cfg.liveness_every_s
        if gw_process.health_status(address, timeout=2.0) is None:
            self.failures += 1
            if self.failures >= self.cfg.liveness_failures:
                self._hung(f"{self.failures} health probes in a row unanswered")
        else:
            self.failures = 0

    def _hung(self, why: str) -> None:
        assert self.proc is not None
        log.warning("gateway (pid %d) hangs (%s); killing it", self.proc.pid, why)
        self.proc.kill()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        gw_process.pid_file(self.cfg.run_dir).unlink(missing_ok=True)


class KeyKeeper:
    """Renews TorchServe's inference and management keys before they expire."""

    def __init__(self, cfg: SupervisorConfig) -> None:
        self.cfg = cfg
        self.margin_s = keys.renew_margin_s(cfg.token_lifetime_s)
        self.next_check = 0.0
        self.renewals = 0

    def check(self) -> None:
        now = time.monotonic()
        if self.cfg.key_file is None or now < self.next_check:
            return
        self.next_check = now + 1.0
        try:
            current = keys.read_keys(self.cfg.key_file)
            keys.ensure_private(self.cfg.key_file)
        except (OSError, ValueError):
            return  # not written yet, or being rewritten by TorchServe
        for kind in keys.RENEWED_KINDS:
            if kind not in current or keys.seconds_left(current[kind]) > self.margin_s:
                continue
            try:
                new = keys.renew(self.cfg.management_url, self.cfg.key_file, kind)
            except (RuntimeError, OSError, ValueError) as e:
                log.warning("renewing the %s key failed (%s); retrying in 5 s", kind, e)
                self.next_check = now + 5.0
                return
            self.renewals += 1
            log.info("renewed the %s key through TorchServe's token API; it expires in %.0f s",
                     kind, keys.seconds_left(new))


def run(cfg: SupervisorConfig) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    torchserve: subprocess.Popen | None = None
    if cfg.torchserve_cmd:
        torchserve = subprocess.Popen(list(cfg.torchserve_cmd), start_new_session=True)
        log.info("TorchServe started in the foreground (pid %d)", torchserve.pid)
    gateway = GatewayKeeper(cfg) if cfg.gateway_cmd else None
    key_keeper = KeyKeeper(cfg)
    code = 0
    log.info("supervising %s (gateway: %s, key renewal: %s, %.0f s before expiry)",
             cfg.run_dir, cfg.gateway_address or "none", "on" if cfg.key_file else "off",
             key_keeper.margin_s)
    try:
        while not stop.is_set():
            if torchserve is not None and torchserve.poll() is not None:
                code = torchserve.returncode or 1
                log.error("TorchServe exited with status %s; stopping", torchserve.returncode)
                break
            if not cfg.run_dir.is_dir():  # the instance was removed without `stop`: no orphan
                log.error("run directory %s is gone; stopping", cfg.run_dir)
                break
            if gateway is not None:
                gateway.check()
            key_keeper.check()
            stop.wait(cfg.poll_s)
    finally:
        if gateway is not None:
            gateway.stop()
        if torchserve is not None and torchserve.poll() is None:
            os.killpg(torchserve.pid, signal.SIGTERM)
            try:
                torchserve.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(torchserve.pid, signal.SIGKILL)
        log.info("supervisor stopped")
    return code


# -- a detached supervisor per run directory (the launcher's) -----------------------------------

def pid_file(run_dir: pathlib.Path) -> pathlib.Path:
    return run_dir / "tmp" / "supervisor.pid"


def running_pid(run_dir: pathlib.Path) -> int | None:
    """The pid of this run directory's supervisor, if it runs."""
    try:
        pid = int(pid_file(run_dir).read_text().strip())
    except (OSError, ValueError):
        return None
    if not procs.alive(pid) or "supervise" not in procs.cmdline(pid):
        return None
    return pid


def stop_detached(run_dir: pathlib.Path, timeout: float = 20.0) -> None:
    pid = running_pid(run_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while procs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if procs.alive(pid):
            os.kill(pid, signal.SIGKILL)
    pid_file(run_dir).unlink(missing_ok=True)
