"""Generators of ExplainRequests as clients send them: the canonical JSON mapping with every
field valid, mutated or of the wrong type; raw bodies (JSON text with byte mutations, nested
JSON, images, garbage); serialized protobufs.

Each generator takes a ``Choose`` (a few primitive choices). ``HypothesisChoose`` draws them
from hypothesis (shrinkable, used through ``strategy(fn, spec)``); ``RandomChoose`` from a seeded
``random.Random`` (about 100x cheaper per request, used where a test needs thousands of requests
per second; hypothesis still draws the seeds). Usable against real servers too."""

from __future__ import annotations

import base64
import io
import json
import random
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from hypothesis import strategies as st
from PIL import Image

from service.runtime import ModelSpec, default_table
from service.runtime.spec import InputKind

ODD_TEXT = ["é", "", "\x00", "a" * 300, "top_k", "ü\n", "NaN", "-1", "\ud7ff", "\ud800"]
TABLE = default_table()  # the table the handler serves (read only)
HUGE = [2**31, 2**63, 10**30, 1e308, -1e308, 1e39, -(2**31) - 1, 2**64]
DTYPES = ["FLOAT32", "FLOAT64", "FLOAT16", "INT64", "INT32", "UINT8", "DTYPE_UNSPECIFIED"]
_NP = {"FLOAT32": "<f4", "FLOAT64": "<f8", "FLOAT16": "<f2", "INT64": "<i8", "INT32": "<i4",
       "UINT8": "u1", "DTYPE_UNSPECIFIED": "<f4"}


class Choose:
    """Primitive choices; subclasses draw them from hypothesis or from a seeded random."""

    def int(self, low: int, high: int) -> int:
        raise NotImplementedError

    def float(self, low: float, high: float) -> float:
        raise NotImplementedError

    def bytes(self, max_size: int) -> bytes:
        raise NotImplementedError

    def text(self) -> str:
        raise NotImplementedError

    def one(self, options: Sequence[Any]) -> Any:
        return options[self.int(0, len(options) - 1)]

    def bool(self) -> bool:
        return self.int(0, 1) == 1

    def chance(self, n: int) -> bool:
        """True once in ``n``."""
        return self.int(0, n - 1) == 0


class HypothesisChoose(Choose):
    def __init__(self, draw: Callable) -> None:
        self.draw = draw

    def int(self, low: int, high: int) -> int:
        return self.draw(st.integers(low, high))

    def float(self, low: float, high: float) -> float:
        return self.draw(st.floats(low, high))

    def bytes(self, max_size: int) -> bytes:
        return self.draw(st.binary(max_size=max_size))

    def text(self) -> str:
        return self.draw(st.text(max_size=8) | st.sampled_from(ODD_TEXT))


class RandomChoose(Choose):
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def int(self, low: int, high: int) -> int:
        return self.rng.randint(low, high)

    def float(self, low: float, high: float) -> float:
        return self.rng.uniform(low, high)

    def bytes(self, max_size: int) -> bytes:
        return self.rng.randbytes(self.rng.randint(0, max_size))

    def text(self) -> str:
        if self.chance(3):
            return self.one(ODD_TEXT)
        return "".join(chr(self.rng.choice([self.rng.randint(32, 126),
                                            self.rng.randint(0x80, 0x2FFF)]))
                       for _ in range(self.rng.randint(0, 8)))


def strategy(fn: Callable[..., Any], *args: Any) -> st.SearchStrategy[Any]:
    """``fn(choose, *args)`` as a hypothesis strategy."""
    return st.composite(lambda draw: fn(HypothesisChoose(draw), *args))()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


_PNG: dict[tuple, bytes] = {}


def png(width: int, height: int, mode: str = "L", seed: int = 0) -> bytes:
    key = (width, height, mode, seed % 8)
    if key not in _PNG:
        rng = np.random.default_rng(seed % 8)
        channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
        a = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(a[..., 0] if channels == 1 else a, mode).save(buf, format="PNG")
        _PNG[key] = buf.getvalue()
    return _PNG[key]


# -- values -------------------------------------------------------------------------------------

def number(c: Choose) -> Any:
    k = c.int(0, 5)
    if k == 0:
        return c.int(-3, 12)
    if k == 1:
        return c.one(HUGE)
    if k == 2:
        return c.float(-4, 4)
    if k == 3:
        return c.one([0, 1, -1, 0.5, 1e-300, 3.4e38])
    return c.int(0, 5)


def junk(c: Choose, depth: int = 0) -> Any:
    k = c.int(0, 7 if depth < 2 else 4)
    if k == 0:
        return None
    if k == 1:
        return c.bool()
    if k in (2, 3):
        return number(c)
    if k == 4:
        return c.text()
    if k == 5:
        return [junk(c, depth + 1) for _ in range(c.int(0, 3))]
    return {c.text(): junk(c, depth + 1) for _ in range(c.int(0, 3))}


def tensor(c: Choose, shape: tuple[int, ...], valid: bool | None = None,
           rows: int | None = None) -> Any:
    """A Tensor message as JSON: the model's shape (or (rows, *shape)) with finite values, or a
    wrong shape, dtype, data length or out-of-range values."""
    ok = c.bool() if valid is None else valid
    dims = [rows, *shape] if rows else (list(shape) if c.bool() else [1, *shape])
    dtype = "FLOAT32"
    if ok:
        n = int(np.prod(dims))
        values = np.random.default_rng(c.int(0, 2**16)).normal(size=n).astype("<f4")
        return {"shape": dims, "dtype": dtype, "data": b64(values.tobytes())}
    how = c.one(["shape", "dtype", "length", "values", "junk", "huge_shape", "big"])
    if how == "shape":
        dims = [c.int(-2, 9) for _ in range(c.int(0, 5))]
    elif how == "dtype":
        dtype = c.one(DTYPES)
    elif how == "huge_shape":
        dims = [c.one([2**31, 2**40, 2**62]), c.int(0, 1)]
    elif how == "big":
        dims = [c.int(100, 3000), *shape]
    n = (int(np.prod([max(d, 0) for d in dims])) if dims and max(dims) < 2**20
         and int(np.prod([max(d, 0) for d in dims])) < 2**22 else 0)
    a = np.zeros(n, dtype=_NP[dtype])
    if how == "values" and n:
        a = a.astype("<f8")
        a[c.int(0, n - 1)] = c.one([np.nan, np.inf, 1e308, -1e39])
        dtype = "FLOAT64"
    data = a.tobytes()
    if how == "length":
        data = data[: c.int(0, max(0, len(data) - 1))] + b"\x00" * c.int(0, 3)
    out: dict[str, Any] = {"shape": dims, "dtype": dtype, "data": b64(data)}
    if how == "junk":
        out[c.one(["shape", "dtype", "data"])] = junk(c)
    return out


def inputs(c: Choose, spec: ModelSpec, valid: bool | None = None) -> Any:
    ok = c.bool() if valid is None else valid
    shape = tuple(spec.input_shape)
    if ok:
        if spec.input_kind is InputKind.TABULAR:
            names = list(dict.fromkeys(c.one(spec.feature_names) for _ in range(c.int(0, 6))))
            return {"tabular": {"features": {n: c.float(-3, 3) for n in names}}}
        if spec.input_kind is InputKind.IMAGE and spec.image and c.bool():
            w, h = spec.image.size
            return {"image": b64(png(w, h, spec.image.mode, c.int(0, 99)))}
        return {"tensor": tensor(c, shape, valid=True)}
    kind = c.one(["tensor", "tabular", "image", "junk", "list", "two"])
    if kind == "tensor":
        return {"tensor": tensor(c, shape, valid=False)}
    if kind == "tabular":
        names = list(spec.feature_names) or ["x"]
        feats = {(c.one(names) if c.bool() else c.text()):
                 (number(c) if c.bool() else c.one([1e308, -1e308, 1e39]))
                 for _ in range(c.int(0, 4))}
        return {"tabular": {"features": feats}}
    if kind == "image":
        which = c.one(["garbage", "big", "small", "rgba", "bad64", "huge"])
        if which == "garbage":
            return {"image": b64(c.bytes(64))}
        if which == "bad64":
            return {"image": c.text()}
        if which == "huge":  # a PNG header claiming 100000 x 100000 pixels
            return {"image": b64(_lying_png(100_000, 100_000))}
        size = {"big": (300, 200), "small": (3, 5), "rgba": (8, 8)}[which]
        return {"image": b64(png(*size, "RGBA" if which == "rgba" else "L"))}
    if kind == "list":
        return [inputs(c, spec, valid=True)]
    if kind == "two":
        return {"tensor": tensor(c, shape, valid=True), "image": b64(b"x")}
    return junk(c)


def _lying_png(width: int, height: int) -> bytes:
    import struct
    import zlib

    head = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + head
    return (b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(head)) + chunk
            + struct.pack(">I", zlib.crc32(chunk)))


def param_value(c: Choose, p: Any) -> Any:
    """Three times in four a value of the parameter's kind (when it has a simple one), else
    junk or an out-of-range number."""
    if c.int(0, 3) > 0 and (p.choices or p.type in (bool, int, float)):
        return _sane(c, p, span=5, top=2.0)
    return junk(c) if c.bool() else c.one(HUGE + [-1, 0, 1.5, "3", [1]])


def params(c: Choose, algorithm: str | None) -> Any:
    entry = TABLE.get(algorithm or "")
    if entry is None or c.chance(10):
        return junk(c)
    out = {p.name: param_value(c, p) for p in entry.all_params() if c.bool()}
    if c.chance(10):
        out[c.text()] = junk(c)
    return out


def target(c: Choose, spec: ModelSpec) -> Any:
    n = max(1, spec.n_classes)
    k = c.int(0, 6)
    if k == 0:
        return {"predicted": True}
    if k == 1:
        return {"index": c.int(-2, n + 1)}
    if k == 2:
        return {"label": c.one(spec.class_names or ("x",)) if c.bool() else c.text()}
    if k == 3:
        return {"topK": c.int(-1, n + 1) if c.bool() else c.one(HUGE)}
    if k == 4:
        return {"top_k": c.int(1, 2)}
    if k == 5:
        return {"index": junk(c)}
    return junk(c)


def baseline(c: Choose, spec: ModelSpec) -> Any:
    kind = c.one(["named", "zeros", "constant", "blur", "datasetMean", "uniform",
                  "referenceSet", "tensor", "junk"])
    if kind == "named":
        return {"named": c.one(list(spec.baselines)) if c.bool() else c.text()}
    if kind in ("zeros", "datasetMean"):
        return {kind: True}
    if kind == "constant":
        return {"constant": number(c)}
    if kind == "blur":
        return {"blur": {"sigma": c.one([c.float(0, 3), number(c), 1e7, 65])}}
    if kind == "uniform":
        return {"uniform": {"low": number(c), "high": number(c), "seed": c.int(0, 2**64 - 1)}}
    if kind == "referenceSet":
        return {"referenceSet": c.one(["", "reference", "mean"]) if c.bool() else c.text()}
    if kind == "tensor":
        valid = c.bool()
        return {"tensor": tensor(c, tuple(spec.input_shape), valid=valid,
                                 rows=c.int(1, 12) if valid else None)}
    return junk(c)


def near_valid_request(c: Choose, spec: ModelSpec) -> dict:
    """A valid request with any allowed algorithm and its parameters (mostly valid values),
    and at most one other part fuzzed: most of these are answered, through every algorithm."""
    algorithms = list(spec.algorithms)
    body = valid_request(c, spec)
    body["algorithm"] = c.one(algorithms)
    entry = TABLE[body["algorithm"]]
    body["params"] = {p.name: param_value(c, p) if c.chance(8) else _sane(c, p)
                      for p in entry.all_params() if c.bool()}
    if entry.needs_layer and (c.bool() or entry.family.value == "neuron"):
        body["layer"] = layer_selector(c, spec)
    part = c.one(["target", "baseline", "outputs", "inputs", "noiseTunnel", "metrics", None,
                  None])
    if part == "target":
        body["target"] = target(c, spec)
    elif part == "baseline":
        body["baseline"] = baseline(c, spec)
    elif part == "outputs":
        body["outputs"] = {"topFeatures": c.int(0, 8), "heatmap": c.bool(),
                           "attributions": c.bool()}
    elif part == "inputs":
        body["inputs"] = inputs(c, spec)
    elif part == "noiseTunnel" and body["algorithm"] != "NoiseTunnel":
        body["noiseTunnel"] = noise_tunnel(c, valid=not c.chance(4))
    elif part == "metrics":
        body["outputs"] = {"metrics": c.one([["infidelity"], ["sensitivity"],
                                             ["infidelity", "sensitivity"]]),
                           "metricSamples": c.int(0, 2)}
    return body


NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


def noise_tunnel(c: Choose, valid: bool = True) -> Any:
    """``noiseTunnel``: small and valid, or with fields out of range, of the wrong type, or
    junk."""
    if valid:
        return {k: v for k, v in (("type", c.one(NT_TYPES)), ("samples", c.int(1, 3)),
                                  ("stdevs", c.float(0, 0.5)),
                                  ("samplesBatchSize", c.int(0, 3))) if c.bool()}
    if c.chance(4):
        return junk(c)
    return {k: v for k, v in (("type", c.one([c.text(), *NT_TYPES, 3])),
                              ("samples", c.one([c.int(-1, 3), *HUGE])),
                              ("stdevs", c.one([c.float(-2, 2), number(c)])),
                              ("samplesBatchSize", c.one([c.int(-1, 3), *HUGE]))) if c.bool()}
def layer_selector(c: Choose, spec: ModelSpec) -> dict:
    """A LayerSelector as JSON: mostly one of the spec's layers, mostly a neuron whose indices
    are 0 (valid when its length matches the layer's dims), sometimes fuzzed."""
    out: dict[str, Any] = {}
    names = list(spec.layers)
    if c.bool():
        out["name"] = c.one(names) if names and not c.chance(8) else c.text()
    if c.chance(6):
        out["attributeToLayerInput"] = c.bool()
    if not c.chance(8):
        out["neuron"] = ([0] * c.int(1, 3) if not c.chance(6)
                         else [c.int(-2, 70) for _ in range(c.int(0, 4))])
    return out


def _sane(c: Choose, p: Any, span: int = 3, top: float = 1.0) -> Any:
    """A value the parameter accepts, kept small (cheap to run): ints up to ``span`` above the
    minimum, floats in [0, top]."""
    if p.choices:
        return c.one(p.choices)
    if p.type is bool:
        return c.bool()
    if p.type is int:
        low = int(p.minimum) if p.minimum is not None else 0
        return c.int(low, low + span)
    if p.type is float:
        return c.float(0, top)
    return p.default


def explain_request(c: Choose, spec: ModelSpec) -> dict:
    """An ExplainRequest as JSON: a third near-valid (see ``near_valid_request``), the others
    with each part valid or mutated."""
    if c.chance(3):
        return near_valid_request(c, spec)
    algorithms = list(spec.algorithms)
    body: dict[str, Any] = {}
    if not c.chance(10):
        body["inputs"] = inputs(c, spec)
    algorithm = None
    if not c.chance(6):
        algorithm = c.one(algorithms) if not c.chance(8) else c.text()
        body["algorithm"] = algorithm if not c.chance(16) else junk(c)
    if c.bool():
        body["params"] = params(c, algorithm)
    if c.bool():
        body["target"] = target(c, spec)
    if c.bool():
        body["baseline"] = baseline(c, spec)
    if c.chance(4):
        body["outputs"] = (junk(c) if c.chance(4) else {
            k: v for k, v in (("attributions", c.bool()),
                              ("topFeatures", c.int(-1, 8) if c.bool() else c.one(HUGE)),
                              ("heatmap", c.bool()), ("reasons", c.bool())) if c.bool()})
    if c.chance(8):
        body["noiseTunnel"] = noise_tunnel(c, valid=c.bool())
    if c.chance(8):
        body.setdefault("outputs", {})
        if isinstance(body["outputs"], dict):
            body["outputs"]["metrics"] = (junk(c) if c.chance(4) else
                                          [c.one(["infidelity", "sensitivity", c.text()])])
            body["outputs"]["metricSamples"] = c.one([c.int(-1, 2), *HUGE])
    if c.chance(6):
        body["deadlineMs"] = c.int(-1, 5) if c.bool() else c.one([10**6, 2**32])
    if c.chance(8):
        body["limits"] = {"maxBatchRows": c.int(-1, 5) if c.bool() else c.one(HUGE)}
    if c.chance(10):
        body[c.text()] = junk(c)
    if c.chance(20):
        body["requestId"] = c.text()
    if c.chance(20):
        body["model"] = c.text()
    return body


def valid_request(c: Choose, spec: ModelSpec) -> dict:
    """A request the model must answer: valid input, an allowed deterministic or seeded
    algorithm, a valid target."""
    choices = [a for a in ("IntegratedGradients", "Saliency", "DeepLift", "GradientShap",
                           "InputXGradient") if a in spec.algorithms]
    algorithm = c.one(choices)
    body: dict[str, Any] = {"inputs": inputs(c, spec, valid=True), "algorithm": algorithm}
    if algorithm == "IntegratedGradients":
        body["params"] = {"n_steps": c.int(2, 8)}
    if algorithm == "GradientShap":
        body["params"] = {"n_samples": c.int(1, 4), "seed": c.int(0, 9)}
    n = spec.n_classes
    body["target"] = c.one([{"predicted": True}, {"index": n - 1}, {"topK": min(2, n)}])
    return body


def mutate(c: Choose, data: bytes, max_ops: int = 4) -> bytes:
    """Byte mutations: flip, insert, delete, truncate."""
    b = bytearray(data)
    for _ in range(c.int(1, max_ops)):
        if not b:
            break
        i, kind, byte = c.int(0, len(b) - 1), c.int(0, 3), c.int(1, 255)
        if kind == 0:
            b[i] ^= byte
        elif kind == 1:
            b.insert(i, byte)
        elif kind == 2:
            del b[i]
        else:
            del b[i:]
    return bytes(b)


def raw_body(c: Choose, spec: ModelSpec) -> bytes:
    """What arrives as a REST body: JSON text (mutated or not), nested JSON, an image, bytes."""
    kind = c.one(["json", "mutated", "mutated", "nested", "binary", "image", "text"])
    if kind in ("json", "mutated"):
        text = json.dumps(explain_request(c, spec)).encode()
        return mutate(c, text) if kind == "mutated" else text
    if kind == "nested":
        depth = c.one([10, 40, 200, 5000])
        opener, closer = c.one([("[", "]"), ('{"a":', "}")])
        where = c.one(['{"params": %s}', '{"inputs": %s}', "%s"])
        return (where % (opener * depth + "1" + closer * depth)).encode()
    if kind == "image":
        size = spec.image.size if spec.image else (8, 8)
        return png(*size)
    if kind == "text":
        return c.text().encode("utf-8", "surrogatepass")
    return c.bytes(64)


def serialized(body: Any) -> bytes | None:
    """The body as a serialized ExplainRequest (the gateway's path), when it parses."""
    from google.protobuf import json_format

    from service._proto.explain.v1 import explain_pb2 as pb
    try:
        return json_format.ParseDict(body, pb.ExplainRequest()).SerializeToString()
    except Exception:
        return None
