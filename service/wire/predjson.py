"""The JSON answer of a prediction (a Response without explanations), written as text.

``prediction_json(r)`` returns what ``convert.response_to_json``'s general path prints for the
same Response (``response_to_proto``, ``jsonmap.message_to_dict``, the prediction answer's
omissions, ``json.dumps(ensure_ascii=False)``), character for character, about 5x faster: no
protobuf message, no dict, and floats spelled once. It follows protobuf-JSON's printing rules
for these messages (fields at their default printed after the set ones, -0.0 counted as set,
int64 as strings, bytes as base64, non-finite doubles as the strings "NaN" / "Infinity"). It
returns None for what it does not write (no prediction, an output that is not float32, a
string protobuf would refuse): the general path answers those.
tests/unit/test_wire_predjson.py checks the equality on random predictions.
"""

from __future__ import annotations

import base64
import json.encoder
import math
import re
from collections.abc import Sequence

import numpy as np

from service.runtime.request import ClassScore, Prediction, Response, Timings

_str = json.encoder.encode_basestring  # json.dumps(ensure_ascii=False)'s quoting of strings
_num = float.__repr__  # json.dumps' spelling of a finite float (TypeError if not a float)
_int = int.__repr__
_SURROGATE = re.compile("[\ud800-\udfff]")  # protobuf refuses them in string fields
_F4 = np.dtype("<f4")  # what tensor_to_proto sends a float32 array as


def _double(v: float) -> str:
    """A double field's value: json.dumps' spelling of a finite float, protobuf-JSON's strings
    for the others."""
    v = float(v)
    if math.isfinite(v):
        return repr(v)
    return '"NaN"' if v != v else ('"Infinity"' if v > 0 else '"-Infinity"')


def _set(v: float) -> bool:
    """Whether a double field without presence is printed among the set fields."""
    return v != 0.0 or math.copysign(1.0, v) < 0.0


def _object(fields: Sequence[tuple[str, str, bool]]) -> str:
    """``{"key": value, ...}`` from (key, JSON value, is set) in field-number order: the set
    fields first, then those at their default (declaration order: the same for these
    messages)."""
    first = [f'"{k}": {v}' for k, v, s in fields if s]
    if len(first) < len(fields):
        first += [f'"{k}": {v}' for k, v, s in fields if not s]
    return "{" + ", ".join(first) + "}"


def _score(c: ClassScore) -> str:
    index, label, p, z = c.index, c.label, c.probability, c.logit
    if p != 0.0 and z != 0.0 and p - p == 0.0 and z - z == 0.0 and label:  # finite, set
        rest = f'"label": {_str(label)}, "probability": {_num(p)}, "logit": {_num(z)}'
        return f'{{"index": {_int(index)}, {rest}}}' if index else f'{{{rest}, "index": 0}}'
    index, p, z = int(index), float(p), float(z)
    return _object((("index", str(index), index != 0), ("label", _str(label), label != ""),
                    ("probability", _double(p), _set(p)), ("logit", _double(z), _set(z))))


def _tensor(a: np.ndarray) -> str:
    data = base64.b64encode(a.astype(_F4, copy=False).tobytes()).decode()  # C order
    if a.ndim == 1 and data:  # the common case
        return f'{{"shape": ["{a.shape[0]}"], "dtype": "FLOAT32", "data": "{data}"}}'
    shape = "[" + ", ".join(f'"{s}"' for s in a.shape) + "]"
    return _object((("shape", shape, a.ndim > 0), ("dtype", '"FLOAT32"', True),
                    ("data", f'"{data}"', data != "")))


def _prediction(p: Prediction) -> str:
    top = "[" + ", ".join([_score(c) for c in p.top]) + "]"
    index, label, prob = p.index, p.label, p.probability
    if prob != 0.0 and prob - prob == 0.0 and label and p.top:  # the common case
        rest = (f'"label": {_str(label)}, "probability": {_num(prob)}, "top": {top}, '
                f'"output": {_tensor(p.output)}')
        return f'{{"index": {_int(index)}, {rest}}}' if index else f'{{{rest}, "index": 0}}'
    index, prob = int(index), float(prob)
    return _object((("index", str(index), index != 0), ("label", _str(label), label != ""),
                    ("probability", _double(prob), _set(prob)),
                    ("top", top, bool(p.top)), ("output", _tensor(p.output), True)))


def _timings(t: Timings) -> str:
    # explainMs, fusedGroupSize and baselineCacheHit are not part of a prediction answer
    a, b, c, d = t.preprocess_ms, t.predict_ms, t.postprocess_ms, t.total_ms
    if a != 0.0 and b != 0.0 and c != 0.0 and d != 0.0 and math.isfinite(a + b + c + d):
        return (f'{{"preprocessMs": {_num(a)}, "predictMs": {_num(b)}, '
                f'"postprocessMs": {_num(c)}, "totalMs": {_num(d)}}}')
    return _object([(k, _double(v), _set(float(v))) for k, v in (
        ("preprocessMs", a), ("predictMs", b), ("postprocessMs", c), ("totalMs", d))])


def prediction_json(r: Response) -> str | None:
    """The prediction answer's JSON, or None when the general path must write it."""
    p = r.prediction
    if (r.explanations or r.algorithm or r.text is not None or p is None
            or not isinstance(p.output, np.ndarray) or p.output.dtype.kind != "f"
            or p.output.dtype.itemsize != 4):
        return None
    model, version, rid = r.model, r.model_version, r.request_id
    try:
        if model and version and rid:  # the common case
            out = (f'{{"model": {_str(model)}, "modelVersion": {_str(version)}, "requestId": '
                   f'{_str(rid)}, "prediction": {_prediction(p)}, "timings": '
                   f'{_timings(r.timings)}}}')
        else:
            out = _object((("model", _str(model), model != ""),
                           ("modelVersion", _str(version), version != ""),
                           ("requestId", _str(rid), rid != ""),
                           ("prediction", _prediction(p), True),
                           ("timings", _timings(r.timings), True)))
    except TypeError:  # a value of another type (a numpy scalar, ...): protobuf's to judge
        return None
    return None if not out.isascii() and _SURROGATE.search(out) else out
