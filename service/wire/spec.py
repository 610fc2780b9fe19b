"""The runtime ModelSpec and algorithm registry as the wire's ModelSpec message."""

from __future__ import annotations

from typing import Any

from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.registry import REGISTRY
from service.runtime.spec import ModelSpec


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return str(value)


def spec_to_proto(spec: ModelSpec) -> pb.ModelSpec:
    """What a client may ask of a model: algorithms with their parameters (defaults as the spec
    sets them), targets (class names) and named baselines."""
    out = pb.ModelSpec(
        name=spec.name, version=spec.version, description=spec.description,
        purpose=spec.purpose, input_kind=spec.input_kind.value,
        input_shape=list(spec.input_shape), feature_names=list(spec.feature_names),
        class_names=list(spec.class_names), default_algorithm=spec.default_algorithm,
        baselines=sorted(spec.baselines), default_baseline=spec.default_baseline,
        batch_size=spec.batch.batch_size, max_batch_delay_ms=spec.batch.max_batch_delay_ms)
    for name in spec.algorithms:
        entry = REGISTRY.get(name)
        if entry is None:
            continue
        defaults = spec.default_params.get(name, {})
        info = out.algorithms.add(name=name, baselines=entry.baselines.value)
        for p in entry.all_params():
            param = info.params.add(name=p.name, type=p.type.__name__,
                                    default_value=_text(defaults.get(p.name, p.default)),
                                    choices=[_text(c) for c in p.choices])
            if p.minimum is not None:
                param.minimum = p.minimum
            if p.maximum is not None:
                param.maximum = p.maximum
    return out


def handler_reply(outcome: Any, spec: ModelSpec) -> pb.HandlerReply:
    """The handler's answer to the gateway: the response, the error, or (outcome None) the
    model's spec."""
    from service.runtime.errors import ExplainError

    from .convert import response_to_proto
    from .errors import error_to_proto

    if outcome is None:
        return pb.HandlerReply(spec=spec_to_proto(spec))
    if isinstance(outcome, ExplainError):
        return pb.HandlerReply(error=error_to_proto(outcome))
    return pb.HandlerReply(response=response_to_proto(outcome))
