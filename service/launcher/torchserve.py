"""TorchServe in a run directory: config.properties, a quiet log4j2 config, logs/, tmp/ (Java
temp, worker sockets, unpacked models, the pid file), key_file.json (token auth) and ports.json;
start, readiness, stop, and the instance's own process tree (frontend and worker pids). Two
instances with different run directories never share a port, a socket or a file."""

from __future__ import annotations

import compileall
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field

import yaml

from service.runtime.spec import parse_spec

from . import keys, procs

ROOT = pathlib.Path(__file__).resolve().parents[2]
TOKEN_EXPIRATION_MIN = 60.0  # TorchServe 0.12's default lifetime of the inference/management keys
# "worker" comes last: TorchServe numbers worker ports upwards from it.
PORT_NAMES = ("inference", "management", "metrics", "grpc_inference", "grpc_management",
              "gateway", "explorer", "worker")  # worker last: TorchServe counts up from it

# glibc malloc settings for TorchServe's processes (the Java frontend and the Python workers,
# which inherit its environment) and the gateway; an operator's own values win. See
# bench/README.md ("Soak") for what each one changed.
MEMORY_ENV = {
    # one arena per thread (up to 8 per core) keeps each thread's freed memory apart: torch's
    # intra-op threads, the worker's and the JVM's threads each grow their own.
    "MALLOC_ARENA_MAX": "2",
    # a fixed threshold: tensors above 128 KiB are mmap'ed and returned to the system when
    # freed; glibc's default raises the threshold (to 32 MiB) whenever a large block is freed,
    # after which large tensors come from the heap and stay resident as fragments.
    "MALLOC_MMAP_THRESHOLD_": str(128 * 1024),
}
# Torch's intra-op threads per worker where the operator sets none (OMP_NUM_THREADS): the
# machine's cores shared out among the instance's workers, at least one each. Torch's own
# default is one thread per core in every worker; workers sharing cores with each other and the
# frontend then spin for cores others hold (bench/README.md: 2 threads per worker cut the
# served rate to 0.31-0.39 of the in-process rate on the 2-core machine).
THREADS_ENV = "OMP_NUM_THREADS"


def worker_threads(total_workers: int, cores: int | None = None) -> int:
    """Intra-op threads per worker for ``total_workers`` workers on ``cores`` cores."""
    cores = cores if cores is not None else len(os.sched_getaffinity(0))
    return max(1, cores // max(1, total_workers))


# The frontend's JVM. Without -Xms the initial heap is 1/64 of the machine's RAM (376 MB on a
# 24 GB machine) and its pages become resident only as they are first used, so the RSS creeps
# up for as long as the young and old generations take to be filled once. TorchServe's old
# generation holds 75-90 MB with the bundled models; the serial collector grows the heap after
# a full collection leaves less than 40 % free (from 128 MB to 214 MB after 5 minutes, measured),
# so the heap starts at 256 MB, made resident at once (AlwaysPreTouch): after the start the RSS
# moves only when the heap must grow for more live data (see bench/README.md, "Soak").
# EXPLAIN_JAVA_OPTS replaces these flags.
JAVA_OPTS = "-Xms256m -Xmx512m -XX:+UseSerialGC -XX:+AlwaysPreTouch"
JAVA_OPTS_UNTUNED = "-Xmx512m -XX:+UseSerialGC"  # before the soak work (memory_tuning=False)

LOG4J2 = """<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="ts_log" fileName="{logs}/ts_log.log" append="true">
      <PatternLayout pattern="%d{{ISO8601}} [%-5p] %t %c - %m%n"/>
    </File>
    <File name="model_log" fileName="{logs}/model_log.log" append="true">
      <PatternLayout pattern="%d{{ISO8601}} [%-5p] %m%n"/>
    </File>
    <File name="access_log" fileName="{logs}/access_log.log" append="true">
      <PatternLayout pattern="%d{{ISO8601}} - %m%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Logger name="ACCESS_LOG" level="{access}" additivity="false"><AppenderRef ref="access_log"/></Logger>
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
    token_expiration_min: float = TOKEN_EXPIRATION_MIN
    memory_tuning: bool = True  # MEMORY_ENV in TorchServe's environment
    threads: int = 0  # OMP_NUM_THREADS for the workers where the environment sets none; 0: unset

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
        # TorchServe rewrites the file in place when a key is renewed (truncate, then write):
        # a read in between sees it empty or cut short, so read again for a moment
        for attempt in range(50):
            try:
                data = json.loads(self.key_file.read_text())
                break
            except ValueError:
                if attempt == 49:
                    raise
                time.sleep(0.02)
        entry = data.get(kind, {})
        return entry.get("key") if isinstance(entry, dict) else entry

    def headers(self, kind: str = "inference") -> dict[str, str]:
        key = self.key(kind)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def env(self) -> dict[str, str]:
        return server_env(self.run_dir, self.memory_tuning, self.threads)

    def frontend_pid(self) -> int | None:
        return frontend_pid(self.run_dir)

    def worker_pids(self) -> dict[str, list[int]]:
        """Each model's worker pids as TorchServe's management API reports them, each checked
        to be a descendant of this instance's frontend (never another instance's process)."""
        front = self.frontend_pid()
        if front is None:
            return {}
        mine = set(procs.descendants(front))
        out: dict[str, list[int]] = {}
        for name in self.models:
            code, body = _get(f"{self.management_url}/models/{name}", self.headers("management"))
            if code != 200:
                continue
            pids = [int(w["pid"]) for w in json.loads(body)[0].get("workers", []) if w.get("pid")]
            out[name] = [p for p in pids if p in mine]
        return out


def memory_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` with MEMORY_ENV's settings where it has none of its own."""
    return {**MEMORY_ENV, **env}


def server_env(run_dir: pathlib.Path, memory_tuning: bool = True,
               threads: int = 0) -> dict[str, str]:
    """TorchServe's environment: MEMORY_ENV (unless ``memory_tuning`` is off) and, when
    ``threads``, OMP_NUM_THREADS, each where the caller's environment has none; the run
    directory's temp and log locations."""
    env = memory_env(dict(os.environ)) if memory_tuning else dict(os.environ)
    if threads and not env.get(THREADS_ENV):
        env[THREADS_ENV] = str(threads)
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


def frontend_pid(run_dir: pathlib.Path) -> int | None:
    """The pid of this run directory's TorchServe frontend (Java), if it runs."""
    pid_file = run_dir / "tmp" / ".model_server.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    return pid if procs.alive(pid) else None


def _pid_alive(run_dir: pathlib.Path) -> bool:
    return frontend_pid(run_dir) is not None


def models_config(mars: list[pathlib.Path], workers: int | None = None,
                  ) -> tuple[dict[str, dict], dict]:
    """(spec per model name, TorchServe's ``models`` setting): each archive registered with the
    batch size, delay and workers its spec.yaml asks for (``batch``), so requests are batched
    and fused; ``workers`` (the launcher's --workers) gives every model that many instead."""
    specs: dict[str, dict] = {}
    models_cfg: dict[str, dict] = {}
    for mar in mars:
        spec = read_spec(mar)
        name = spec["name"]
        specs[name] = spec
        batch = parse_spec(spec).batch
        n = workers if workers is not None else batch.workers
        models_cfg[name] = {str(spec.get("version", "1.0")): {
            "defaultVersion": True, "marName": mar.name, "minWorkers": n, "maxWorkers": n,
            "batchSize": batch.batch_size, "maxBatchDelay": batch.max_batch_delay_ms,
            "responseTimeout": 120}}
    return specs, models_cfg


def total_workers(models_cfg: dict) -> int:
    """The workers a ``models`` setting starts, over every model."""
    return sum(v["minWorkers"] for versions in models_cfg.values() for v in versions.values())


def models_properties(store: pathlib.Path, workers: int | None = None) -> str:
    """``load_models`` and ``models`` lines for a config.properties serving every archive in
    ``store`` as ``make serve`` does (the container's config is completed with them)."""
    mars = sorted(store.glob("*.mar"))
    _, models_cfg = models_config(mars, workers)
    return (f"load_models={','.join(m.name for m in mars)}\n"
            f"models={json.dumps(models_cfg)}\n")


def write_config(run_dir: pathlib.Path, store: pathlib.Path, mars: list[pathlib.Path],
                 ports: dict[str, int], auth: bool, workers: int | None,
                 token_expiration_min: float = TOKEN_EXPIRATION_MIN,
                 access_log: bool = False, memory_tuning: bool = True,
                 ) -> tuple[dict[str, dict], int]:
    """Writes config.properties and ports.json; (spec per model name, workers in all)."""
    specs, models_cfg = models_config(mars, workers)
    java_opts = os.environ.get("EXPLAIN_JAVA_OPTS") or (
        JAVA_OPTS if memory_tuning else JAVA_OPTS_UNTUNED)
    logs = run_dir / "logs"
    (run_dir / "log4j2.xml").write_text(LOG4J2.format(logs=logs, access="info" if access_log else "off"))
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
        "default_workers_per_model": workers or 1,
        "install_py_dep_per_model": "false",
        "disable_token_authorization": "false" if auth else "true",
        "token_expiration_min": token_expiration_min,
        "enable_model_api": "false",
        "metrics_mode": "prometheus",
        "model_metrics_auto_detect": "true",
        "async_logging": "true",
        "max_request_size": 16 * 1024 * 1024,  # the runtime's max_body_bytes is the real limit
        "max_response_size": 64 * 1024 * 1024,
        "vmargs": f"{java_opts} -Dlog4j.configurationFile=file://{run_dir}/log4j2.xml",
    }
    text = "".join(f"{k}={v}\n" for k, v in lines.items())
    (run_dir / "config.properties").write_text(text)
    (run_dir / "ports.json").write_text(json.dumps(ports, indent=2))
    return specs, total_workers(models_cfg)


def _get(url: str, headers: dict[str, str], timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def _renew_management_key(server: Server) -> None:
    """Before the supervisor runs (it starts once every model is READY), the management key
    that wait_ready polls with can expire: a short ``token_expiration_min`` on a machine slow
    to start the workers (seen: 30 s keys, workers READY after more than 30 s, every poll
    refused until the timeout). Renewed here the way the supervisor renews it."""
    try:
        current = keys.read_keys(server.key_file).get("management")
        if current is not None and keys.seconds_left(current) <= keys.renew_margin_s(
                server.token_expiration_min * 60):
            keys.renew(server.management_url, server.key_file, "management")
    except (OSError, ValueError, RuntimeError):
        pass  # not written yet or TorchServe not up: the next poll tries again


def wait_ready(server: Server, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    pending = set(server.models)
    while pending:
        if time.monotonic() > deadline:
            raise TimeoutError(f"TorchServe models not ready after {timeout:.0f} s: "
                               f"{sorted(pending)}; see {server.run_dir / 'logs'}")
        if server.auth:
            _renew_management_key(server)
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




def compile_sources() -> None:
    """Writes the package's bytecode (``__pycache__``) if missing or stale. Environments with
    PYTHONDONTWRITEBYTECODE=1 (this project's CI) otherwise recompile every module of the
    package at each worker start: ~100 ms of the ~250 ms of CPU a worker spends importing it
    (bench/README.md, "Chaos"). An unwritable tree is left as it is."""
    if (ROOT / "service").is_dir():
        compileall.compile_dir(ROOT / "service", quiet=2)


def start_torchserve(store: pathlib.Path, run_dir: pathlib.Path, mars: list[pathlib.Path],
                     auth: bool, ports: dict[str, int], workers: int | None,
                     token_expiration_min: float, access_log: bool = False,
                     memory_tuning: bool = True) -> Server:
    """Writes the run directory's config and starts TorchServe detached (not yet ready)."""
    for sub in ("logs", "tmp", "examples"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    compile_sources()
    (run_dir / "key_file.json").unlink(missing_ok=True)
    specs, n_workers = write_config(run_dir, store, mars, ports, auth, workers,
                                    token_expiration_min, access_log, memory_tuning)
    server = Server(run_dir, ports, specs, auth, token_expiration_min, memory_tuning,
                    worker_threads(n_workers))
    cmd = ["torchserve", "--start", "--ncs", "--model-store", str(store),
           "--ts-config", str(run_dir / "config.properties")]
    if not auth:
        cmd.append("--disable-token-auth")
    # umask 077: key_file.json (and everything else TorchServe writes) is never readable by
    # others, also in the moment between TorchServe creating the file and chmod-ing it.
    with open(run_dir / "logs" / "torchserve.out", "ab") as out:
        subprocess.run(cmd, cwd=run_dir, env=server.env(), stdout=out, stderr=out,
                       stdin=subprocess.DEVNULL, check=True, umask=0o077)
    return server


def stop_torchserve(run_dir: pathlib.Path, timeout: float = 30.0) -> None:
    if not (run_dir / "tmp").is_dir():
        return
    with open(run_dir / "logs" / "torchserve.out", "ab") as out:
        subprocess.run(["torchserve", "--stop"], cwd=run_dir, env=server_env(run_dir),
                       stdout=out, stderr=out, stdin=subprocess.DEVNULL, check=False)
    deadline = time.monotonic() + timeout
    while _pid_alive(run_dir) and time.monotonic() < deadline:
        time.sleep(0.2)
