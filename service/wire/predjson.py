"""The JSON answer of a prediction, or of a tabular or image explanation, written as text.

``prediction_json(r)`` (a Response without explanations) and ``explanation_json(r)`` (one
with them, not a text model's, not streamed) return what ``convert.response_to_json``'s general
path prints for the same Response (``response_to_proto``, ``jsonmap.message_to_dict``, the
answer's omissions, ``json.dumps(ensure_ascii=False)``), character for character, several times
faster: no protobuf message, no dict, and floats spelled once. It follows protobuf-JSON's printing rules
for these messages (fields at their default printed after the set ones, -0.0 counted as set,
int64 as strings, bytes as base64, non-finite doubles as the strings "NaN" / "Infinity"). It
returns None for what it does not write (no prediction, an output that is not float32, a
string protobuf would refuse, an attribution that is not float32, more than one metric: a
protobuf map's order is its own): the general path answers those.
tests/unit/test_wire_predjson.py checks the equality on random predictions and explanations.
"""

from __future__ import annotations

import base64
import json.encoder
import math
from collections.abc import Sequence

import numpy as np

from service.runtime.request import (
    ClassScore,
    Feature,
    Prediction,
    Response,
    TargetExplanation,
    Timings,
)

from .jsonparse import SURROGATE

_str = json.encoder.encode_basestring  # json.dumps(ensure_ascii=False)'s quoting of strings
_num = float.__repr__  # json.dumps' spelling of a finite float (TypeError if not a float)
_int = int.__repr__
_F4 = np.dtype("<f4")  # what tensor_to_proto sends a float32 array as


def _checked(out: str) -> str | None:
    """``out``, or None when it holds a string protobuf would refuse (the general path then
    answers, raising as it does)."""
    return None if not out.isascii() and SURROGATE.search(out) else out


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
    return _checked(out)


# -- explanations (a tabular or image model's answer)

def _strings(values: Sequence[str]) -> str:
    return "[" + ", ".join([_str(v) for v in values]) + "]"


def _feature(f: Feature) -> str:
    name, v, a = f.name, float(f.value), float(f.attribution)
    if name and v != 0.0 and a != 0.0 and v - v == 0.0 and a - a == 0.0:  # the common case
        return f'{{"name": {_str(name)}, "value": {_num(v)}, "attribution": {_num(a)}}}'
    return _object((("name", _str(name), name != ""), ("value", _double(v), _set(v)),
                    ("attribution", _double(a), _set(a))))


def _f4(a: np.ndarray | None) -> bool:
    return isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.dtype.itemsize == 4


def _explanation(e: TargetExplanation) -> str:
    """Fields in number order, each at its place among the set ones or the defaults; the
    message and optional fields (attributions, approximationError) only when present, and
    reasonsNote, metrics and layer only when not empty (the answer omits them)."""
    target, label, note, to, layer = int(e.target), e.label, e.reasons_note, e.attributed_to, e.layer
    io, bo = float(e.instance_output), float(e.baseline_output)
    png = e.heatmap_png or b""
    fields: list[tuple[str, str, bool]] = [("target", _int(target), target != 0),
                                           ("label", _str(label), label != "")]
    if e.attributions is not None:
        fields.append(("attributions", _tensor(e.attributions), True))
    fields += [("instanceOutput", _double(io), _set(io)),
               ("baselineOutput", _double(bo), _set(bo))]
    if e.approximation_error is not None:
        fields.append(("approximationError", _double(float(e.approximation_error)), True))
    fields += [("topFeatures", "[" + ", ".join([_feature(f) for f in e.top_features]) + "]",
                bool(e.top_features)),
               ("heatmapPng", '"' + base64.b64encode(png).decode() + '"', png != b""),
               ("reasons", _strings(e.reasons), bool(e.reasons))]
    if note:
        fields.append(("reasonsNote", _str(note), True))
    fields.append(("attributedTo", _str(to), to != ""))
    if layer:
        fields.append(("layer", _str(layer), True))
    if e.metrics:
        [(name, value)] = e.metrics.items()
        fields.append(("metrics", f"{{{_str(name)}: {_double(float(value))}}}", True))
    return _object(fields)


def _explain_timings(t: Timings) -> str:
    doubles = [(k, float(v)) for k, v in (
        ("preprocessMs", t.preprocess_ms), ("predictMs", t.predict_ms),
        ("explainMs", t.explain_ms), ("postprocessMs", t.postprocess_ms),
        ("totalMs", t.total_ms))]
    n, hit = int(t.fused_group_size), bool(t.baseline_cache_hit)
    if n != 0 and all(v != 0.0 and v - v == 0.0 for _, v in doubles):  # the common case
        # (baselineCacheHit is last whether it is set or at its default)
        return ("{" + ", ".join([f'"{k}": {_num(v)}' for k, v in doubles])
                + f', "fusedGroupSize": {_int(n)}, "baselineCacheHit": '
                + ("true}" if hit else "false}"))
    return _object([(k, _double(v), _set(v)) for k, v in doubles]
                   + [("fusedGroupSize", _int(n), n != 0),
                      ("baselineCacheHit", "true" if hit else "false", hit)])


def explanation_json(r: Response) -> str | None:
    """An explanation answer's JSON, or None when the general path must write it."""
    p = r.prediction
    if (not r.explanations or r.text is not None or r.partial or r.part_index or p is None
            or not _f4(p.output) or any(len(e.metrics) > 1 or (
                e.attributions is not None and not _f4(e.attributions))
                for e in r.explanations)):
        return None
    model, version, rid, algorithm = r.model, r.model_version, r.request_id, r.algorithm
    try:
        explanations = "[" + ", ".join([_explanation(e) for e in r.explanations]) + "]"
        out = _object((("model", _str(model), model != ""),
                       ("modelVersion", _str(version), version != ""),
                       ("requestId", _str(rid), rid != ""),
                       ("algorithm", _str(algorithm), algorithm != ""),
                       ("prediction", _prediction(p), True),
                       ("explanations", explanations, True),
                       ("timings", _explain_timings(r.timings), True)))
    except (TypeError, ValueError):  # a value of another type: protobuf's to judge
        return None
    return _checked(out)
