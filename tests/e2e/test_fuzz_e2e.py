"""End-to-end fuzz against the real TorchServe and gateway (the session ``server`` fixture):
>= 2,000 mutated REST requests and >= 1,000 mutated gRPC requests (through the gateway), sent
concurrently with valid requests so that they share TorchServe batches. Asserts: no 5xx (no
server-side gRPC code), no worker restart, every refusal a 4xx naming the field, every valid
answer the same as that request sent alone, nothing unpickled. Then: no token in any log.

Mutations: fields deleted / replaced / wrapped / stringified, huge / negative / NaN numbers,
deep nesting, wrong shapes, bad base64, truncated and giant images, unknown models, non-ASCII
text, lists where objects are expected, raw garbage, pickle payloads; over gRPC also
undecodable, truncated and bit-flipped messages. A summary (counts by mutation) is printed and
written to ``<run dir>/fuzz_report.json``.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import json_format

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from tests.e2e.fuzz_cases import Mutator, Raw, bases, valid_cases

pytestmark = pytest.mark.e2e

N_REST, N_GRPC = 2000, 1000          # mutated requests
N_VALID_REST, N_VALID_GRPC = 300, 150  # valid requests interleaved with them
CONCURRENCY = 12
TIMEOUT = 60.0
# below the handler's max_deadline_ms (60 s): the gateway turns the client's deadline into the
# request's deadline_ms, and a 60 s deadline arrives as ~60.05 s (refused as a limit)
GRPC_TIMEOUT = 45.0
SERVER_SIDE_GRPC = {"INTERNAL", "UNKNOWN", "DATA_LOSS", "UNIMPLEMENTED", "UNAVAILABLE",
                    "DEADLINE_EXCEEDED", "CANCELLED"}
FIELD_IN_MESSAGE = re.compile(r"^[A-Za-z_][\w.\[\]]*: ")


# -- sending and checking ------------------------------------------------------------------------

@dataclass
class Outcome:
    transport: str
    mutation: str
    model: str
    status: str
    field: str
    detail: str


def _rest(session, server, model: str, endpoint: str, body) -> tuple[int, bytes]:
    headers = server.headers()
    url = f"{server.inference_url}/{endpoint}/{model}"
    if isinstance(body, Raw):
        r = session.put(url, data=bytes(body), headers=headers, timeout=TIMEOUT)
    else:
        data = json.dumps(body, allow_nan=True).encode()
        r = session.post(url, data=data, timeout=TIMEOUT,
                         headers={**headers, "Content-Type": "application/json"})
    return r.status_code, r.content


def _rest_field(status: int, content: bytes) -> str:
    try:
        body = json.loads(content)
    except ValueError:
        return ""
    if not isinstance(body, dict):
        return ""
    if body.get("field"):
        return str(body["field"])
    # TorchServe's own refusal of an unknown model or version (before our handler)
    if status == 404 and "model" in str(body.get("message", "")).lower():
        return "model"
    return ""


def _grpc_field(e: grpc.RpcError) -> str:
    trailing = dict(e.trailing_metadata() or ())
    if trailing.get("explain-error-field"):
        return trailing["explain-error-field"]
    m = FIELD_IN_MESSAGE.match(e.details() or "")
    return m.group(0)[:-2] if m else ""


def canonical(content: bytes, transport: str) -> pb.ExplainResponse:
    m = pb.ExplainResponse()
    if transport == "rest":
        json_format.Parse(content, m, ignore_unknown_fields=True)
    else:
        m.ParseFromString(content)
    m.ClearField("request_id")
    m.ClearField("timings")
    return m


def same_answer(a: pb.ExplainResponse, b: pb.ExplainResponse) -> tuple[bool, bool]:
    """(equal within float tolerance, bit-identical)."""
    if a.SerializeToString(deterministic=True) == b.SerializeToString(deterministic=True):
        return True, True
    if (a.prediction.index, a.prediction.label) != (b.prediction.index, b.prediction.label):
        return False, False
    if len(a.explanations) != len(b.explanations):
        return False, False
    if not np.isclose(a.prediction.probability, b.prediction.probability, rtol=1e-5, atol=1e-7):
        return False, False
    for x, y in zip(a.explanations, b.explanations):
        if x.target != y.target:
            return False, False
        ax = wire.tensor_from_proto(x.attributions, "a") if x.HasField("attributions") else None
        ay = wire.tensor_from_proto(y.attributions, "a") if y.HasField("attributions") else None
        if (ax is None) != (ay is None) or (ax is not None and not (
                ax.shape == ay.shape and np.allclose(ax, ay, rtol=1e-5, atol=1e-6))):
            return False, False
    return True, False


def _ts_log_deaths(server) -> int:
    text = ""
    for f in (server.run_dir / "logs").glob("*.log"):
        text += f.read_text(errors="replace")
    return len(re.findall(r"(?i)worker (process )?died|Backend worker.*died", text))


@pytest.fixture(scope="module")
def fuzz_report(server, tmp_path_factory):
    marker = str(tmp_path_factory.mktemp("fuzz") / "unpickled")
    mut = Mutator(1234, marker)
    base = bases()
    valid = valid_cases()
    stubs = {}

    def channel():
        tid = threading.get_ident()
        if tid not in stubs:
            ch = grpc.insecure_channel(f"127.0.0.1:{server.ports['gateway']}",
                                       options=[("grpc.max_receive_message_length", 64 << 20)])
            stubs[tid] = (ch, {rpc: ch.unary_unary(f"/explain.v1.Explainer/{rpc}")
                               for rpc in ("Explain", "Predict")})
        return stubs[tid][1]

    sessions: dict[int, requests.Session] = {}

    def session():
        return sessions.setdefault(threading.get_ident(), requests.Session())

    def grpc_call(endpoint: str, data: bytes) -> tuple[str, bytes, grpc.RpcError | None]:
        rpc = channel()["Explain" if endpoint == "explanations" else "Predict"]
        try:
            out = rpc(data, metadata=(("authorization", f"Bearer {server.key()}"),),
                      timeout=GRPC_TIMEOUT)
            return "OK", out, None
        except grpc.RpcError as e:
            return e.code().name, b"", e

    def proto_of(model: str, body) -> pb.ExplainRequest | None:
        if not isinstance(body, dict):
            return None
        try:
            m = json_format.ParseDict(body, pb.ExplainRequest())
        except (json_format.ParseError, ValueError, TypeError, RecursionError, AttributeError):
            return None
        m.model = model
        return m

    # the valid requests, each alone first: the reference answers
    refs: dict[tuple[int, str], pb.ExplainResponse] = {}
    for i, (model, endpoint, body) in enumerate(valid):
        code, content = _rest(session(), server, model, endpoint, body)
        assert code == 200, (model, body, content[:300])
        refs[(i, "rest")] = canonical(content, "rest")
        req = proto_of(model, body)
        status, out, err = grpc_call(endpoint, req.SerializeToString())
        assert status == "OK", (model, err)
        refs[(i, "grpc")] = canonical(out, "grpc")

    jobs = []
    for _ in range(N_REST):
        model, endpoint, body = mut.rng.choice(base)
        name, new = mut.mutate(body)
        if mut.rng.random() < 0.04:   # unknown models and versions in the URL
            model, name = mut.rng.choice(["nope", "tiny/9.9", "%C3%A9", "x" * 200]), "unknown_model"
        jobs.append(("fuzz", "rest", name, model, endpoint, new))
    for _ in range(N_GRPC):
        model, endpoint, body = mut.rng.choice(base)
        req = proto_of(model, body)
        if mut.rng.random() < 0.55:
            name, new = mut.mutate(body)
            m = proto_of(model, new)
            if m is not None:
                jobs.append(("fuzz", "grpc", f"{name}", model, endpoint, m.SerializeToString()))
                continue
        name, data = mut.grpc_bytes(req)
        jobs.append(("fuzz", "grpc", f"bytes {name}", model, endpoint, data))
    n_grpc = sum(1 for j in jobs if j[1] == "grpc")
    while n_grpc < N_GRPC:   # JSON mutations the proto mapping rejects were replaced by bytes ones
        model, endpoint, body = mut.rng.choice(base)
        name, data = mut.grpc_bytes(proto_of(model, body))
        jobs.append(("fuzz", "grpc", f"bytes {name}", model, endpoint, data))
        n_grpc += 1
    for k in range(N_VALID_REST + N_VALID_GRPC):
        i = k % len(valid)
        jobs.append(("valid", "rest" if k < N_VALID_REST else "grpc", "valid", i, "", None))
    mut.rng.shuffle(jobs)

    workers_before = server.worker_pids()
    deaths_before = _ts_log_deaths(server)
    outcomes: list[Outcome] = []
    valid_results = Counter()
    mismatches: list[str] = []
    lock = threading.Lock()

    def run(job) -> None:
        kind, transport, name, model, endpoint, payload = job
        if kind == "valid":
            i = model
            vmodel, vendpoint, vbody = valid[i]
            if transport == "rest":
                code, content = _rest(session(), server, vmodel, vendpoint, vbody)
                ok, status = code == 200, str(code)
            else:
                status, content, _ = grpc_call(vendpoint,
                                               proto_of(vmodel, vbody).SerializeToString())
                ok = status == "OK"
            with lock:
                if not ok:
                    valid_results["failed"] += 1
                    mismatches.append(f"valid #{i} {transport} failed: {status} {content[:200]!r}")
                    return
                same, exact = same_answer(canonical(content, transport), refs[(i, transport)])
                valid_results["same" if same else "different"] += 1
                valid_results["bit_identical"] += exact
                if not same:
                    mismatches.append(f"valid #{i} {transport}: answer differs from alone")
            return
        if transport == "rest":
            try:
                code, content = _rest(session(), server, model, endpoint, payload)
            except requests.RequestException as e:
                code, content = 599, repr(e).encode()
            field = _rest_field(code, content) if 400 <= code < 500 else ""
            o = Outcome("rest", name, model, str(code), field, content[:160].decode("utf-8",
                                                                                    "replace"))
        else:
            status, _, err = grpc_call(endpoint, payload)
            field = _grpc_field(err) if err is not None else ""
            o = Outcome("grpc", name, model, status, field,
                        (err.details() or "")[:160] if err is not None else "")
        with lock:
            outcomes.append(o)

    t0 = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        list(pool.map(run, jobs))
    elapsed = time.monotonic() - t0
    for ch, _ in stubs.values():
        ch.close()
    workers_after = server.worker_pids()
    deaths_after = _ts_log_deaths(server)

    def is_server_side(o: Outcome) -> bool:
        return (o.status.isdigit() and int(o.status) >= 500) or o.status in SERVER_SIDE_GRPC

    refused = [o for o in outcomes if o.status not in ("200", "OK")]
    report = {
        "elapsed_s": round(elapsed, 1),
        "sent": dict(Counter(o.transport for o in outcomes)),
        "accepted": dict(Counter(o.transport for o in outcomes if o.status in ("200", "OK"))),
        "refused_4xx_with_field": sum(1 for o in refused if not is_server_side(o) and o.field),
        "refused_4xx_without_field": sum(1 for o in refused if not is_server_side(o)
                                         and not o.field),
        "server_side_5xx": sum(1 for o in outcomes if is_server_side(o)),
        "valid_sent": N_VALID_REST + N_VALID_GRPC, "valid": dict(valid_results),
        "batch_mates_failed": valid_results["failed"],
        "worker_restarts": sum(len(set(workers_before.get(m, [])) - set(workers_after.get(m, [])))
                               for m in workers_before),
        "worker_deaths_logged": deaths_after - deaths_before,
        "unpickled": os.path.exists(marker),
        "server_side_by_mutation": dict(Counter(f"{o.transport} {o.mutation} -> {o.status}"
                                                for o in outcomes if is_server_side(o))),
        "no_field_by_mutation": dict(Counter(f"{o.transport} {o.mutation} -> {o.status}"
                                             for o in refused if not is_server_side(o)
                                             and not o.field)),
        "examples": defaultdict(list),
        "mismatches": mismatches[:10],
    }
    for o in outcomes:
        if is_server_side(o) or (o in refused and not o.field):
            key = f"{o.transport} {o.mutation} -> {o.status}"
            if len(report["examples"][key]) < 2:
                report["examples"][key].append(f"{o.model}: {o.detail}")
    (server.run_dir / "fuzz_report.json").write_text(json.dumps(report, indent=1, default=str))
    print("\nfuzz report:", json.dumps({k: v for k, v in report.items() if k != "examples"},
                                       indent=1, default=str))
    return report


def test_fuzz_sends_enough_and_stays_bounded(fuzz_report):
    assert fuzz_report["sent"]["rest"] >= N_REST and fuzz_report["sent"]["grpc"] >= N_GRPC
    assert fuzz_report["elapsed_s"] < 300


def test_fuzz_no_server_side_errors(fuzz_report):
    assert fuzz_report["server_side_5xx"] == 0, json.dumps(
        {"by_mutation": fuzz_report["server_side_by_mutation"],
         "examples": fuzz_report["examples"]}, indent=1, default=str)


def test_fuzz_every_refusal_names_the_field(fuzz_report):
    assert fuzz_report["refused_4xx_without_field"] == 0, json.dumps(
        fuzz_report["no_field_by_mutation"], indent=1)


def test_fuzz_no_worker_restarts(fuzz_report):
    assert fuzz_report["worker_restarts"] == 0 and fuzz_report["worker_deaths_logged"] == 0


def test_fuzz_valid_batch_mates_answer_as_alone(fuzz_report):
    v = fuzz_report["valid"]
    assert fuzz_report["batch_mates_failed"] == 0, fuzz_report["mismatches"]
    assert v.get("same", 0) == fuzz_report["valid_sent"], fuzz_report["mismatches"]


def test_fuzz_nothing_unpickled(fuzz_report):
    assert not fuzz_report["unpickled"]


def test_no_token_in_any_log(server, fuzz_report):
    """After the fuzz (and whatever ran before it in the session): no key appears in any file
    under the run directory except key_file.json itself."""
    keys = json.loads(server.key_file.read_text())
    secrets = [e["key"] for e in keys.values() if isinstance(e, dict) and e.get("key")]
    assert len(secrets) == 3
    hits = []
    for f in server.run_dir.rglob("*"):
        if not f.is_file() or f == server.key_file or "models" in f.relative_to(
                server.run_dir).parts:
            continue
        data = f.read_bytes()
        hits += [f"{f.name}: {s[:2]}..." for s in secrets if s.encode() in data]
    assert not hits, hits
