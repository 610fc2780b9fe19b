"""The plainest REST bodies read straight into a runtime ``Request``, without the
ExplainRequest message in between.

``plain_request(body, explain, limits)`` answers the ``Request`` that
``convert.request_from_dict`` would, for a parsed JSON body (a dict) with nothing but
``inputs`` (a ``tensor`` of shape/dtype/data, ``tabular.features`` or a base64 ``image``),
``model``, ``modelVersion``, ``algorithm``, ``requestId``, ``deadlineMs``, ``params`` of flat
JSON scalars, ``target`` and ``outputs`` (field names in JSON or proto spelling), every value
of its field's own JSON type, and the body within ``max_body_bytes`` and ``max_json_depth``
as ``convert`` counts them. For any other body, and for any body that would be refused, it
answers None and the caller takes the general path, which gives the answer or the error:
this reader never refuses anything itself. Each value goes through the converter
``jsonparse`` uses for its field (the same acceptance), a tensor through
``tensors.tensor_from_fields`` (the same checks), and ``params`` numbers become what
``convert.struct_to_dict`` makes of a Struct's doubles (an integer-valued one an int).

What it spares per request is the message: filling it and reading every field back from
Python (bench/README.md, "Plain bodies"). Unlike the general path, the features and params
keep the client's order (a protobuf map's order is its own), which only decides which of
several bad features an error names first. tests/unit/test_wire_plainbody.py checks the
equality.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor

from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.errors import ExplainError
from service.runtime.limits import Limits
from service.runtime.request import (
    ImagePayload,
    OutputOptions,
    Payload,
    Request,
    TabularPayload,
    TargetKind,
    TargetSpec,
    TensorPayload,
)

from .jsonparse import Unsure, fields_of
from .tensors import tensor_from_fields


def _fields(d: Descriptor) -> dict[str, Any]:
    table = fields_of(d)
    assert table is not None  # None only for google.protobuf.Struct
    return table


_REQUEST = _fields(pb.ExplainRequest.DESCRIPTOR)
_INPUT = _fields(pb.ExplainRequest.DESCRIPTOR.fields_by_name["inputs"].message_type)
_TENSOR = _fields(pb.Tensor.DESCRIPTOR)
_TABULAR = _fields(pb.TabularInput.DESCRIPTOR)
_TARGET = _fields(pb.Target.DESCRIPTOR)
_OUTPUTS = _fields(pb.OutputOptions.DESCRIPTOR)
_KINDS = {"predicted": TargetKind.PREDICTED, "index": TargetKind.INDEX,
          "label": TargetKind.LABEL, "top_k": TargetKind.TOP_K}
_NO_TARGET, _NO_OUTPUTS = TargetSpec(), OutputOptions()
# the Tensor message's fields (its JSON names are its proto names)
_DIM, _DTYPE, _DATA = (_TENSOR[k].convert for k in ("shape", "dtype", "data"))
assert sorted(_TENSOR) == ["data", "dtype", "shape"]
_text = _REQUEST["model"].convert   # a string as a proto string field takes it
_SCALARS = frozenset({"model", "model_version", "algorithm", "request_id", "deadline_ms"})
_DEPTH = 4      # the deepest container of the plain form: body > inputs > tensor > shape
_EXACT = 2**53  # numbers a double holds exactly


def plain_request(body: Any, explain: bool, limits: Limits) -> Request | None:
    """The body's Request, or None: take the general path (see the module's docstring)."""
    if type(body) is not dict or limits.max_json_depth < _DEPTH:
        return None
    try:
        return _request(body, explain, limits)
    except (Unsure, ExplainError, ValueError, TypeError, OverflowError):
        return None


def _request(body: dict, explain: bool, limits: Limits) -> Request:
    # size: convert._check_json's count (2 a container, a key's length + 3, a string's
    # length + 3, 5 any other value); it only grows, so the final count decides
    size = 2
    scalars: dict[str, Any] = {}
    inputs: Payload | None = None
    params: dict[str, Any] = {}
    target, outputs = _NO_TARGET, _NO_OUTPUTS
    seen: set[str] = set()
    for key, value in body.items():
        f = _REQUEST.get(key) if type(key) is str else None
        if f is None or value is None or f.name in seen:
            raise Unsure
        seen.add(f.name)
        size += len(key) + 3
        if f.name in _SCALARS:
            scalars[f.name] = f.convert(value)
            size += _size(value)
        elif f.name == "inputs":
            inputs, n = _inputs(value, limits)
            size += n
        elif f.name == "params":
            params, n = _params(value)
            size += n
        elif f.name == "target":
            target, n = _target(value)
            size += n
        elif f.name == "outputs":
            outputs, n = _outputs(value)
            size += n
        else:
            raise Unsure
    if size > limits.max_body_bytes:
        raise Unsure
    return Request(inputs=inputs, explain=explain, algorithm=scalars.get("algorithm") or None,
                   params=params, target=target, outputs=outputs,
                   deadline_ms=scalars.get("deadline_ms") or None,
                   request_id=scalars.get("request_id", ""), model=scalars.get("model", ""))


def _size(v: Any) -> int:
    """convert._check_json's count for a scalar value: a string's length + 3, else 5."""
    return len(v) + 3 if type(v) is str else 5


def _flat(value: Any, table: dict[str, Any]) -> tuple[dict[str, Any], int]:
    """An object of scalar (and repeated scalar) fields of ``table``'s message, by proto
    name, each through its field's converter."""
    if type(value) is not dict:
        raise Unsure
    size = 2
    out: dict[str, Any] = {}
    for key, item in value.items():
        f = table.get(key) if type(key) is str else None
        if f is None or item is None or f.name in out or f.message is not None:
            raise Unsure
        size += len(key) + 3
        if f.kind == "list":
            if type(item) is not list:
                raise Unsure
            out[f.name] = tuple(f.convert(x) for x in item)
            size += 2 + sum(_size(x) for x in item)
        elif f.kind == "one":
            out[f.name] = f.convert(item)
            size += _size(item)
        else:
            raise Unsure
    return out, size


def _target(value: Any) -> tuple[TargetSpec, int]:
    """As ``convert._target`` reads the message (``predicted: false`` too picks the kind)."""
    given, size = _flat(value, _TARGET)
    if not given:
        return _NO_TARGET, size
    if len(given) > 1:
        raise Unsure  # a oneof given twice: the general path's error
    [(name, v)] = given.items()
    kind = _KINDS[name]
    if kind is TargetKind.INDEX:
        return TargetSpec(kind, index=v), size
    if kind is TargetKind.LABEL:
        return TargetSpec(kind, label=v), size
    if kind is TargetKind.TOP_K:
        return TargetSpec(kind, k=v), size
    return TargetSpec(kind), size


def _outputs(value: Any) -> tuple[OutputOptions, int]:
    """As ``convert._outputs`` reads the message (unset optional fields: their defaults)."""
    o, size = _flat(value, _OUTPUTS)
    return OutputOptions(attributions=o.get("attributions", True),
                         top_features=o.get("top_features"), heatmap=o.get("heatmap", False),
                         reasons=o.get("reasons", True), metrics=o.get("metrics", ()),
                         metric_samples=o.get("metric_samples", 0)), size


def _inputs(value: Any, limits: Limits) -> tuple[Payload, int]:
    if type(value) is not dict or len(value) != 1:
        raise Unsure
    [(key, inner)] = value.items()
    f = _INPUT.get(key) if type(key) is str else None
    if f is None or inner is None:
        raise Unsure
    size = 2 + len(key) + 3
    if f.name == "image":
        data = f.convert(inner)
        return ImagePayload(bytes(data)), size + len(inner) + 3
    if type(inner) is not dict:
        raise Unsure
    if f.name == "tensor":
        array, n = _tensor(inner, limits)
        return TensorPayload(array), size + n
    if f.name == "tabular":
        features, n = _features(inner)
        return TabularPayload(features), size + n
    raise Unsure  # text, template: the general path


def _tensor(value: dict, limits: Limits) -> tuple[Any, int]:
    """``_flat`` for the Tensor message, written out (every request of a tensor model has
    one): shape (a list of ints), dtype (a name), data (base64); no other key."""
    shape: tuple[int, ...] = ()
    dtype, data = pb.DTYPE_UNSPECIFIED, b""
    size = 2
    for key, item in value.items():
        if item is None:
            raise Unsure
        if key == "data":
            data = _DATA(item)
            size += 7 + len(item) + 3
        elif key == "shape":
            if type(item) is not list:
                raise Unsure
            shape = tuple([_DIM(d) for d in item])
            size += 8 + 2 + 5 * len(item)
        elif key == "dtype":
            dtype = _DTYPE(item)
            size += 8 + len(item) + 3
        else:
            raise Unsure
    return tensor_from_fields(dtype, shape, data, "inputs.tensor",
                              limits.max_tensor_elements), size


def _features(value: dict) -> tuple[dict[str, float], int]:
    if len(value) != 1:
        raise Unsure
    [(key, features)] = value.items()
    f = _TABULAR.get(key) if type(key) is str else None
    if f is None or type(features) is not dict:
        raise Unsure
    size = 2 + len(key) + 3 + 2
    out: dict[str, float] = {}
    for name, number in features.items():
        if type(name) is not str or number is None:
            raise Unsure
        out[_text(name)] = f.convert(number)
        size += len(name) + 3 + 5
    return out, size


def _params(value: Any) -> tuple[dict[str, Any], int]:
    """A Struct of flat scalars, as ``convert.struct_to_dict`` reads it back."""
    if type(value) is not dict:
        raise Unsure
    size = 2
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise Unsure
        name = _text(key)
        t = type(item)
        if t is str:
            out[name] = _text(item)
            size += len(key) + 3 + len(item) + 3
            continue
        if t is bool:
            out[name] = item
        elif t is int or t is float:
            x = float(item)
            if x != x or abs(x) == float("inf") or (t is int and abs(item) > _EXACT):
                raise Unsure
            out[name] = int(x) if x.is_integer() and abs(x) < _EXACT else x
        else:
            raise Unsure  # null, objects and lists: the general path
        size += len(key) + 3 + 5
    return out, size

