"""What the gateway's hop costs, side by side: ``python -m bench.gateway_hop [--model
breast_cancer] [--calls 200] [--n-steps 32] [--ref REV|DIR] [--profile]`` on a real
TorchServe, or ``--stand-in [--ref REV,DIR,...] [--rounds 5] [--delay-ms 20] [--pad-kb N]
[--request-kb N]`` on a
stand-in (bench/README.md "Gateway hop").

Real TorchServe: one instance serves the model as bench/service_throughput.py's
gateway_overhead measures it (our handler, batch size 8, max_batch_delay 10 ms,
IntegratedGradients of one fixed input) with this checkout's gateway and, with ``--ref``, one
running the gateway code of that git revision (``git archive``; or a directory holding a
``service`` package), each spawned alike (the launcher's malloc settings). Sequential calls,
the paths in rotating order, call after call:
  rest        ExplainClient(mode="rest"): JSON to /explanations (the target's denominator);
  grpc        ExplainClient over gRPC via this checkout's gateway (the target's numerator),
              which reaches TorchServe over its REST API;
  grpc~grpc-upstream  the same gateway code reaching TorchServe over gRPC (--inference-url "");
  grpc@REF    the same via the REF gateway;
  ts          TorchServe's own gRPC Predictions, no gateway: the serialized request in the
              input map, the ExplainReply parsed and read back as ExplainClient does;
  raw, raw~grpc-upstream, raw@REF, raw_ts  the serialized request as bytes and the answer left
              as bytes (no client-side protobuf work): a gRPC-upstream gateway's hop alone is
              raw - raw_ts;
  raw_ts_rest the serialized request POSTed to TorchServe's REST /explanations in
              application/x-protobuf (http.client, keep-alive): the REST-upstream gateway's hop
              alone is raw - raw_ts_rest.
Prints the p50 (and p90) of every path, the ratios to rest, the machine's /proc/loadavg, and
each gateway's CPU time per call. ``--profile`` also runs a cProfiled gateway (this
checkout's), sends it the calls, and prints its top functions by own time.

Stand-in: the gateways in front of a stand-in TorchServe in this process (a canned
ExplainReply after ``--delay-ms``), which takes TorchServe's and the machine's noise out: per
round, the gateways' CPU per call and p50 (calls interleaved), and the stand-in called directly
(the hop = a gateway's p50 - that).
"""

from __future__ import annotations

import argparse
import http.client
import io
import os
import pathlib
import pstats
import signal
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time

from bench.machine_load import _proc_cpu
from bench.service_throughput import BUILD, ROOT, _input, variant
from service import launcher
from service.gateway import process as gw_process


def _loadavg() -> str:
    try:
        return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def _checkout(ref: str, into: pathlib.Path) -> pathlib.Path:
    """The ``service`` package of git revision ``ref``, extracted under ``into``."""
    data = subprocess.run(["git", "archive", ref, "service"], cwd=ROOT, check=True,
                          capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as t:
        t.extractall(into, filter="data")
    return into


def _spawn(server: launcher.Server, run_dir: pathlib.Path, name: str,
           pythonpath: pathlib.Path, prefix: list[str], management_url: str = "",
           inference_url: str | None = None) -> tuple[subprocess.Popen, str]:
    """A gateway; ``inference_url``: its REST upstream ("": gRPC only; None: the option is
    not passed, for a --ref gateway older than it)."""
    port = launcher.free_ports(1)[0]
    listen = f"127.0.0.1:{port}"
    cmd = gw_process.gateway_command(listen, f"127.0.0.1:{server.ports['grpc_inference']}",
                                     management_url or server.management_url, None,
                                     inference_url=inference_url)
    cmd = [cmd[0], *prefix, *cmd[1:]]
    # the launcher's malloc settings (a fixed mmap threshold: large buffers cost page faults)
    env = launcher.torchserve.memory_env({**os.environ, "PYTHONPATH": str(pythonpath)})
    with open(run_dir / "logs" / f"gateway-{name}.log", "ab") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                cwd=pythonpath, env=env)
    gw_process.wait_serving(listen, 60.0, alive=lambda: proc.poll() is None)
    return proc, listen


def paths(server: launcher.Server, model: str, base: str, n_steps: int,
          gateways: dict[str, str]) -> dict:
    """name -> a no-argument call (one request, answered)."""
    import grpc

    from service._proto.explain.v1 import explain_pb2 as pb
    from service._proto.torchserve import inference_client_pb2 as ts_pb
    from service._proto.torchserve import inference_client_pb2_grpc as ts_grpc
    from service.client import ExplainClient, Explanation, build_request

    kw = dict(tensor=_input(base), algorithm="IntegratedGradients",
              params={"n_steps": n_steps})
    rest = ExplainClient(mode="rest", rest_url=server.inference_url)
    out = {"rest": lambda: rest.explain(model, **kw)}
    ident = dict(request_serializer=None, response_deserializer=None)
    request = build_request(model, **kw)
    raw_request = request.SerializeToString()
    for name, address in gateways.items():
        c = ExplainClient(address)
        out[name.replace("gw", "grpc")] = lambda c=c: c.explain(model, **kw)
        raw = grpc.insecure_channel(address).unary_unary("/explain.v1.Explainer/Explain",
                                                          **ident)
        out[name.replace("gw", "raw")] = lambda raw=raw: raw(raw_request, timeout=60)
    ts_channel = grpc.insecure_channel(f"127.0.0.1:{server.ports['grpc_inference']}")
    stub = ts_grpc.InferenceAPIsServiceStub(ts_channel)

    def ts() -> Explanation:
        m = build_request(model, **kw)
        m.deadline_ms = 60_000
        reply = stub.Predictions(ts_pb.PredictionsRequest(
            model_name=model, input={"explain_request": m.SerializeToString(),
                                     "explain": b"true"}), timeout=60)
        r = pb.ExplainReply()
        r.ParseFromString(reply.prediction)
        return Explanation.from_proto(r.response)

    ts_raw = ts_channel.unary_unary("/org.pytorch.serve.grpc.inference.InferenceAPIsService/"
                                    "Predictions", **ident)
    ts_request = ts_pb.PredictionsRequest(
        model_name=model, input={"explain_request": raw_request, "explain": b"true"}
    ).SerializeToString()
    out["ts"] = ts
    out["raw_ts"] = lambda: ts_raw(ts_request, timeout=60)
    conn = http.client.HTTPConnection("127.0.0.1", server.ports["inference"])
    timed = build_request(model, **kw)
    timed.deadline_ms = 60_000
    body = timed.SerializeToString()
    headers = {"Content-Type": "application/x-protobuf", "Accept": "application/x-protobuf"}

    def ts_rest() -> bytes:
        conn.request("POST", f"/explanations/{model}", body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        assert r.status == 200, (r.status, data[:200])
        return data
    out["raw_ts_rest"] = ts_rest
    return out


def measure(calls: dict, n: int, warm_up: bool = True) -> dict[str, list[float]]:
    for f in calls.values() if warm_up else ():
        f()
        f()
    names = list(calls)
    times: dict[str, list[float]] = {k: [] for k in names}
    for i in range(n):
        k = i % len(names)
        for name in names[k:] + names[:k]:  # rotating order
            t0 = time.perf_counter()
            calls[name]()
            times[name].append((time.perf_counter() - t0) * 1000)
    return times


def cpu_per_call(pid: int, call, n: int) -> float:
    """The CPU time (user + system, ms) process ``pid`` spends per ``call()``, over ``n``
    sequential calls: a figure the machine's load from others barely moves."""
    before = _proc_cpu(pid)
    for _ in range(n):
        call()
    return (_proc_cpu(pid) - before) * 1000 / n


def report(times: dict[str, list[float]]) -> str:
    p50 = {k: statistics.median(v) for k, v in times.items()}
    lines = ["| path | p50 ms | p90 ms | p50 / rest |", "|---|---|---|---|"]
    for k, v in times.items():
        p90 = statistics.quantiles(v, n=10)[-1]
        lines.append(f"| {k} | {p50[k]:.2f} | {p90:.2f} | {p50[k] / p50['rest']:.3f} |")
    for gw in [k for k in p50 if k.startswith("raw") and not k.startswith("raw_ts")]:
        lines.append(f"\nhop {gw} - raw_ts (gRPC): {p50[gw] - p50['raw_ts']:+.2f} ms, "
                     f"- raw_ts_rest (REST): {p50[gw] - p50['raw_ts_rest']:+.2f} ms")
    return "\n".join(lines)


def stand_in_reply(pad_kb: int = 0) -> bytes:
    """An ExplainReply of breast_cancer's kind (30 attributions, 5 top features), with a
    heatmap of ``pad_kb`` KiB."""
    import numpy as np

    from service import wire
    from service._proto.explain.v1 import explain_pb2 as pb

    a = np.random.default_rng(1).standard_normal(30).astype(np.float32)
    t = pb.TargetExplanation(target=1, label="benign", attributions=wire.tensor_to_proto(a),
                             instance_output=0.9, baseline_output=0.1, approximation_error=1e-4,
                             top_features=[pb.Feature(name=f"feature {i}", value=float(i),
                                                      attribution=float(a[i])) for i in range(5)],
                             heatmap_png=b"\x89" * (pad_kb * 1024))
    r = pb.ExplainResponse(model="m", model_version="1.0", algorithm="IntegratedGradients",
                           prediction=pb.Prediction(index=1, label="benign", probability=0.9),
                           explanations=[t], timings=pb.Timings(total_ms=3.0))
    return pb.ExplainReply(response=r).SerializeToString()


def stand_in(model: str, n_steps: int, calls: int, refs: list[str], rounds: int,
             delay_s: float, pad_kb: int = 0, request_kb: int = 0) -> None:
    """The gateways (this checkout's and each of ``refs``) in front of a stand-in TorchServe
    (this process: a canned ExplainReply), so that only the gateway's own work differs: per
    round and gateway, its CPU time per call and the p50 of ``calls`` raw sequential calls."""
    from concurrent import futures

    import grpc

    from service._proto.torchserve import inference_client_pb2 as ts_pb
    from service._proto.torchserve import inference_client_pb2_grpc as ts_grpc
    from service.client import build_request

    reply = stand_in_reply(pad_kb)

    class TorchServe(ts_grpc.InferenceAPIsServiceServicer):
        def Predictions(self, request, context):
            time.sleep(delay_s)
            return ts_pb.PredictionResponse(prediction=reply)

        def Ping(self, request, context):
            return ts_pb.TorchServeHealthResponse(health='{"status": "Healthy"}')

    server = grpc.server(futures.ThreadPoolExecutor(4))
    ts_grpc.add_InferenceAPIsServiceServicer_to_server(TorchServe(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    fake = launcher.Server.__new__(launcher.Server)
    fake.ports = {"grpc_inference": port, "management": 1}
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="gwhop-"))
    (tmp / "logs").mkdir()
    import numpy as np

    # with request_kb, a baseline of that size (the stand-in does not read it)
    baseline = np.zeros(request_kb * 256, np.float32) if request_kb else None
    payload = build_request(model, tensor=_input(model), algorithm="IntegratedGradients",
                            params={"n_steps": n_steps}, baseline=baseline).SerializeToString()
    gws: dict[str, tuple[subprocess.Popen, object]] = {}
    try:
        for ref in ["", *refs]:
            where = (pathlib.Path(ref) if pathlib.Path(ref).is_dir()  # a copy to try
                     else _checkout(ref, tmp / ref.replace("/", "_")) if ref else ROOT)
            proc, address = _spawn(fake, tmp, (ref or "this").replace("/", "_"), where, [],
                                   management_url="http://127.0.0.1:1",
                                   inference_url=None if ref else "")  # the stand-in: gRPC
            call = grpc.insecure_channel(address).unary_unary("/explain.v1.Explainer/Explain")
            gws[ref or "this"] = proc, lambda call=call: call(payload, timeout=60)
        direct = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(
            "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions")
        ts_request = ts_pb.PredictionsRequest(
            model_name=model, input={"explain_request": payload, "explain": b"true"}
        ).SerializeToString()
        gws["(stand-in direct)"] = (None, lambda: direct(ts_request, timeout=60))
        for _, call in gws.values():
            for _ in range(20):
                call()
        rows: dict[str, list[tuple[float, float]]] = {k: [] for k in gws}
        for _ in range(rounds):  # calls interleaved as in measure(); CPU per gateway process
            before = {k: _proc_cpu(p.pid) if p else 0.0 for k, (p, _) in gws.items()}
            times = measure({k: c for k, (_, c) in gws.items()}, calls, warm_up=False)
            for k, (p, _) in gws.items():
                cpu = (_proc_cpu(p.pid) - before[k]) * 1000 / calls if p else 0.0
                rows[k].append((cpu, statistics.median(times[k])))
        print(f"stand-in TorchServe, {rounds} rounds x {calls} calls per gateway, load "
              f"{_loadavg()}\n\n| gateway | CPU ms/call (median of rounds) | p50 ms | rounds |"
              "\n|---|---|---|---|")
        for name, r in rows.items():
            print(f"| {name} | {statistics.median(c for c, _ in r):.3f} | "
                  f"{statistics.median(t for _, t in r):.3f} | "
                  + " ".join(f"{c:.2f}/{t:.2f}" for c, t in r) + " |")
    finally:
        for proc, _ in gws.values():
            if proc:
                proc.send_signal(signal.SIGTERM)
                proc.wait(30)
        server.stop(None)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default="breast_cancer")
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--n-steps", type=int, default=32)
    ap.add_argument("--ref", default="", help="git revision of a second gateway to compare")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--stand-in", action="store_true",
                    help="a stand-in TorchServe (canned reply): gateway CPU per call only")
    ap.add_argument("--rounds", type=int, default=5, help="with --stand-in")
    ap.add_argument("--delay-ms", type=float, default=0.0,
                    help="with --stand-in: how long it takes to answer")
    ap.add_argument("--pad-kb", type=int, default=0,
                    help="with --stand-in: the size of the answer's heatmap_png")
    ap.add_argument("--request-kb", type=int, default=0,
                    help="with --stand-in: a request that large (an explicit baseline)")
    opts = ap.parse_args()
    if opts.stand_in:
        stand_in(opts.model, opts.n_steps, opts.calls,
                 [r for r in opts.ref.split(",") if r], opts.rounds, opts.delay_ms / 1000, opts.pad_kb,
                 opts.request_kb)
        return
    if not (BUILD / opts.model).is_dir():
        raise SystemExit("run `make models` first")
    os.environ["PYTHONPATH"] = str(ROOT)
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="gwhop-", dir=ROOT / "run"
                                        if (ROOT / "run").is_dir() else None))
    store = tmp / "store"
    store.mkdir()
    model = variant(opts.model, "fused", 8, ROOT / "handlers" / "explain_handler.py", store)
    run_dir = tmp / "run"
    print(f"load before start {_loadavg()}", flush=True)
    server = launcher.start(store, run_dir, auth=False, timeout=600, gateway=False)
    procs: list[subprocess.Popen] = []
    try:  # every gateway spawned alike (the launcher's malloc settings, no supervisor)
        proc, address = _spawn(server, run_dir, "this", ROOT, [],
                               inference_url=server.inference_url)
        procs.append(proc)
        gateways = {"gw": address}
        proc, gateways["gw~grpc-upstream"] = _spawn(server, run_dir, "grpc-upstream", ROOT, [],
                                                    inference_url="")
        procs.append(proc)
        if opts.ref:
            where = (pathlib.Path(opts.ref) if pathlib.Path(opts.ref).is_dir()
                     else _checkout(opts.ref, tmp / "ref"))
            proc, gateways[f"gw@{opts.ref}"] = _spawn(server, run_dir, "ref", where, [])
            procs.append(proc)
        calls = paths(server, model, opts.model, opts.n_steps, gateways)
        print(f"load before calls {_loadavg()}", flush=True)
        times = measure(calls, opts.calls)
        print(f"load after calls {_loadavg()}\n")
        print(f"{model}: IntegratedGradients n_steps={opts.n_steps}, {opts.calls} sequential "
              "calls per path, interleaved\n")
        print(report(times))
        pids = dict(zip(gateways, (p.pid for p in procs)))
        print("\ngateway CPU per call (ms), raw calls alone, twice:")
        for name, pid in pids.items():
            raw = calls[name.replace("gw", "raw")]
            print(f"  {name}: " + ", ".join(f"{cpu_per_call(pid, raw, opts.calls):.3f}"
                                             for _ in range(2)))
        if opts.profile:
            out = tmp / "gateway.prof"
            proc, address = _spawn(server, run_dir, "profiled", ROOT,
                                   ["-m", "cProfile", "-o", str(out)],
                                   inference_url=server.inference_url)
            prof = paths(server, model, opts.model, opts.n_steps, {"gw": address})
            measure({"grpc": prof["grpc"], "raw": prof["raw"]}, opts.calls)
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
            print(f"\nprofiled gateway, {2 * opts.calls + 4} calls:")
            pstats.Stats(str(out), stream=sys.stdout).sort_stats("tottime").print_stats(25)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
            p.wait(30)
        launcher.stop(run_dir)


if __name__ == "__main__":
    main()
