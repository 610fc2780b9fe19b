"""``make loadtest``: a bounded headless locust run against the local service started by
``make serve`` (instance ``--instance``), REST and gRPC users together, results in
loadtest/results/<stamp>_{stats.csv,...}.json. Targets only 127.0.0.1."""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import socket
import subprocess
import sys
import time

from loadtest.summary import read, table

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _listening(port: int) -> bool:
    """True when something accepts connections on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--instance", default="default")
    ap.add_argument("--users", type=int, default=8)
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--models", default="digits,breast_cancer,recommender",
                    help="comma-separated bundled models (resnet18 too, when asked)")
    ap.add_argument("--out", default=str(ROOT / "loadtest" / "results"))
    a = ap.parse_args(argv)
    run_dir = ROOT / "run" / a.instance
    ports_file = run_dir / "ports.json"
    if not ports_file.is_file():
        print(f"no service running in {run_dir}: start it with `make serve` first", file=sys.stderr)
        return 2
    ports = json.loads(ports_file.read_text())
    down = [name for name in ("inference", "gateway")
            if name in ports and not _listening(int(ports[name]))]
    if down:
        print(f"the service of instance {a.instance!r} is not running ({', '.join(down)} port "
              f"closed; {ports_file} is left from an earlier run): start it with `make serve "
              f"INSTANCE={a.instance}` first", file=sys.stderr)
        return 2
    env = dict(os.environ, EXPLAIN_GRPC_TARGET=f"127.0.0.1:{ports['gateway']}",
               EXPLAIN_MODELS=a.models)
    key_file = run_dir / "key_file.json"
    if key_file.is_file():
        env["EXPLAIN_TOKEN"] = json.loads(key_file.read_text())["inference"]["key"]
    out = pathlib.Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / time.strftime("%Y%m%d-%H%M%S")
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
           "--headless", "-u", str(a.users), "-r", str(a.users), "-t", f"{a.seconds}s",
           "--host", f"http://127.0.0.1:{ports['inference']}", "--only-summary",
           "--csv", str(stem), "--json-file", str(stem), "--exit-code-on-error", "1",
           "RestUser", "GrpcUser"]
    code = subprocess.run(cmd, env=env, cwd=ROOT).returncode
    stats = pathlib.Path(f"{stem}_stats.csv")
    if stats.is_file():
        print(table(read(stats)))
    print(f"results: {stem}_stats.csv, {stem}.json")
    return code


if __name__ == "__main__":
    sys.exit(main())
