"""protobuf / protobuf-JSON <-> runtime types. The only module that knows both."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.algorithms import AlgorithmTable, default_table, text_table
from service.runtime.errors import ExplainError, InvalidInput, LimitExceeded, shown
from service.runtime.limits import Limits
from service.runtime.request import (
    BaselineKind,
    BaselineSpec,
    ClassScore,
    Feature,
    ImagePayload,
    LayerSelector,
    NoiseTunnelSpec,
    OutputOptions,
    Payload,
    Prediction,
    Request,
    Response,
    TabularPayload,
    TargetExplanation,
    TargetKind,
    TargetSpec,
    TensorPayload,
    Timings,
)
from service.runtime.spec import ModelSpec

from . import text as text_wire
from .errors import error_to_proto
from .jsonmap import message_to_dict
from .jsonparse import SURROGATE, parse_dict
from .plainbody import plain_request
from .predjson import explanation_json, prediction_json
from .tensors import tensor_from_proto, tensor_to_proto

if TYPE_CHECKING:
    from service.runtime.layers import LayerInfo

# A request's parts when the body leaves them out (frozen: one instance serves every request).
_NO_TARGET, _NO_BASELINE, _NO_LAYER = TargetSpec(), BaselineSpec(), LayerSelector()
_NO_OUTPUTS = OutputOptions()

IMAGE_MAGIC = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff")


# -- requests ---------------------------------------------------------------------------------

def _payload(m: pb.ExplainRequest, limits: Limits) -> Payload | None:
    if not m.HasField("inputs"):
        return None
    which = m.inputs.WhichOneof("kind")
    if which == "image":
        return ImagePayload(bytes(m.inputs.image))
    if which == "tensor":
        return TensorPayload(tensor_from_proto(m.inputs.tensor, "inputs.tensor",
                                               limits.max_tensor_elements))
    if which == "tabular":
        return TabularPayload(dict(m.inputs.tabular.features))
    return text_wire.payload_from_proto(m.inputs)


def _target(m: pb.ExplainRequest) -> TargetSpec:
    which = m.target.WhichOneof("kind") if m.HasField("target") else None
    if which is None:
        return _NO_TARGET
    if which == "predicted":
        return TargetSpec(TargetKind.PREDICTED)
    if which == "index":
        return TargetSpec(TargetKind.INDEX, index=m.target.index)
    if which == "label":
        return TargetSpec(TargetKind.LABEL, label=m.target.label)
    return TargetSpec(TargetKind.TOP_K, k=m.target.top_k)


def _baseline(m: pb.ExplainRequest, limits: Limits) -> BaselineSpec:
    if not m.HasField("baseline"):
        return _NO_BASELINE
    b = m.baseline
    which = b.WhichOneof("kind")
    if which is None:
        return _NO_BASELINE
    if which == "named":
        return BaselineSpec(BaselineKind.NAMED, name=b.named)
    if which == "zeros":
        return BaselineSpec(BaselineKind.ZEROS)
    if which == "constant":
        return BaselineSpec(BaselineKind.CONSTANT, value=b.constant)
    if which == "blur":
        return BaselineSpec(BaselineKind.BLUR, sigma=b.blur.sigma)
    if which == "dataset_mean":
        return BaselineSpec(BaselineKind.DATASET_MEAN)
    if which == "uniform":
        return BaselineSpec(BaselineKind.UNIFORM, low=b.uniform.low, high=b.uniform.high,
                            seed=b.uniform.seed)
    if which == "reference_set":
        return BaselineSpec(BaselineKind.REFERENCE_SET, name=b.reference_set)
    return BaselineSpec(BaselineKind.TENSOR, array=tensor_from_proto(
        b.tensor, "baseline.tensor", limits.max_tensor_elements))


def _outputs(m: pb.ExplainRequest) -> OutputOptions:
    if not m.HasField("outputs"):
        return _NO_OUTPUTS
    o = m.outputs
    return OutputOptions(
        attributions=o.attributions if o.HasField("attributions") else True,
        top_features=o.top_features if o.HasField("top_features") else None,
        heatmap=o.heatmap,
        reasons=o.reasons if o.HasField("reasons") else True,
        metrics=tuple(o.metrics), metric_samples=o.metric_samples)


def _noise_tunnel(m: pb.ExplainRequest) -> NoiseTunnelSpec | None:
    if not m.HasField("noise_tunnel"):
        return None
    n = m.noise_tunnel
    return NoiseTunnelSpec(type=n.type, samples=n.samples,
                           stdevs=n.stdevs if n.HasField("stdevs") else None,
                           samples_batch_size=n.samples_batch_size)


def _layer(m: pb.ExplainRequest) -> LayerSelector:
    if not m.HasField("layer"):
        return _NO_LAYER
    return LayerSelector(name=m.layer.name,
                         attribute_to_layer_input=m.layer.attribute_to_layer_input,
                         neuron=tuple(int(n) for n in m.layer.neuron))


def _value(v: Any, field: str) -> Any:
    """One google.protobuf.Value as Python, refusing what JSON cannot carry (NaN, +-Infinity:
    protobuf-JSON has no spelling for them, and no parameter takes them)."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        x = v.number_value
        if not math.isfinite(x):
            raise InvalidInput(field, f"must be a finite number, got {x}")
        return int(x) if x.is_integer() and abs(x) < 2**53 else x
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return struct_to_dict(v.struct_value, field)
    if kind == "list_value":
        return [_value(e, f"{field}[{i}]") for i, e in enumerate(v.list_value.values)]
    return None


def struct_to_dict(s: Any, field: str) -> dict[str, Any]:
    """A google.protobuf.Struct (``params``) as a dict; a non-finite number is refused naming
    its key (``params.n_steps``)."""
    return {k: _value(v, f"{field}.{k}") for k, v in s.fields.items()}


def request_from_proto(m: pb.ExplainRequest, explain: bool,
                       limits: Limits | None = None) -> Request:
    limits = limits or Limits()
    params: dict[str, Any] = struct_to_dict(m.params, "params") if m.HasField("params") else {}
    return Request(
        inputs=_payload(m, limits), explain=explain, algorithm=m.algorithm or None,
        params=params, target=_target(m), baseline=_baseline(m, limits), outputs=_outputs(m),
        noise_tunnel=_noise_tunnel(m), layer=_layer(m),
        max_batch_rows=(m.limits.max_batch_rows or None) if m.HasField("limits") else None,
        deadline_ms=m.deadline_ms or None, request_id=m.request_id, model=m.model,
        target_text=m.target_text, max_new_tokens=m.max_new_tokens,
        stream_tokens=m.stream_tokens, stream_part_tokens=m.stream_part_tokens)


def _parse_error_field(text: str) -> str:
    """The dotted request field a json_format.ParseError is about ("body" if unknown): the
    chain of "Failed to parse X field" segments, the "at ExplainRequest.a.b" path, and the
    unknown field name, whichever says the most."""
    chain = re.findall(r"Failed to parse (\w+) field", text)
    at = re.search(r'at "?ExplainRequest\.?([\w.]*)(?:\[(.*)\])?', text)
    path = [p for p in (at.group(1).split(".") if at else []) if p]
    if at and at.group(2) is not None and path:  # a map entry: name its key
        path[-1] += f"[{shown(at.group(2))}]"
    unknown = re.search(r'has no field named "([^"]+)"', text)
    if unknown:
        return ".".join([*path, unknown.group(1)])
    if not path:
        return ".".join(chain) or "body"

    def norm(name: str) -> str:
        return name.replace("_", "").lower()

    if chain and norm(chain[-1]) not in {norm(p.split("[")[0]) for p in path}:
        path.append(chain[-1])
    return ".".join(path)


def _check_json(body: Any, limits: Limits) -> None:
    """Nesting depth and (approximate, from below) encoded size of a parsed JSON body, and keys
    that are valid Unicode (upb's field lookup by a name holding an unpaired surrogate raises
    SystemError), without recursion."""
    stack: list[tuple[Any, int, tuple[Any, ...]]] = [(body, 1, ())]
    size = 0
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, (dict, list)):
            if depth > limits.max_json_depth:
                raise LimitExceeded("body", f"JSON nested deeper than {limits.max_json_depth} "
                                    "levels (max_json_depth)")
            size += 2
            children = node.items() if isinstance(node, dict) else enumerate(node)
            keyed = isinstance(node, dict)
            for k, v in children:
                if keyed:
                    size += len(str(k)) + 3
                    if isinstance(k, str) and SURROGATE.search(k):
                        raise InvalidInput(".".join(map(str, path)) or "body",
                                           f"the key {shown(k)} holds an unpaired surrogate "
                                           "(not valid Unicode)")
                stack.append((v, depth + 1, (*path, k)))
        elif isinstance(node, str):
            size += len(node) + 3
        else:
            size += 5
        if size > limits.max_body_bytes:
            raise LimitExceeded("body", f"more than {limits.max_body_bytes} bytes of JSON "
                                "(max_body_bytes)")


# what a map's scalar value must be, by its protobuf type (the rest: a number)
_SCALAR_KIND = {FieldDescriptor.CPPTYPE_STRING: "a string",
                FieldDescriptor.CPPTYPE_BOOL: "true or false"}


def _check_types(body: Mapping[str, Any], message: Any, path: str) -> None:
    """Objects where the schema has messages and lists where it has repeated fields, before
    json_format reads them (it iterates a string given for a message as if it were keys)."""
    for key, value in body.items():
        fd = message.fields_by_name.get(key) if isinstance(key, str) else None
        fd = fd or next((f for f in message.fields if f.json_name == key), None)
        if fd is None or value is None:
            continue  # json_format names unknown fields; null means unset
        where = f"{path}.{fd.json_name}" if path else fd.json_name
        if fd.enum_type is not None and (
                (isinstance(value, float) and not math.isfinite(value))
                or (isinstance(value, str) and SURROGATE.search(value))):
            # json_format would int() a float and let an OverflowError out, and upb's lookup
            # of a name with an unpaired surrogate raises SystemError
            raise InvalidInput(where, f"must be one of {[v.name for v in fd.enum_type.values]}, "
                               f"got {shown(value)}")
        sub = fd.message_type
        is_map = sub is not None and sub.GetOptions().map_entry
        if fd.is_repeated and not is_map:
            if not isinstance(value, list):
                raise InvalidInput(where, f"must be a list, got {type(value).__name__}")
            continue
        if sub is None or sub.full_name.startswith("google.protobuf."):
            continue
        if not isinstance(value, Mapping):
            raise InvalidInput(where, f"must be an object, got {type(value).__name__}")
        if not is_map:
            _check_types(value, sub, where)
            continue
        entry = sub.fields_by_name["value"]
        if entry.message_type is None and entry.enum_type is None:  # a map of scalars
            for k, v in value.items():
                if v is None or isinstance(v, (list, dict)):
                    kind = _SCALAR_KIND.get(entry.cpp_type, "a number")
                    raise InvalidInput(f"{where}[{shown(k)}]", f"must be {kind}, got "
                                       f"{'null' if v is None else type(v).__name__}")


def request_from_dict(body: Mapping[str, Any], explain: bool,
                      limits: Limits | None = None) -> Request:
    """The canonical protobuf-JSON mapping of ExplainRequest (already parsed from JSON)."""
    limits = limits or Limits()
    if not isinstance(body, Mapping):
        raise InvalidInput("body", "a JSON body must be an object (an ExplainRequest), got "
                           f"{type(body).__name__}")
    plain = plain_request(body, explain, limits)  # the plainest bodies, without the message
    return plain if plain is not None else _general_request(body, explain, limits)


def _general_request(body: Mapping[str, Any], explain: bool, limits: Limits) -> Request:
    """request_from_dict for a body plain_request does not read."""
    _check_json(body, limits)
    m = pb.ExplainRequest()
    if parse_dict(body, m):  # the plain form, read fast; anything else as json_format reads it
        return request_from_proto(m, explain, limits)
    _check_types(body, pb.ExplainRequest.DESCRIPTOR, "")
    m = pb.ExplainRequest()
    try:
        json_format.ParseDict(body, m)
    except json_format.ParseError as e:
        raise InvalidInput(_parse_error_field(str(e)), " ".join(str(e).split())) from e
    except RecursionError as e:
        raise LimitExceeded("body", "JSON nested too deeply (max_json_depth)") from e
    except (TypeError, ValueError, AttributeError, KeyError, OverflowError,
            SystemError) as e:  # json_format lets some out
        raise InvalidInput("body", f"not an ExplainRequest: {type(e).__name__}: {e}") from e
    return request_from_proto(m, explain, limits)


def _limits(max_body_bytes: int | None, limits: Limits | None) -> Limits:
    limits = limits or Limits()
    if max_body_bytes is not None and max_body_bytes != limits.max_body_bytes:
        limits = replace(limits, max_body_bytes=max_body_bytes)
    return limits


def request_from_body(body: bytes | bytearray | str | Mapping | None, explain: bool,
                      max_body_bytes: int | None = None, *,
                      limits: Limits | None = None) -> Request:
    """A REST body: raw PNG/JPEG bytes (model defaults) or an ExplainRequest as JSON (bytes,
    text, or already parsed, as TorchServe gives application/json bodies)."""
    limits = _limits(max_body_bytes, limits)
    if type(body) is dict:  # TorchServe's parsed application/json body: the common case
        plain = plain_request(body, explain, limits)
        return plain if plain is not None else _general_request(body, explain, limits)
    max_body_bytes = limits.max_body_bytes
    if body is None or (isinstance(body, (bytes, bytearray, str)) and len(body) == 0):
        raise InvalidInput("body", "empty request body; send an ExplainRequest JSON object or "
                           "PNG/JPEG bytes")
    if not isinstance(body, (bytes, bytearray, str)):
        return request_from_dict(body, explain, limits)  # type: ignore[arg-type]
    if isinstance(body, (bytes, bytearray)):
        if len(body) > max_body_bytes:
            raise LimitExceeded("body", f"{len(body)} bytes is above the limit {max_body_bytes} "
                                "(max_body_bytes)")
        if bytes(body[:8]).startswith(IMAGE_MAGIC):
            return Request(inputs=ImagePayload(bytes(body)), explain=explain)
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError as e:
            raise InvalidInput("body", "not JSON and not a PNG/JPEG image") from e
    if len(body) > max_body_bytes:
        raise LimitExceeded("body", f"{len(body)} bytes is above the limit {max_body_bytes} "
                            "(max_body_bytes)")
    try:
        parsed = json.loads(body)
    except json.JSONDecodeError as e:
        raise InvalidInput("body", f"not valid JSON: {e}") from e
    except RecursionError as e:
        raise LimitExceeded("body", f"JSON nested deeper than {limits.max_json_depth} levels "
                            "(max_json_depth)") from e
    return request_from_dict(parsed, explain, limits)


def request_from_serialized(data: bytes | bytearray, explain: bool,
                            max_body_bytes: int | None = None, *,
                            limits: Limits | None = None,
                            field: str = "explain_request") -> Request:
    """A serialized ExplainRequest (the gRPC gateway's path, and REST bodies sent as
    application/x-protobuf, ``field`` "body"): no JSON round trip."""
    limits = _limits(max_body_bytes, limits)
    if not isinstance(data, (bytes, bytearray)):
        raise InvalidInput(field, "must be bytes")
    if len(data) > limits.max_body_bytes:
        raise LimitExceeded(field, f"{len(data)} bytes is above the limit "
                            f"{limits.max_body_bytes} (max_body_bytes)")
    m = pb.ExplainRequest()
    try:
        m.ParseFromString(bytes(data))
    except Exception as e:
        raise InvalidInput(field, f"not a serialized ExplainRequest: {e}") from e
    return request_from_proto(m, explain, limits)


# -- responses --------------------------------------------------------------------------------

def response_to_proto(r: Response) -> pb.ExplainResponse:
    p = r.prediction
    out = pb.ExplainResponse(
        model=r.model, model_version=r.model_version, request_id=r.request_id,
        algorithm=r.algorithm,
        prediction=pb.Prediction(
            index=p.index, label=p.label, probability=p.probability,
            top=[pb.ClassScore(index=c.index, label=c.label, probability=c.probability,
                               logit=c.logit) for c in p.top],
            output=tensor_to_proto(p.output)),
        timings=pb.Timings(**vars(r.timings)), partial=r.partial, part_index=r.part_index)
    for e in r.explanations:
        te = out.explanations.add(
            target=e.target, label=e.label, instance_output=e.instance_output,
            baseline_output=e.baseline_output, reasons=e.reasons, reasons_note=e.reasons_note,
            attributed_to=e.attributed_to, layer=e.layer,
            top_features=[pb.Feature(name=f.name, value=f.value, attribution=f.attribution)
                          for f in e.top_features])
        if e.attributions is not None:
            te.attributions.CopyFrom(tensor_to_proto(e.attributions))
        if e.approximation_error is not None:
            te.approximation_error = e.approximation_error
        if e.heatmap_png:
            te.heatmap_png = e.heatmap_png
        te.metrics.update(e.metrics)
    if r.text is not None:
        text_wire.explanation_to_proto(r.text, out.text)
    return out


def reply_to_bytes(outcome: Response | ExplainError | ModelSpec,
                   limits: Limits | None = None, table: AlgorithmTable | None = None,
                   layers: Mapping[str, LayerInfo] | None = None) -> bytes:
    """A serialized ExplainReply: the response, the error or the model spec (with ``limits``,
    the algorithms of ``table`` and the measured ``layers``), for the serialized-request path
    (TorchServe gRPC / the gateway)."""
    if isinstance(outcome, ModelSpec):
        return pb.ExplainReply(spec=spec_to_proto(outcome, limits, table, layers)
                               ).SerializeToString()
    if isinstance(outcome, ExplainError):
        return pb.ExplainReply(error=error_to_proto(outcome)).SerializeToString()
    return pb.ExplainReply(response=response_to_proto(outcome)).SerializeToString()


def response_to_bytes(outcome: Response | ExplainError) -> bytes:
    """A serialized ExplainResponse, for REST answers in application/x-protobuf: the response,
    or an ExplainResponse whose ``error`` is set (the HTTP status says which)."""
    if isinstance(outcome, ExplainError):
        return pb.ExplainResponse(error=error_to_proto(outcome)).SerializeToString()
    return response_to_proto(outcome).SerializeToString()


def response_from_proto(m: pb.ExplainResponse) -> Response:
    """The runtime Response a client reads back from an ExplainResponse (arrays as numpy)."""
    p = m.prediction
    prediction = Prediction(
        index=p.index, label=p.label, probability=p.probability,
        top=[ClassScore(c.index, c.label, c.probability, c.logit) for c in p.top],
        output=(tensor_from_proto(p.output, "prediction.output") if p.HasField("output")
                else np.zeros(0)))
    explanations = [TargetExplanation(
        target=e.target, label=e.label,
        attributions=(tensor_from_proto(e.attributions, "attributions")
                      if e.HasField("attributions") else None),
        instance_output=e.instance_output, baseline_output=e.baseline_output,
        approximation_error=(e.approximation_error if e.HasField("approximation_error")
                             else None),
        top_features=[Feature(f.name, f.value, f.attribution) for f in e.top_features],
        heatmap_png=e.heatmap_png or None, reasons=list(e.reasons),
        reasons_note=e.reasons_note, metrics=dict(e.metrics),
        attributed_to=e.attributed_to or "input",
        layer=e.layer) for e in m.explanations]
    timings = Timings(**{f: getattr(m.timings, f) for f in vars(Timings())})
    return Response(model=m.model, model_version=m.model_version, request_id=m.request_id,
                    algorithm=m.algorithm, prediction=prediction, explanations=explanations,
                    timings=timings,
                    text=text_wire.explanation_from_proto(m.text) if m.HasField("text") else None,
                    partial=m.partial, part_index=m.part_index)


# Fields that mean nothing in an answer without explanations (/predictions), and fields of an
# explanation that are left out when empty (reasonsNote: only set when reasons were withheld;
# layer: only for methods that run on one).
_EXPLAIN_ONLY = ("algorithm", "explanations")
_EXPLAIN_ONLY_TIMINGS = ("explainMs", "fusedGroupSize", "baselineCacheHit")
_OMIT_WHEN_EMPTY = ("reasonsNote", "metrics", "layer")


def response_to_json(r: Response) -> str:
    """The protobuf-JSON answer. Fields at their default (index 0, ...) are printed too: still
    the canonical mapping, and clearer to read than an absent field; but a prediction answer
    carries no explanation fields, and an explanation no empty note. Predictions and most
    explanations are written directly as text (predjson: the same characters)."""
    if not r.explanations and not r.algorithm:
        text = prediction_json(r)
    else:
        text = explanation_json(r)
    return text if text is not None else mapped_json(r)


def mapped_json(r: Response) -> str:
    """response_to_json through the protobuf message and its JSON mapping, for every answer."""
    d = message_to_dict(response_to_proto(r))
    if not r.explanations and not r.algorithm:
        d.pop("text", None)
        for k in _EXPLAIN_ONLY:
            d.pop(k, None)
        for k in _EXPLAIN_ONLY_TIMINGS:
            d.get("timings", {}).pop(k, None)
    for e in d.get("explanations", []):
        for k in _OMIT_WHEN_EMPTY:
            if not e.get(k):
                e.pop(k, None)
    if not r.partial and not r.part_index:   # not streamed (streamTokens): as before
        d.pop("partial", None)
        d.pop("partIndex", None)
        d.get("text", {}).pop("tokenRowOffset", None)
    return json.dumps(d, ensure_ascii=False)


def response_from_json(text: str | bytes) -> pb.ExplainResponse:
    return json_format.Parse(text, pb.ExplainResponse())




# -- model specs --------------------------------------------------------------------------------

def spec_to_proto(spec: ModelSpec, limits: Limits | None = None,
                  table: AlgorithmTable | None = None,
                  layers: Mapping[str, LayerInfo] | None = None) -> pb.ModelSpec:
    """What a client may know about a served model (GetModelSpec / ListModels), with the
    request limits in force, the algorithms of ``table`` (None: the default table, or the
    text table for a text model) the spec enables, each with its parameters' defaults for this
    model, and the spec's layers with the shapes ``layers`` measured (module paths alone when
    not measured)."""
    if table is None:
        table = text_table() if spec.text is not None else default_table()
    algorithms = []
    for name in spec.algorithms:
        entry = table.get(name)
        if entry is None:
            continue
        defaults = entry.defaults(spec.input_kind.value, spec.default_params.get(name, {}))
        params = [pb.ParamInfo(name=p.name, type=p.type.__name__,
                               default_value=str(defaults[p.name]),
                               choices=[str(c) for c in p.choices],
                               minimum=float(p.minimum) if p.minimum is not None else 0.0,
                               maximum=float(p.maximum) if p.maximum is not None else 0.0)
                  for p in entry.all_params()]
        algorithms.append(pb.AlgorithmInfo(name=name, params=params,
                                           baselines=entry.baseline_mode(defaults).value,
                                           family=getattr(entry, "text_family", entry.family).value))
    return pb.ModelSpec(
        name=spec.name, version=spec.version, description=spec.description,
        purpose=spec.purpose, input_kind=spec.input_kind.value,
        input_shape=list(spec.input_shape), feature_names=list(spec.feature_names),
        class_names=list(spec.class_names), algorithms=algorithms,
        default_algorithm=spec.default_algorithm, baselines=list(spec.baselines),
        default_baseline=spec.default_baseline, batch_size=spec.batch.batch_size,
        max_batch_delay_ms=spec.batch.max_batch_delay_ms,
        limits=(limits or Limits.build(spec, env={})).as_dict(),
        layers=_layer_infos(spec, layers or {}), text=text_wire.info_to_proto(spec))


def _layer_infos(spec: ModelSpec, measured: Mapping[str, LayerInfo]) -> list[pb.LayerInfo]:
    """The spec's layers, the default first."""
    names = sorted(spec.layers, key=lambda n: n != spec.default_layer)
    out = []
    for n in names:
        info = measured.get(n)
        out.append(pb.LayerInfo(name=n, module=spec.layers[n],
                                output_shape=list(info.output_shape) if info else [],
                                input_shape=list(info.input_shape) if info else []))
    return out
