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

import base64
import copy
import io
import json
import os
import pickle
import random
import re
import struct
import threading
import time
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import grpc
import numpy as np
import pytest
import requests
from google.protobuf import json_format
from PIL import Image

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb

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
MODELS = ("tiny", "tab", "digits", "breast_cancer", "recommender")


class Unpickled:
    """Unpickling this creates ``marker``: proof that something loaded request data with pickle."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


# -- valid requests ------------------------------------------------------------------------------

def _tensor(x: np.ndarray) -> dict:
    return json_format.MessageToDict(wire.tensor_to_proto(x))


def _png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def valid_cases() -> list[tuple[str, str, dict]]:
    """(model, endpoint, body): cheap requests on the batched models."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(4):
        x = rng.random((1, 8, 8), dtype=np.float32)
        out.append(("tiny", "explanations", {"inputs": {"tensor": _tensor(x)},
                                             "algorithm": "Saliency"}))
        out.append(("tiny", "explanations", {"inputs": {"tensor": _tensor(x)},
                                             "algorithm": "IntegratedGradients",
                                             "params": {"n_steps": 8}, "target": {"index": i % 3}}))
        out.append(("tiny", "predictions", {"inputs": {"tensor": _tensor(x)}}))
    for age in (25.0, 61.0):
        feats = {"watched:Alien": 1.0, "age": age}
        out.append(("tab", "predictions", {"inputs": {"tabular": {"features": feats}}}))
        out.append(("tab", "explanations", {"inputs": {"tabular": {"features": feats}},
                                            "algorithm": "IntegratedGradients",
                                            "params": {"n_steps": 8}}))
    digit = rng.random((1, 28, 28), dtype=np.float32)
    out.append(("digits", "explanations", {"inputs": {"tensor": _tensor(digit)},
                                           "algorithm": "Saliency"}))
    return out


def bases() -> list[tuple[str, str, dict]]:
    """Valid bodies the mutations start from, every input kind on every model."""
    rng = np.random.default_rng(1)
    out = list(valid_cases())
    img = _png(rng.integers(0, 255, (28, 28)))
    out.append(("digits", "explanations", {
        "inputs": {"image": base64.b64encode(img).decode()}, "algorithm": "GradientShap",
        "params": {"n_samples": 4, "seed": 1}, "target": {"topK": 2},
        "baseline": {"referenceSet": ""}, "outputs": {"topFeatures": 3, "heatmap": True}}))
    out.append(("breast_cancer", "explanations", {
        "inputs": {"tabular": {"features": {"mean radius": 14.0, "mean texture": 19.0}}},
        "algorithm": "DeepLift", "baseline": {"named": "zeros"}, "outputs": {"topFeatures": 5}}))
    out.append(("recommender", "explanations", {
        "inputs": {"tabular": {"features": {"watched:Alien": 1.0}}},
        "algorithm": "IntegratedGradients", "params": {"n_steps": 8},
        "target": {"label": "Aliens"}, "baseline": {"constant": 0.0},
        "outputs": {"topFeatures": 3, "attributions": False}}))
    out.append(("tiny", "explanations", {
        "inputs": {"tensor": _tensor(rng.random((1, 8, 8), dtype=np.float32))},
        "algorithm": "Occlusion", "params": {"sliding_window_shapes": [1, 2, 2]},
        "baseline": {"tensor": _tensor(np.zeros((1, 8, 8), np.float32))}}))
    return out


# -- mutations -----------------------------------------------------------------------------------

def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:4]):
            yield from _paths(v, (*prefix, i))


def _set(obj, path, value):
    if not path:
        return value
    parent = obj
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = value
    return obj


def _get(obj, path):
    for p in path:
        obj = obj[p]
    return obj


def _put(obj: dict, path, value) -> dict:
    """Sets ``path`` in ``obj``, creating (or replacing non-dict) intermediate objects."""
    node = obj
    for p in path[:-1]:
        if not isinstance(node.get(p), dict):
            node[p] = {}
        node = node[p]
    node[path[-1]] = value
    return obj


def _delete(obj, path):
    parent = _get(obj, path[:-1])
    del parent[path[-1]]
    return obj


class Raw(bytes):
    """A body sent as it is (not JSON-encoded)."""


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width x height`` pixels, with a tiny, truncated IDAT."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


class Mutator:
    def __init__(self, seed: int, marker: str) -> None:
        self.rng = random.Random(seed)
        self.marker = marker
        good = _png(np.random.default_rng(5).integers(0, 255, (28, 28)))
        giant = io.BytesIO()
        Image.new("L", (5000, 5000)).save(giant, format="PNG")   # 25 M pixels > the limit
        self.images = {"truncated": good[: len(good) // 2], "giant": giant.getvalue(),
                       "giant_header": _png_header_only(100_000, 100_000),
                       "not_an_image": b"GIF89a" + os.urandom(40), "empty": b""}
        self.junk = [None, "", "x", -1, 0, 1.5, 10**30, -10**30, 1e308, -1e308, float("nan"),
                     float("inf"), True, [], {}, "é漢字🙂\u202e", "A" * 20000, [1] * 500,
                     {"a": {"b": {"c": [None]}}}]

    def mutate(self, body: dict) -> tuple[str, object]:
        """(mutation name, new body: a dict/list for JSON, or Raw bytes)."""
        b = copy.deepcopy(body)
        r = self.rng
        paths = [p for p in _paths(b) if p]
        op = r.choice(["delete", "replace", "replace", "wrap_list", "wrap_obj", "stringify",
                       "number", "number", "deep", "shape", "base64", "image", "non_ascii",
                       "list_for_object", "raw", "pickle"])
        if op == "delete":
            return op, _delete(b, r.choice(paths))
        if op == "replace":
            return op, _set(b, r.choice(paths), r.choice(self.junk))
        if op == "wrap_list":
            p = r.choice(paths)
            return op, _set(b, p, [_get(b, p)])
        if op == "wrap_obj":
            p = r.choice(paths)
            return op, _set(b, p, {"value": _get(b, p)})
        if op == "stringify":
            p = r.choice(paths)
            return op, _set(b, p, json.dumps(_get(b, p)))
        if op == "number":
            value = r.choice([-1, 0, -10**9, 10**12, 2**63, 1e308, float("nan"), float("-inf"),
                              0.5, "12", 1e-320])
            where = r.choice([("params", "n_steps"), ("params", "n_samples"), ("params", "seed"),
                              ("params", "internal_batch_size"), ("params", "stdevs"),
                              ("target", "index"), ("target", "topK"), ("baseline", "constant"),
                              ("outputs", "topFeatures"), ("deadlineMs",)])
            return f"number {'.'.join(where)}", _put(b, where, value)
        if op == "deep":
            n = r.choice([200, 5000, 100_000])
            nest = "[" * n + "]" * n if r.random() < 0.5 else '{"a":' * n + "1" + "}" * n
            where = r.choice(["params", "inputs", "target", "outputs"])
            text = json.dumps({**{k: v for k, v in b.items() if k != where}, where: "@@"})
            return f"deep {n}", Raw(text.replace('"@@"', nest).encode())
        if op == "shape":
            t = (b.get("inputs") or {}).get("tensor")
            if not isinstance(t, dict):
                return "shape", _set(b, ("inputs",), {"tensor": {"shape": [1, 8, 8], "data": ""}})
            choice = r.choice(["shape", "shape", "truncate", "extend", "dtype"])
            if choice == "shape":
                t["shape"] = r.choice([[1, 8, 9], [8, 8], [-1, 8, 8], [0, 8, 8], [10**9, 8, 8],
                                       [1, 2**31, 2**31], [], [1] * 40, ["8", "x"]])
            elif choice == "truncate":
                t["data"] = t.get("data", "")[: r.randrange(0, max(1, len(t.get("data", ""))))]
            elif choice == "extend":
                t["data"] = t.get("data", "") + base64.b64encode(b"\0" * 12).decode()
            else:
                t["dtype"] = r.choice(["DT_FLOAT64", "DT_INT8", 99, "float16", -1])
            return f"shape {choice}", b
        if op == "base64":
            bad = r.choice(["!!!notbase64", "====", "a", "\u00e9\u00e9", "QUJD\nREVG", "%%%"])
            where = r.choice([("inputs", "image"), ("inputs", "tensor", "data")])
            b["inputs"] = {"image": bad} if where[1] == "image" else {
                "tensor": {"shape": [1, 8, 8], "dtype": "DT_FLOAT32", "data": bad}}
            return f"base64 {where[-1]}", b
        if op == "image":
            name = r.choice(list(self.images))
            data = self.images[name]
            if r.random() < 0.5:
                return f"image raw {name}", Raw(data)
            b["inputs"] = {"image": base64.b64encode(data).decode()}
            return f"image json {name}", b
        if op == "non_ascii":
            where = r.choice([("algorithm",), ("target", "label"), ("baseline", "named"),
                              ("inputs", "tabular", "features")])
            value = ({"wätched:Amélie": 1.0, "年齢": 3.0} if where[-1] == "features"
                     else r.choice(["Saliencé", "ü", "🙂" * 50, "\x00\x01", "é"]))
            return f"non_ascii {'.'.join(where)}", _put(b, where, value)
        if op == "list_for_object":
            keys = [k for k in b if isinstance(b[k], dict)] or ["inputs"]
            k = r.choice([*keys, None])
            if k is None:
                return "list_for_object root", [b]
            b[k] = [b.get(k)] if r.random() < 0.5 else list((b.get(k) or {}).items())
            return f"list_for_object {k}", b
        if op == "raw":
            return "raw", Raw(r.choice([b"", b"null", b"123", b'"str"', b"[]", b"{", b"\xff\xfe",
                                        os.urandom(r.randrange(1, 300)), b"\x00" * 1000,
                                        json.dumps(b).encode()[: r.randrange(1, 50)]]))
        payload = pickle.dumps(Unpickled(self.marker))
        if r.random() < 0.4:
            return "pickle raw", Raw(payload)
        if r.random() < 0.5:
            b["inputs"] = {"tensor": {"shape": [1, 8, 8], "dtype": "DT_FLOAT32",
                                      "data": base64.b64encode(payload).decode()}}
            return "pickle tensor", b
        b["inputs"] = {"image": base64.b64encode(payload).decode()}
        return "pickle image", b

    def grpc_bytes(self, request: pb.ExplainRequest) -> tuple[str, bytes]:
        """Byte-level mutations of a serialized request."""
        r = self.rng
        data = request.SerializeToString()
        op = r.choice(["truncate", "flip", "random", "empty", "deep_struct", "unknown_model",
                       "trailing"])
        if op == "truncate":
            return op, data[: r.randrange(0, max(1, len(data)))]
        if op == "flip":
            buf = bytearray(data)
            for _ in range(r.randrange(1, 8)):
                if buf:
                    buf[r.randrange(len(buf))] ^= 1 << r.randrange(8)
            return op, bytes(buf)
        if op == "random":
            return op, os.urandom(r.randrange(1, 400))
        if op == "empty":
            return op, b""
        if op == "deep_struct":
            value: dict = {"x": 1}
            for _ in range(r.choice([50, 150, 400])):
                value = {"a": value}
            m = copy.deepcopy(request)
            try:
                m.params.update({"n_steps": value})
            except (ValueError, RecursionError):
                return op, data
            return op, m.SerializeToString()
        if op == "unknown_model":
            m = copy.deepcopy(request)
            m.model = r.choice(["nope", "../tiny", "tiny/9.9", "é", "x" * 300, " tiny"])
            return op, m.SerializeToString()
        return op, data + os.urandom(r.randrange(1, 20))


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
