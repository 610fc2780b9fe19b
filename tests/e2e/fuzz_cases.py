"""The end-to-end fuzz's requests (tests/e2e/test_fuzz_e2e.py): valid bodies on the session's
models, and the mutations applied to them, for JSON bodies (REST, and gRPC through the
protobuf-JSON mapping) and for serialized protobuf bytes (gRPC)."""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import pickle
import random
import struct
import zlib

import numpy as np
from google.protobuf import json_format
from PIL import Image

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb


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


