"""Run the explorer as a background process next to an instance (the hook for the launcher:
``make serve`` calls ``start_explorer`` after the gateway and ``stop_explorer`` before it):
logs in ``<run_dir>/logs/explorer.log``, pid in ``<run_dir>/tmp/explorer.pid``."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request


def _pid_file(run_dir: pathlib.Path) -> pathlib.Path:
    return run_dir / "tmp" / "explorer.pid"


def explorer_command(listen: str, inference_url: str, gateway: str | None) -> list[str]:
    """The explorer's command line (for a supervisor that keeps it running)."""
    cmd = [sys.executable, "-m", "service.explorer", "--listen", listen,
           "--inference-url", inference_url]
    return cmd + (["--gateway", gateway] if gateway else [])


def start_explorer(run_dir: pathlib.Path, port: int, inference_url: str, gateway: str | None,
                   host: str = "127.0.0.1", timeout: float = 30.0) -> str:
    """Starts ``python -m service.explorer`` detached; returns its URL once it answers."""
    stop_explorer(run_dir)
    for sub in ("logs", "tmp"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    cmd = explorer_command(f"{host}:{port}", inference_url, gateway)
    with open(run_dir / "logs" / "explorer.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    _pid_file(run_dir).write_text(str(proc.pid))
    url = f"http://{host}:{port}/"
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return url
        except (urllib.error.URLError, ConnectionError, OSError):
            if proc.poll() is not None or time.monotonic() > deadline:
                stop_explorer(run_dir)
                raise RuntimeError(f"the explorer did not start; see {run_dir}/logs/"
                                   "explorer.log") from None
            time.sleep(0.2)


def _gone(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our own child: reap it
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def stop_explorer(run_dir: pathlib.Path, timeout: float = 10.0) -> None:
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
    while not _gone(pid):
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)
