"""Service throughput under the same locust load, side by side in one run:
``python -m bench.service_throughput [--models breast_cancer,digits,recommender] [--users 16]
[--seconds 8] [--rounds 3] [--n-steps 32] [--configs a,ax,c,ap,cp,z] [--threads 0]
[--load locust|wrk]``.

For each model one TorchServe on this machine serves these endpoints, and the configs below
alternate back to back, round after round (identical runs drift by 10-15%):
  (a)  our handler, batch size 8, requests fused into shared engine calls, JSON in and out;
  (ax) the same endpoint, the same request as a serialized ExplainRequest (application/x-protobuf
       in and out);
  (b)  our handler, batch size 1 (not run by default);
  (c)  a stock-style handler (bench/stock_handler.py): captum's IntegratedGradients once per
       request, as TorchServe's own handlers do, batch size 8;
  (ap) predictions (no explanation) through our handler (a's endpoint);
  (cp) predictions through the stock handler (BaseHandler's batched forward, c's endpoint);
  (z)  (a)'s request to a handler that answers ``{}`` (bench/null_handler.py), batch size 8:
       TorchServe's floor on this machine (the rate no handler exceeds under this load, and
       the CPU per request of TorchServe and locust alone);
  (zp) (zpa) (zph): predictions to the null handler (not run by default): answering ``{}``;
       answering our handler's prediction text; and that with our handler's per-request
       header reads and Content-Type. With (ap) and (cp) they split the served cost of a
       prediction into TorchServe's floor, our answer's size, our header handling, and our
       handler's computing (``--configs ap,cp,zp,zpa,zph``);
  (a2) (c2) (ap2) (cp2): (a), (c), (ap) and (cp) on endpoints of two workers each (not run by
       default; ``--configs a,a2,c,c2,ap,ap2,cp,cp2`` measures one and two workers side by
       side). The other endpoints have ``--workers`` workers (default 1).
Load: N locust users sending one fixed request (IntegratedGradients, n_steps) of one input
(``--load wrk``: N wrk connections instead, each sending its next request when the last is
answered, with a few us of client CPU per request against locust's 50-100: at 4,000-10,000
rps the locust process itself limits the fast configs; ``apt install wrk``).
After each round it measures in-process, with the server idle, the rate of the same fused
engine calls on the same requests (the executor on decoded batches of 8: what the handler would
reach if the transport cost nothing) and of the handler itself (decode + executor + encode):
serving efficiency = served rps / in-process executor rps. After the rounds, one window (p) on
a profiled copy of (a) (bench/profiled_handler.py) gives the share of a batch's time per stage.
It prints throughput, p50/p95/p99 latency, failures, the load generator's own CPU share and the
machine's load from other processes during each round (bench/machine_load.py), the ratios, the
profile, and the gateway overhead (gRPC Explain via the gateway vs REST direct, p50,
sequential calls). Targets only 127.0.0.1; every locust run stops by itself (-t).
"""

from __future__ import annotations

import argparse
import base64
import csv
import functools
import json
import os
import pathlib
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import numpy as np
import yaml

from bench.machine_load import LoadMeter
from bench.stages import shares
from model_store.archive import pack_dir
from service import launcher

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = ROOT / "model_store" / "build"
HANDLER = ROOT / "handlers" / "explain_handler.py"
STOCK = ROOT / "bench" / "stock_handler.py"
PROFILED = ROOT / "bench" / "profiled_handler.py"
NULL = ROOT / "bench" / "null_handler.py"
PROTOBUF = "application/x-protobuf"
# config -> (endpoint kind, path, body kind)
CONFIGS = {"a": ("fused", "explanations", "json"), "ax": ("fused", "explanations", "protobuf"),
           "b": ("b1", "explanations", "json"), "c": ("stock", "explanations", "json"),
           "ap": ("fused", "predictions", "predict"), "cp": ("stock", "predictions", "predict"),
           "z": ("null", "explanations", "json"), "p": ("profiled", "explanations", "json"),
           "zp": ("null", "predictions", "predict"), "zpa": ("null_answer", "predictions", "predict"),
           "zph": ("null_headers", "predictions", "predict"),
           "a2": ("fused2", "explanations", "json"), "c2": ("stock2", "explanations", "json"),
           "ap2": ("fused2", "predictions", "predict"),
           "cp2": ("stock2", "predictions", "predict")}
LABEL = {"a": "ours, batch 8, fused", "ax": "ours, batch 8, fused, protobuf body",
         "b": "ours, batch 1", "c": "stock captum, batch 8", "ap": "ours, predictions",
         "cp": "stock BaseHandler, predictions", "z": "null handler (TorchServe's floor)",
         "p": "ours, profiled", "zp": "null handler, predictions",
         "zpa": "null handler answering our prediction's text",
         "zph": "null handler answering our text, with our header reads and Content-Type",
         "a2": "ours, batch 8, fused, 2 workers",
         "c2": "stock captum, batch 8, 2 workers", "ap2": "ours, predictions, 2 workers",
         "cp2": "stock BaseHandler, predictions, 2 workers"}
# endpoint kind -> (batch size, handler, workers: None for --workers)
ENDPOINTS: dict[str, tuple[int, pathlib.Path, int | None]] = {
    "fused": (8, HANDLER, None), "b1": (1, HANDLER, None), "stock": (8, STOCK, None),
    "profiled": (8, PROFILED, None), "null": (8, NULL, None), "null_answer": (8, NULL, None),
    "null_headers": (8, NULL, None), "fused2": (8, HANDLER, 2), "stock2": (8, STOCK, 2)}
MIN_COMPLETIONS = 20
MAX_WINDOW_S = 300


def window_seconds(seconds: int, latency_s: float) -> int:
    """At least ``seconds``, and long enough for MIN_COMPLETIONS requests one after another at
    the endpoint's measured latency (a floor: concurrent users complete more)."""
    return int(min(max(seconds, MIN_COMPLETIONS * latency_s), MAX_WINDOW_S) + 0.999)


def variant(model: str, suffix: str, batch: int, handler: pathlib.Path, workers: int,
            store: pathlib.Path, extra: dict | None = None) -> str:
    """Archives model_store/build/<model>/ under a new name with its own batch size, handler
    and TorchServe workers (and ``extra`` keys in its spec.yaml)."""
    name = f"{model}_{suffix}"
    work = store / "work" / name
    shutil.copytree(BUILD / model, work)
    spec = yaml.safe_load((work / "spec.yaml").read_text())
    spec["name"] = name
    spec["batch"] = {"batch_size": batch, "max_batch_delay_ms": 10, "workers": workers}
    spec.update(extra or {})
    (work / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    extras = [p for p in sorted(work.iterdir())
              if p.name not in ("model.py", "weights.pt") and p.suffix in (".yaml", ".pt")]
    pack_dir(work, name, "1.0", handler, store, extras)
    return name


def null_mode(kind: str, model: str, n_steps: int) -> dict | None:
    """The null handler's spec keys of endpoint ``kind``: our handler's answer to the bench's
    prediction, and whether to handle the headers as ours does."""
    if kind not in ("null_answer", "null_headers"):
        return None
    return {"null_handler": {"answer": our_prediction(model, n_steps),
                             "headers": kind == "null_headers"}}


@functools.cache
def our_prediction(model: str, n_steps: int) -> str:
    """Our handler's answer to the bench's prediction request, computed in process (once per
    model: both null variants answer it)."""
    from handlers.explain_handler import ExplainHandler

    handler = ExplainHandler()
    handler.initialize(_Context(BUILD / model, 1))
    body = json.loads(bodies(model, n_steps)["predict"])
    [answer] = handler.handle([{"body": body}], _Context(BUILD / model, 1, explain=False))
    return answer


def _input(model: str) -> np.ndarray:
    spec = yaml.safe_load((BUILD / model / "spec.yaml").read_text())
    return np.random.default_rng(0).random(tuple(spec["input"]["shape"]), dtype=np.float32)


def body(model: str, n_steps: int) -> str:
    """An IntegratedGradients request for one fixed input of the model's shape."""
    x = _input(model)
    return json.dumps({
        "inputs": {"tensor": {"shape": list(x.shape), "dtype": "FLOAT32",
                              "data": base64.b64encode(x.astype("<f4").tobytes()).decode()}},
        "algorithm": "IntegratedGradients", "params": {"n_steps": n_steps},
        "outputs": {"top_features": 5}})


def bodies(model: str, n_steps: int) -> dict[str, bytes]:
    """The request of each body kind: JSON, the same as a serialized ExplainRequest, and a
    prediction (the input alone)."""
    from google.protobuf import json_format

    from service._proto.explain.v1 import explain_pb2 as pb

    text = body(model, n_steps)
    m = json_format.Parse(text, pb.ExplainRequest())
    predict = {"inputs": json.loads(text)["inputs"]}
    return {"json": text.encode(), "protobuf": m.SerializeToString(),
            "predict": json.dumps(predict).encode()}


def _client(cmd: list[str], env: dict[str, str], seconds: int,
            ) -> tuple[subprocess.CompletedProcess, float]:
    """Runs a load generator's window to its end: (the process, its CPU share of the machine
    over the window)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False,
                          timeout=seconds + 120)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc, cpu / wall / (os.cpu_count() or 1)


def _nothing_done(seconds: int, output: str, client_cpu: float) -> dict:
    """A window that completed no request: 0 rps and the client's last line as the note."""
    nan = float("nan")
    tail = output.strip().splitlines()[-1:] or ["no output"]
    return {"requests": 0, "failures": 0, "rps": 0.0, "p50": nan, "p95": nan, "p99": nan,
            "locust_cpu": client_cpu,
            "note": f"no request completed in {seconds} s ({tail[0][:200]})"}


def locust_run(server: launcher.Server, endpoint: str, path: str, body_file: pathlib.Path,
               content_type: str, users: int, seconds: int, out: pathlib.Path) -> dict:
    env = dict(os.environ, EXPLAIN_BENCH_MODEL=endpoint, EXPLAIN_BENCH_BODY_FILE=str(body_file),
               EXPLAIN_BENCH_PATH=path, EXPLAIN_BENCH_CONTENT_TYPE=content_type)
    proc, locust_cpu = _client(
        [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
         "--headless", "-u", str(users), "-r", str(users), "-t", f"{seconds}s",
         "--host", server.inference_url, "--only-summary", "--csv", str(out),
         "--stop-timeout", "30", "BenchUser"], env, seconds)
    row = None
    stats = pathlib.Path(f"{out}_stats.csv")
    if stats.is_file():
        with open(stats) as f:
            row = next((r for r in csv.DictReader(f) if r["Name"] == "Aggregated"), None)
    if row is None or int(row["Request Count"]) == 0:
        return _nothing_done(seconds, proc.stderr, locust_cpu)
    return {"requests": int(row["Request Count"]), "failures": int(row["Failure Count"]),
            "rps": float(row["Requests/s"]), "p50": float(row["50%"]),
            "p95": float(row["95%"]), "p99": float(row["99%"]),
            "locust_cpu": locust_cpu}


class InProcess:
    """The model's handler in this process (same archive, same torch threads as the workers),
    timed on batches of ``batch`` copies of the bench request while the server is idle."""

    def __init__(self, model: str, text: bytes, batch: int = 8,
                 predict: bytes | None = None) -> None:
        from handlers.explain_handler import ExplainHandler
        from service.wire import request_from_body

        self.model, self.batch, self.text, self.predict = model, batch, text, predict
        self.handler = ExplainHandler()
        self.handler.initialize(_Context(BUILD / model, batch))
        ex = self.handler.executor
        assert ex is not None
        self.executor = ex
        self._decode = lambda: [request_from_body(text, True, limits=ex.limits)
                                for _ in range(batch)]
        self._stock = None

    def executor_rate(self, seconds: float = 1.5, windows: int = 3) -> float:
        """Requests/s of the executor alone (decoded requests in, Responses out): the best of
        ``windows`` windows (this machine's speed drifts by up to 1.7x over minutes with
        nothing else running; the best window understates efficiency rather than inflate it)."""
        self.executor.run(self._decode())  # warm
        rates = []
        for _ in range(windows):
            n, spent, t0 = 0, 0.0, time.perf_counter()
            while time.perf_counter() - t0 < seconds / windows or n == 0:
                reqs = self._decode()  # fresh requests: their received_at drives deadlines
                t = time.perf_counter()
                self.executor.run(reqs)
                spent += time.perf_counter() - t
                n += self.batch
            rates.append(n / spent)
        return max(rates)

    def handler_rate(self, seconds: float = 1.5) -> float:
        """Requests/s of the whole handler (TorchServe's parsed JSON bodies in, JSON out)."""
        ctx = _Context(BUILD, self.batch)
        parsed = json.loads(self.text)
        self.handler.handle([dict(body=parsed)], ctx)  # warm
        n, spent, t0 = 0, 0.0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            rows = [{"body": json.loads(self.text)} for _ in range(self.batch)]
            t = time.perf_counter()
            self.handler.handle(rows, ctx)
            spent += time.perf_counter() - t
            n += self.batch
        return n / spent

    def prediction_us(self, batches: int = 300) -> tuple[float, float]:
        """Median microseconds per request of a batch of predictions (the bench's prediction
        body, TorchServe's parsed JSON, explain header false) through our handler's handle()
        and through the stock handler's (bench/stock_handler.py), batch after batch,
        alternating which goes first."""
        from bench.stock_handler import StockCaptumHandler

        assert self.predict is not None, "no prediction body"
        ctx = _Context(BUILD / self.model, self.batch, explain=False)
        if self._stock is None:
            self._stock = StockCaptumHandler()
            self._stock.initialize(ctx)
        pair = {"ours": self.handler, "stock": self._stock}
        times: dict[str, list[float]] = {k: [] for k in pair}
        parsed = json.loads(self.predict)
        for h in pair.values():  # warm
            h.handle([dict(body=parsed)], ctx)
        for i in range(batches):
            for k in (("ours", "stock") if i % 2 == 0 else ("stock", "ours")):
                rows = [{"body": json.loads(self.predict)} for _ in range(self.batch)]
                t = time.perf_counter()
                pair[k].handle(rows, ctx)
                times[k].append((time.perf_counter() - t) * 1e6 / self.batch)
        return statistics.median(times["ours"]), statistics.median(times["stock"])


class _Context:
    """The parts of TorchServe's context the handler reads (``explain``: the frontend's
    header, true on /explanations)."""

    def __init__(self, model_dir: pathlib.Path, batch: int, explain: bool = True) -> None:
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.request_ids = {i: f"r{i}" for i in range(batch)}
        self.metrics = None
        self.explain = "true" if explain else "false"

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.explain if key == "explain" else None

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return {"Content-Type": "application/json", "explain": self.explain}

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        pass

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass


def in_process_predictions(models: list[str], rounds: int, threads: int) -> str:
    """The in-process predictions of each model, ours vs stock, ``rounds`` times: a table."""
    lines = [f"In-process predictions (handle() on batches of 8, explain header false, torch "
             f"threads {threads}), median us per request", "",
             "| model | round | ours | stock | ours/stock rate |", "|---|---|---|---|---|"]
    for m in models:
        local = InProcess(m, bodies(m, 32)["json"], predict=bodies(m, 32)["predict"])
        for r in range(rounds):
            ours, stock = local.prediction_us()
            lines.append(f"| {m} | {r} | {ours:.1f} | {stock:.1f} | {stock / ours:.2f}x |")
    return "\n".join(lines)


def read_profile(profile_dir: pathlib.Path, endpoint: str) -> dict:
    """The profiled worker's totals so far (bench/profiled_handler.py), {} if none yet."""
    for f in profile_dir.glob(f"{endpoint}-*.json"):
        try:
            return json.loads(f.read_text())
        except (OSError, ValueError):
            return {}
    return {}


def profile_delta(before: dict, after: dict) -> dict:
    t0, t1 = before.get("totals_s", {}), after.get("totals_s", {})
    return {"batches": after.get("batches", 0) - before.get("batches", 0),
            "requests": after.get("requests", 0) - before.get("requests", 0),
            "totals_s": {k: v - t0.get(k, 0.0) for k, v in t1.items()},
            "waited_s": after.get("waited_s", 0.0) - before.get("waited_s", 0.0),
            "missing": after.get("missing", [])}


def gateway_overhead(server: launcher.Server, model: str, endpoint: str, n_steps: int,
                     calls: int) -> dict:
    """p50 of sequential Explain calls via the gateway vs the same request over REST."""
    from service.client import ExplainClient

    x = _input(model)
    grpc_c = ExplainClient(f"127.0.0.1:{server.ports['gateway']}")
    rest_c = ExplainClient(mode="rest", rest_url=server.inference_url)
    kw = dict(tensor=x, algorithm="IntegratedGradients", params={"n_steps": n_steps})
    for c in (grpc_c, rest_c):
        c.explain(endpoint, **kw)  # warm-up
    times: dict[str, list[float]] = {"grpc": [], "rest": []}
    for i in range(calls):
        for name, c in ((("grpc", grpc_c), ("rest", rest_c)) if i % 2 == 0
                        else (("rest", rest_c), ("grpc", grpc_c))):
            t0 = time.perf_counter()
            c.explain(endpoint, **kw)
            times[name].append((time.perf_counter() - t0) * 1000)
    grpc_c.close()
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--models", default="breast_cancer,digits,recommender")
    ap.add_argument("--configs", default="a,ax,c,ap,cp,z",
                    help=f"comma-separated, of {','.join(c for c in CONFIGS if c != 'p')}")
    ap.add_argument("--users", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--n-steps", type=int, default=32)
    ap.add_argument("--overhead-calls", type=int, default=60)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads of every worker, ours and stock alike, and of the "
                         "in-process measurement (OMP_NUM_THREADS; 0: the launcher's default, "
                         "the cores shared out among the workers; -1: torch's default, one "
                         "per core)")
    ap.add_argument("--no-profile", action="store_true")
    ap.add_argument("--workers", type=int, default=1,
                    help="TorchServe workers of every endpoint but the 2-worker configs' "
                         "(the targets are measured with 1; the in-process rates are one "
                         "process's)")
    ap.add_argument("--load", choices=sorted(LOADS), default="locust",
                    help="the load generator: locust (loadtest/locustfile.py's BenchUser) or "
                         "wrk (apt install wrk; a few us of client CPU per request)")
    ap.add_argument("--in-process", action="store_true",
                    help="only the in-process predictions, ours vs stock (no server, no load)")
    opts = ap.parse_args()
    global LOAD
    LOAD = opts.load
    if LOAD == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("--load wrk needs wrk on the PATH (Debian: apt install wrk)")
    models = [m for m in opts.models.split(",") if m]
    configs = [c for c in opts.configs.split(",") if c]
    unknown = [c for c in configs if c not in CONFIGS or c == "p"]
    if unknown:
        raise SystemExit(f"unknown configs {unknown}")
    missing = [m for m in models if not (BUILD / m).is_dir()]
    if missing:
        raise SystemExit(f"run `make models` first (missing {missing})")
    kinds = {CONFIGS[c][0] for c in configs} | (set() if opts.no_profile else {"profiled"})
    # every worker, ours and stock alike, and the in-process measurement: the given threads, or
    # what the launcher gives this many workers (cores shared out), or torch's default (-1)
    workers = {k: ENDPOINTS[k][2] or opts.workers for k in kinds}
    threads = opts.threads or launcher.worker_threads(len(models) * sum(workers.values()))
    if threads > 0:
        os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    threads = torch.get_num_threads()
    if opts.in_process:
        print(in_process_predictions(models, opts.rounds, threads))
        return
    # The workers import this checkout's packages (service, handlers, bench), whatever the venv
    # was installed from.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="throughput-", dir=ROOT / "run"
                                        if (ROOT / "run").is_dir() else None))
    profile_dir = tmp / "profile"
    profile_dir.mkdir()
    os.environ["EXPLAIN_PROFILE_DIR"] = str(profile_dir)
    store = tmp / "store"
    store.mkdir()
    endpoints = {m: {k: variant(m, k, *ENDPOINTS[k][:2], workers[k], store,
                                null_mode(k, m, opts.n_steps)) for k in sorted(kinds)}
                 for m in models}
    run_dir = tmp / "run"
    t_start = time.monotonic()
    server = launcher.start(store, run_dir, auth=False, timeout=600)  # the specs' workers
    print(f"server ready in {time.monotonic() - t_start:.0f} s; torch threads {threads}",
          flush=True)
    results: dict[str, dict[str, list[dict]]] = {m: {c: [] for c in configs} for m in models}
    inproc: dict[str, dict[str, list[float]]] = {
        m: {"executor": [], "handler": [], "predict_ratio": []} for m in models}
    profiles: dict[str, dict] = {}
    overhead = {}
    try:
        for m in models:
            files = {}
            for kind, data in bodies(m, opts.n_steps).items():
                files[kind] = tmp / f"{m}.{kind}"
                files[kind].write_bytes(data)
            latency = 0.0
            for c in configs + ([] if opts.no_profile else ["p"]):
                kind, path, body_kind = CONFIGS[c]
                ctype = PROTOBUF if body_kind == "protobuf" else "application/json"
                req = urllib.request.Request(
                    f"{server.inference_url}/{path}/{endpoints[m][kind]}",
                    data=files[body_kind].read_bytes(),
                    headers={"Content-Type": ctype, "Accept": ctype})
                urllib.request.urlopen(req, timeout=300).read()  # warm every worker
                t0 = time.perf_counter()  # the second call is warm: it sizes the window
                urllib.request.urlopen(req, timeout=300).read()
                latency = max(latency, time.perf_counter() - t0)
            seconds = window_seconds(opts.seconds, latency)
            local = InProcess(m, files["json"].read_bytes(), predict=files["predict"].read_bytes())
            if m == models[0]:  # TorchServe's frontend is slow until its JIT has run: the
                for c in configs:  # first window served ~0.6x the later ones (2026-12-02)
                    res = _window(server, run_dir, c, endpoints[m], files, opts.users,
                                  min(seconds, 4), tmp / f"{m}_{c}_warm")
                    print(f"{m} ({c}) warm-up, not counted: {res['rps']:.1f} rps", flush=True)
            for r in range(opts.rounds):
                order = configs if r % 2 == 0 else configs[::-1]
                for c in order:
                    res = _window(server, run_dir, c, endpoints[m], files, opts.users, seconds,
                                  tmp / f"{m}_{c}_{r}")
                    results[m][c].append(res)
                    print(f"{m} ({c}) round {r}: {res['rps']:.1f} rps, p50 {res['p50']:.0f} ms, "
                          f"p99 {res['p99']:.0f} ms, failures {res['failures']}, "
                          f"client CPU {100 * res['locust_cpu']:.0f}%, {seconds} s window; "
                          f"{res['load']}" + (f"; NOTE {res['note']}" if "note" in res
                                              else ""), flush=True)
                meter, t_in = LoadMeter(run_dir), time.monotonic()
                meter.start()
                e_rate, h_rate = local.executor_rate(), local.handler_rate()
                inproc[m]["executor"].append(e_rate)
                inproc[m]["handler"].append(h_rate)
                ours_us, stock_us = local.prediction_us()
                inproc[m]["predict_ratio"].append(stock_us / ours_us)
                load = meter.stop()  # the idle server's own CPU would slow these down
                print(f"{m} in-process round {r}: executor {e_rate:.1f} req/s, handler "
                      f"{h_rate:.1f} req/s; predictions ours {ours_us:.1f} us/request, stock "
                      f"{stock_us:.1f} us/request; {load.describe()}, the idle server "
                      f"{100 * load.server_cpu_s / (time.monotonic() - t_in):.0f}% of a core",
                      flush=True)
            if not opts.no_profile:
                before = read_profile(profile_dir, endpoints[m]["profiled"])
                res = _window(server, run_dir, "p", endpoints[m], files, opts.users, seconds,
                              tmp / f"{m}_p")
                time.sleep(1.5)  # the worker writes its totals every second
                profiles[m] = {**profile_delta(before, read_profile(
                    profile_dir, endpoints[m]["profiled"])), "rps": res["rps"]}
                print(f"{m} (p) profiled: {res['rps']:.1f} rps; {res['load']}", flush=True)
            if "fused" in endpoints[m]:
                overhead[m] = gateway_overhead(server, m, endpoints[m]["fused"], opts.n_steps,
                                               opts.overhead_calls)
    finally:
        launcher.stop(run_dir)
    print(f"\n(total {time.monotonic() - t_start:.0f} s)\n")
    print(table(results, inproc, opts, threads))
    if profiles:
        print()
        print(profile_table(profiles))
    if overhead:
        print("\n| model | gRPC via gateway p50 | REST direct p50 | ratio |\n|---|---|---|---|")
        for m, o in overhead.items():
            print(f"| {m} | {o['grpc']:.1f} ms | {o['rest']:.1f} ms | {o['grpc'] / o['rest']:.2f} |")
    print()
    print(targets(results, inproc, overhead))


WRK_SCRIPT = """
local f = assert(io.open(os.getenv("EXPLAIN_BENCH_BODY_FILE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = os.getenv("EXPLAIN_BENCH_CONTENT_TYPE")
wrk.headers["Accept"] = os.getenv("EXPLAIN_BENCH_CONTENT_TYPE")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests": %d, "seconds": %.6f, "failures": %d, "p50": %.3f, "p95": %.3f, "p99": %.3f}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3))
end
"""


def wrk_run(server: launcher.Server, endpoint: str, path: str, body_file: pathlib.Path,
            content_type: str, users: int, seconds: int, out: pathlib.Path) -> dict:
    """``locust_run``'s window driven by wrk (one thread, ``users`` connections, each sending
    its next request when the last is answered, as locust's users with no wait): a load
    generator that costs a few us of CPU per request instead of locust's ~50-100 us, so that
    the fast configs measure the server rather than the client. Non-2xx answers are failures."""
    script = out.with_suffix(".lua")
    script.write_text(WRK_SCRIPT)
    env = dict(os.environ, EXPLAIN_BENCH_BODY_FILE=str(body_file),
               EXPLAIN_BENCH_CONTENT_TYPE=content_type)
    proc, client_cpu = _client(
        ["wrk", "-t1", f"-c{users}", f"-d{seconds}s", "--timeout", "30s", "-s", str(script),
         f"{server.inference_url}/{path}/{endpoint}"], env, seconds)
    line = next((x for x in reversed(proc.stdout.splitlines()) if x.startswith("{")), None)
    got = json.loads(line) if line else {"requests": 0}
    if not got["requests"]:
        return _nothing_done(seconds, proc.stderr or proc.stdout, client_cpu)
    return {"requests": got["requests"], "failures": got["failures"],
            "rps": got["requests"] / got["seconds"], "p50": got["p50"], "p95": got["p95"],
            "p99": got["p99"], "locust_cpu": client_cpu}


LOADS = {"locust": locust_run, "wrk": wrk_run}
LOAD = "locust"  # --load


def _window(server: launcher.Server, run_dir: pathlib.Path, config: str,
            endpoints: dict[str, str], files: dict[str, pathlib.Path], users: int,
            seconds: int, out: pathlib.Path) -> dict:
    kind, path, body_kind = CONFIGS[config]
    ctype = PROTOBUF if body_kind == "protobuf" else "application/json"
    meter = LoadMeter(run_dir)
    meter.start()
    res = LOADS[LOAD](server, endpoints[kind], path, files[body_kind], ctype, users, seconds,
                      out)
    load = meter.stop()
    res["other_cpu"] = load.other
    res["load"] = load.describe()
    res["server_cpu_ms"] = 1e3 * load.server_cpu_s / max(res["requests"], 1)
    return res


def _median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def _ratios(rows_x: list[dict], rows_y: list[dict]) -> float:
    """The median over rounds of the per-round throughput ratio x/y (0 when y is 0)."""
    return statistics.median(x["rps"] / y["rps"] if y["rps"] else 0.0
                             for x, y in zip(rows_x, rows_y))


def table(results: dict, inproc: dict, opts: argparse.Namespace, threads: int) -> str:
    rounds = opts.rounds
    lines = [f"IntegratedGradients n_steps={opts.n_steps}, {opts.users} users, "
             f"{rounds} x {opts.seconds} s per config (medians over rounds), "
             f"torch threads {threads}", "",
             "| model | config | rps | p50 ms | p95 ms | p99 ms | failures | client CPU "
             "| other CPU (max) | server CPU ms/request |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for m, per in results.items():
        for c, rows in per.items():
            lines.append(f"| {m} | ({c}) {LABEL[c]} | {_median(rows, 'rps'):.1f} | "
                         f"{_median(rows, 'p50'):.0f} | {_median(rows, 'p95'):.0f} | "
                         f"{_median(rows, 'p99'):.0f} | {sum(r['failures'] for r in rows)} | "
                         f"{100 * _median(rows, 'locust_cpu'):.0f}% | "
                         f"{100 * max(r.get('other_cpu', 0.0) for r in rows):.0f}% | "
                         f"{_median(rows, 'server_cpu_ms'):.2f} |")
    pairs = [(x, y) for x, y in (("a", "c"), ("ax", "c"), ("a", "b"), ("ap", "cp"),
                                 ("ax", "a"), ("a2", "c2"), ("ap2", "cp2"), ("a2", "a"),
                                 ("ap2", "ap"), ("zpa", "zp"), ("zph", "zpa"), ("ap", "zph"),
                                 ("cp", "zp")) if x in next(iter(results.values()))
             and y in next(iter(results.values()))]
    lines += ["", "Ratios: medians over rounds of the per-round ratio (configs of a round run "
              "back to back).", "",
              "| model | " + " | ".join(f"{x}/{y} rps" for x, y in pairs)
              + " | p99 a vs c | in-process executor | in-process handler | efficiency a "
              "| efficiency ax | efficiency a2 | in-process predictions ours/stock |",
              "|---|" + "---|" * (len(pairs) + 7)]
    for m, per in results.items():
        cells = [f"{_ratios(per[x], per[y]):.2f}x" for x, y in pairs]
        p99 = (f"{_median(per['a'], 'p99'):.0f} vs {_median(per['c'], 'p99'):.0f} ms"
               if "a" in per and "c" in per else "")
        e = statistics.median(inproc[m]["executor"]) if inproc[m]["executor"] else float("nan")
        h = statistics.median(inproc[m]["handler"]) if inproc[m]["handler"] else float("nan")
        eff = {c: (statistics.median(r["rps"] / x for r, x in zip(per[c], inproc[m]["executor"]))
                   if c in per else float("nan")) for c in ("a", "ax", "a2")}
        pr = inproc[m].get("predict_ratio") or [float("nan")]
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {p99} | {e:.0f} req/s | "
                     f"{h:.0f} req/s | {eff['a']:.2f} | {eff['ax']:.2f} | {eff['a2']:.2f} | "
                     f"{statistics.median(pr):.2f}x |")
    return "\n".join(lines)


# issue #13's targets: (name, model -> threshold or None, higher is better)
A_OVER_C = {"digits": 2.0, "resnet18": 1.0}
EFFICIENCY = {"digits": 0.8, "resnet18": 0.8}


def targets(results: dict, inproc: dict, overhead: dict) -> str:
    """One line per target the run measured: the value and met / MISSED."""
    lines = ["Targets (medians over rounds of per-round ratios):"]

    def line(what: str, value: float, ok: bool) -> None:
        lines.append(f"- {what}: {value:.2f} {'met' if ok else 'MISSED'}")

    for m, per in results.items():
        if "a" in per and "c" in per:
            want = A_OVER_C.get(m, 3.0)
            line(f"{m} fused / stock captum >= {want}x", _ratios(per["a"], per["c"]),
                 _ratios(per["a"], per["c"]) >= want)
            a99, c99 = _median(per["a"], "p99"), _median(per["c"], "p99")
            line(f"{m} p99 fused / stock <= 1", a99 / c99, a99 <= c99)
        if "a" in per and inproc[m]["executor"]:
            want = EFFICIENCY.get(m, 0.5)
            eff = statistics.median(r["rps"] / x for r, x in zip(per["a"], inproc[m]["executor"]))
            line(f"{m} serving efficiency (JSON) >= {want}", eff, eff >= want)
            if "z" in per:
                z = statistics.median(r["rps"] / x for r, x in zip(per["z"],
                                                                   inproc[m]["executor"]))
                lines.append(f"- {m} TorchServe's floor (z) / in-process executor (not a "
                             f"target: what a handler costing nothing would reach): {z:.2f}")
        if "ap" in per and "cp" in per:
            r = _ratios(per["ap"], per["cp"])
            line(f"{m} predictions ours / stock >= 0.9", r, r >= 0.9)
            cost = statistics.median(c["server_cpu_ms"] / a["server_cpu_ms"]
                                     for a, c in zip(per["ap"], per["cp"]))
            lines.append(f"- {m} predictions, server CPU per request stock / ours (frontend + "
                         f"workers; not a target, less moved by load than rps): {cost:.2f}")
        if all(c in per for c in ("ap", "cp", "zp", "zpa", "zph")):
            us = {c: statistics.median(1e6 / r["rps"] if r["rps"] else float("nan")
                                       for r in per[c]) for c in ("ap", "cp", "zp", "zpa", "zph")}
            lines.append(
                f"- {m} a prediction served, us per request (medians of 1e6 / rps; not a "
                f"target): TorchServe's floor {us['zp']:.1f}; ours {us['ap']:.1f} = floor + "
                f"our answer's size {us['zpa'] - us['zp']:.1f} + our header reads and "
                f"Content-Type {us['zph'] - us['zpa']:.1f} + our computing "
                f"{us['ap'] - us['zph']:.1f}; stock {us['cp']:.1f} = floor + "
                f"{us['cp'] - us['zp']:.1f}")
        if "a2" in per and "c2" in per:
            r, want = _ratios(per["a2"], per["c2"]), A_OVER_C.get(m, 3.0)
            line(f"{m} fused / stock captum, 2 workers each (the same target, another "
                 f"deployment) >= {want}x", r, r >= want)
        if "a2" in per and inproc[m]["executor"]:
            eff = statistics.median(r["rps"] / x for r, x in zip(per["a2"], inproc[m]["executor"]))
            lines.append(f"- {m} served with 2 workers / one process's in-process executor (not "
                         f"the target's definition: that is per worker, {eff / 2:.2f}): "
                         f"{eff:.2f}")
        if "ap2" in per and "cp2" in per:
            r = _ratios(per["ap2"], per["cp2"])
            line(f"{m} predictions ours / stock, 2 workers each (the same target, another "
                 f"deployment) >= 0.9", r, r >= 0.9)
        if inproc[m].get("predict_ratio"):
            r = statistics.median(inproc[m]["predict_ratio"])
            lines.append(f"- {m} in-process predictions ours / stock (handle() per request, "
                         f"no transport; not a target): {r:.2f}")
    for m, o in overhead.items():
        r = o["grpc"] / o["rest"]
        line(f"{m} gRPC via gateway / REST direct p50 <= 1.10", r, r <= 1.10)
    return "\n".join(lines)


def profile_table(profiles: dict) -> str:
    """Share of the profiled worker's busy time per stage (handler stages plus TorchServe's
    worker-side IPC), per model."""
    models = list(profiles)
    stages: list[str] = []
    for p in profiles.values():
        stages += [s for s, _, _ in shares(p["totals_s"]) if s not in stages]
    lines = ["Profile of one worker under the same load (config p: our handler with stage "
             "timers), share of the worker's busy time", "",
             "| stage | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    share = {m: {s: f for s, _, f in shares(profiles[m]["totals_s"])} for m in models}
    for s in stages:
        lines.append(f"| {s} | " + " | ".join(f"{100 * share[m].get(s, 0.0):.1f}%"
                                              for m in models) + " |")
    rows = {"busy ms per request": lambda p: 1e3 * sum(p["totals_s"].values())
            / max(p["requests"], 1),
            "waiting for the next batch, ms per request": lambda p: 1e3 * p["waited_s"]
            / max(p["requests"], 1),
            "requests per batch": lambda p: p["requests"] / max(p["batches"], 1),
            "served rps while profiled": lambda p: p["rps"]}
    for name, f in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{f(profiles[m]):.2f}" for m in models) + " |")
    missing = sorted({t for p in profiles.values() for t in p.get("missing", [])})
    if missing:
        lines.append(f"\n(stage timers not installed, their time is in the caller's stage: "
                     f"{', '.join(missing)})")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
