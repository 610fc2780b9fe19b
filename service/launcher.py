"""Start and stop TorchServe with the bundled model archives, everything in a run directory.

``python -m service.launcher start --instance NAME [--auth off] [--port-base N]`` writes
``run/NAME/``: config.properties, a quiet log4j2 config, logs/, tmp/ (Java temp, worker sockets,
unpacked models, the pid file), key_file.json (token auth), ports.json and examples/; starts
TorchServe on 127.0.0.1; waits until every model has a READY worker; prints example requests.
``stop --instance NAME`` stops it. Two instances with different names never share a port, a
socket or a file. Used by ``make serve`` and by the end-to-end tests.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
# "worker" comes last: TorchServe numbers worker ports upwards from it.
PORT_NAMES = ("inference", "management", "metrics", "grpc_inference", "grpc_management",
              "gateway", "worker")

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="ts_log" fileName="{logs}/ts_log.log" append="true">
      <PatternLayout pattern="%d{{ISO8601}} [%-5p] %t %c - %m%n"/>
    </File>
    <File name="model_log" fileName="{logs}/model_log.log" append="true">
      <PatternLayout pattern="%d{{ISO8601}} [%-5p] %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="off"/>
    <Logger name="TS_METRICS" level="off"/>
    <Logger name="MODEL_METRICS" level="off"/>
    <Logger name="io.netty" level="error"/>
    <Logger name="org.apache" level="off"/>
    <Logger name="MODEL_LOG" level="warn" additivity="false"><AppenderRef ref="model_log"/></Logger>
    <Logger name="org.pytorch.serve" level="warn" additivity="false">
      <AppenderRef ref="ts_log"/>
    </Logger>
    <Root level="warn"><AppenderRef ref="ts_log"/></Root>
  </Loggers>
</Configuration>
"""


@dataclass
class Server:
    """A TorchServe instance started by this module."""

    run_dir: pathlib.Path
    ports: dict[str, int]
    models: dict[str, dict] = field(default_factory=dict)  # name -> spec.yaml mapping
    auth: bool = True

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['inference']}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['management']}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['metrics']}"

    @property
    def key_file(self) -> pathlib.Path:
        return self.run_dir / "key_file.json"

    def key(self, kind: str = "inference") -> str | None:
        """The current token (``inference`` or ``management``), or None with auth off."""
        if not self.auth:
            return None
        data = json.loads(self.key_file.read_text())
        entry = data.get(kind, {})
        return entry.get("key") if isinstance(entry, dict) else entry

    def headers(self, kind: str = "inference") -> dict[str, str]:
        key = self.key(kind)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def env(self) -> dict[str, str]:
        return server_env(self.run_dir)


def server_env(run_dir: pathlib.Path) -> dict[str, str]:
    env = dict(os.environ)
    tmp = str(run_dir / "tmp")
    env.update(TMPDIR=tmp, TEMP=tmp, TMP=tmp, LOG_LOCATION=str(run_dir / "logs"),
               METRICS_LOCATION=str(run_dir / "logs"))
    bin_dir = str(pathlib.Path(sys.executable).parent)
    env["PATH"] = bin_dir + os.pathsep + env.get("PATH", "")
    return env


def read_spec(mar: pathlib.Path) -> dict:
    with zipfile.ZipFile(mar) as z:
        return yaml.safe_load(z.read("spec.yaml"))


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports that are free now (held open together, so never the same)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def choose_ports(port_base: int | None) -> dict[str, int]:
    if port_base:
        return {name: port_base + i for i, name in enumerate(PORT_NAMES)}
    ports = dict(zip(PORT_NAMES, free_ports(len(PORT_NAMES))))
    return ports


def _pid_alive(run_dir: pathlib.Path) -> bool:
    pid_file = run_dir / "tmp" / ".model_server.pid"
    if not pid_file.is_file():
        return False
    try:
        os.kill(int(pid_file.read_text().strip()), 0)
        return True
    except (ValueError, OSError):
        return False


def write_config(run_dir: pathlib.Path, store: pathlib.Path, mars: list[pathlib.Path],
                 ports: dict[str, int], auth: bool, workers: int) -> dict[str, dict]:
    specs = {}
    models_cfg = {}
    for mar in mars:
        spec = read_spec(mar)
        name = spec["name"]
        specs[name] = spec
        batch = spec.get("batch") or {}
        models_cfg[name] = {str(spec.get("version", "1.0")): {
            "defaultVersion": True, "marName": mar.name, "minWorkers": workers,
            "maxWorkers": workers, "batchSize": int(batch.get("batch_size", 1)),
            "maxBatchDelay": int(batch.get("max_batch_delay_ms", 10)), "responseTimeout": 120}}
    logs = run_dir / "logs"
    (run_dir / "log4j2.xml").write_text(LOG4J2.format(logs=logs))
    lines = {
        "inference_address": f"http://127.0.0.1:{ports['inference']}",
        "management_address": f"http://127.0.0.1:{ports['management']}",
        "metrics_address": f"http://127.0.0.1:{ports['metrics']}",
        "grpc_inference_address": "127.0.0.1",
        "grpc_inference_port": ports["grpc_inference"],
        "grpc_management_address": "127.0.0.1",
        "grpc_management_port": ports["grpc_management"],
        "initial_worker_port": ports["worker"],
        "model_store": str(store),
        "load_models": ",".join(m.name for m in mars),
        "models": json.dumps(models_cfg),
        "default_workers_per_model": workers,
        "install_py_dep_per_model": "false",
        "disable_token_authorization": "false" if auth else "true",
        "enable_model_api": "false",
        "metrics_mode": "prometheus",
        "model_metrics_auto_detect": "true",
        "async_logging": "true",
        "max_request_size": 16 * 1024 * 1024,  # the runtime's max_body_bytes is the real limit
        "max_response_size": 64 * 1024 * 1024,
        "vmargs": f"-Xmx512m -XX:+UseSerialGC -Dlog4j.configurationFile=file://{run_dir}/log4j2.xml",
    }
    text = "".join(f"{k}={v}\n" for k, v in lines.items())
    (run_dir / "config.properties").write_text(text)
    (run_dir / "ports.json").write_text(json.dumps(ports, indent=2))
    return specs


def _get(url: str, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_ready(server: Server, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(server.models)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"TorchServe models not ready after {timeout:.0f} s: "
                               f"{sorted(pending)}; see {server.run_dir / 'logs'}")
        for name in sorted(pending):
            try:
                if server.auth and not server.key_file.is_file():
                    break
                code, body = _get(f"{server.management_url}/models/{name}",
                                  server.headers("management"))
            except (urllib.error.URLError, ConnectionError, OSError, ValueError):
                break
            if code == 200:
                workers = json.loads(body)[0].get("workers", [])
                if workers and all(w.get("status") == "READY" for w in workers):
                    pending.discard(name)
        time.sleep(0.5)


def start(store: pathlib.Path, run_dir: pathlib.Path, models: list[str] | None = None,
          auth: bool = True, port_base: int | None = None, workers: int = 1,
          timeout: float = 300.0, gateway: bool = True) -> Server:
    """Start TorchServe with ``store``'s archives (all, or ``models``) and wait until ready;
    with ``gateway``, also the gRPC Explainer gateway in front of it."""
    store, run_dir = store.resolve(), run_dir.resolve()
    if shutil.which("java") is None:
        raise RuntimeError("TorchServe needs Java 11+ (`java` is not on PATH)")
    if _pid_alive(run_dir):
        raise RuntimeError(f"an instance already runs in {run_dir}; stop it first or pick "
                           "another instance name")
    mars = sorted(store.glob("*.mar"))
    if models:
        mars = [m for m in mars if m.stem in models]
        missing = set(models) - {m.stem for m in mars}
        if missing:
            raise FileNotFoundError(f"no archive for {sorted(missing)} in {store}")
    if not mars:
        raise FileNotFoundError(f"no .mar archives in {store}; run `make models`")
    for sub in ("logs", "tmp", "examples"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    (run_dir / "key_file.json").unlink(missing_ok=True)
    ports = choose_ports(port_base)
    specs = write_config(run_dir, store, mars, ports, auth, workers)
    server = Server(run_dir, ports, specs, auth)
    cmd = ["torchserve", "--start", "--ncs", "--model-store", str(store),
           "--ts-config", str(run_dir / "config.properties")]
    if not auth:
        cmd.append("--disable-token-auth")
    with open(run_dir / "logs" / "torchserve.out", "ab") as out:
        subprocess.run(cmd, cwd=run_dir, env=server.env(), stdout=out, stderr=out,
                       stdin=subprocess.DEVNULL, check=True)
    try:
        wait_ready(server, timeout)
        if gateway:
            from service.gateway.process import start_gateway

            start_gateway(run_dir, ports["gateway"], ports["grpc_inference"],
                          server.management_url, server.key_file if auth else None)
    except BaseException:
        stop(run_dir)
        raise
    return server


def stop(run_dir: pathlib.Path) -> None:
    from service.gateway.process import stop_gateway

    run_dir = run_dir.resolve()
    if not (run_dir / "tmp").is_dir():
        return
    stop_gateway(run_dir)
    with open(run_dir / "logs" / "torchserve.out", "ab") as out:
        subprocess.run(["torchserve", "--stop"], cwd=run_dir, env=server_env(run_dir),
                       stdout=out, stderr=out, stdin=subprocess.DEVNULL, check=False)
    deadline = time.monotonic() + 30
    while _pid_alive(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)


# -- example requests ---------------------------------------------------------------------------

def _sample_array(mar: pathlib.Path, spec: dict):
    """A real example input from the archive's reference set or mean, else zeros."""
    import numpy as np
    import torch

    shape = tuple(spec["input"]["shape"])
    defs = (spec.get("baselines") or {}).get("definitions") or {}
    files = [d.get("file") for d in defs.values() if d.get("kind") == "reference_set"]
    files += [d.get("file") for d in defs.values() if d.get("kind") == "tensor"]
    with zipfile.ZipFile(mar) as z:
        names = set(z.namelist())
        for f in files:
            if f and f in names:
                t = torch.load(io.BytesIO(z.read(f)), map_location="cpu", weights_only=True)
                return np.asarray(t, dtype=np.float64).reshape(-1, *shape)[0]
    return np.zeros(shape)


def write_examples(server: Server, store: pathlib.Path) -> dict[str, list[str]]:
    """Example bodies under run/<instance>/examples/ and the curl lines that send them."""
    import numpy as np

    out: dict[str, list[str]] = {}
    auth = ' -H "Authorization: Bearer $KEY"' if server.auth else ""
    ex_dir = server.run_dir / "examples"
    for name, spec in server.models.items():
        mar = store / f"{name}.mar"
        x = _sample_array(mar, spec)
        inp = spec["input"]
        lines = []
        if inp["kind"] == "image":
            from PIL import Image

            im = inp.get("image") or {}
            mean = np.asarray(im.get("mean", [0.0])).reshape(-1, 1, 1)
            std = np.asarray(im.get("std", [1.0])).reshape(-1, 1, 1)
            pix = x * std + mean
            if im.get("invert"):
                pix = 1.0 - pix
            pix = np.clip(pix * float(im.get("scale", 255.0)), 0, 255).astype(np.uint8)
            mode = im.get("mode", "L")
            img = Image.fromarray(pix[0] if mode == "L" else pix.transpose(1, 2, 0), mode)
            png = ex_dir / f"{name}.png"
            img.save(png)
            body = {"inputs": {"image": base64.b64encode(png.read_bytes()).decode()},
                    "algorithm": spec.get("explain", {}).get("default_algorithm", ""),
                    "target": {"topK": 2}, "outputs": {"topFeatures": 3, "attributions": False}}
            lines.append(f"curl -s{auth} {server.inference_url}/predictions/{name} -T {png}")
            lines.append(f"curl -s{auth} {server.inference_url}/explanations/{name} -T {png}")
        else:
            values = x.reshape(-1)
            scaler = inp.get("scaler")
            if scaler:
                values = values * np.asarray(scaler["std"]) + np.asarray(scaler["mean"])
            feats = {n: round(float(v), 4) for n, v in zip(inp.get("feature_names", []), values)
                     if abs(v) > 1e-9}
            body = {"inputs": {"tabular": {"features": feats}},
                    "outputs": {"topFeatures": 5, "attributions": False}}
            lines.append(f"curl -s{auth} {server.inference_url}/predictions/{name} "
                         f"-H 'Content-Type: application/json' -d @{ex_dir / f'{name}.json'}")
        path = ex_dir / f"{name}.json"
        path.write_text(json.dumps(body, indent=1))
        lines.append(f"curl -s{auth} {server.inference_url}/explanations/{name} "
                     f"-H 'Content-Type: application/json' -d @{path}")
        out[name] = lines
    return out


def print_banner(server: Server, store: pathlib.Path, instance: str) -> None:
    examples = write_examples(server, store)
    p = print
    p(f"\nTorchServe is up (instance {instance!r}, run directory {server.run_dir})")
    p(f"  inference  {server.inference_url}   management {server.management_url}   "
      f"metrics {server.metrics_url}/metrics")
    p(f"  gRPC       Explainer gateway 127.0.0.1:{server.ports['gateway']}   "
      f"(TorchServe's own gRPC 127.0.0.1:{server.ports['grpc_inference']})   "
      f"logs {server.run_dir}/logs")
    if server.auth:
        p(f"\nToken authorization is ON. Keys: {server.key_file} (inference keys expire after "
          "60 min; the API key rotates them).\nSet the key in your shell first:")
        p(f"  KEY=$(python3 -c \"import json; print(json.load(open('{server.key_file}'))"
          "['inference']['key'])\")")
    else:
        p("\nToken authorization is OFF (AUTH=off): local use only.")
    for name, lines in examples.items():
        purpose = server.models[name].get("purpose", "production")
        note = ("  [load testing only: untrained weights]"
                if purpose == "load_test_only" and "LOAD TEST" not in
                str(server.models[name].get("description", "")).upper() else "")
        p(f"\n# {name}: {server.models[name].get('description', '')}{note}")
        for line in lines:
            p(f"  {line}")
    token = ", token=KEY" if server.auth else ""
    first = next(iter(server.models), "digits")
    p("\n# gRPC, with the Python client (service.client) or grpcurl (reflection is on):")
    p(f"  .venv/bin/python -c \"import os; from service.client import ExplainClient; "
      f"KEY=os.environ.get('KEY'); c=ExplainClient('127.0.0.1:{server.ports['gateway']}'{token}); "
      f"print([m.name for m in c.list_models()])\"")
    auth_h = " -H \"authorization: Bearer $KEY\"" if server.auth else ""
    p(f"  grpcurl -plaintext{auth_h} -d '{{\"model\": \"{first}\"}}' "
      f"127.0.0.1:{server.ports['gateway']} explain.v1.Explainer/GetModelSpec")
    p(f"\nStop it with: make serve-stop INSTANCE={instance}\n")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m service.launcher", description=__doc__)
    ap.add_argument("command", choices=("start", "stop"))
    ap.add_argument("--instance", default="default")
    ap.add_argument("--run-root", default=str(ROOT / "run"))
    ap.add_argument("--model-store", default=str(ROOT / "model_store" / "build"))
    ap.add_argument("--models", default="", help="comma-separated names (default: all)")
    ap.add_argument("--auth", choices=("on", "off"), default="on")
    ap.add_argument("--port-base", type=int, default=0,
                    help="first of 7 consecutive ports (default: free ports)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--gateway", choices=("on", "off"), default="on",
                    help="also start the gRPC Explainer gateway (default on)")
    args = ap.parse_args(argv)
    run_dir = pathlib.Path(args.run_root) / args.instance
    if args.command == "stop":
        stop(run_dir)
        print(f"stopped instance {args.instance!r}")
        return 0
    store = pathlib.Path(args.model_store)
    models = [m for m in args.models.split(",") if m] or None
    try:
        server = start(store, run_dir, models, auth=args.auth == "on",
                       port_base=args.port_base or None, workers=args.workers,
                       gateway=args.gateway == "on")
    except (RuntimeError, FileNotFoundError, TimeoutError, subprocess.CalledProcessError) as e:
        print(f"make serve: {e}", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        print_banner(server, store.resolve(), args.instance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
