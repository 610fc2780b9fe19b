"""Text models on the wire: ``Input.text`` / ``Input.template`` -> runtime payloads, and the
runtime's TextExplanation and text spec -> ``ExplainResponse.text`` / ``ModelSpec.text``."""

from __future__ import annotations

from typing import Any

from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.request import TemplatePayload, TextExplanation, TextPayload
from service.runtime.spec import ModelSpec


def payload_from_proto(inputs: Any) -> TextPayload | TemplatePayload | None:
    """The prompt of an ``explain.v1.Input`` whose ``kind`` is text or template (else None)."""
    which = inputs.WhichOneof("kind")
    if which == "text":
        return TextPayload(inputs.text)
    if which == "template":
        t = inputs.template
        return TemplatePayload(t.template, dict(t.values), dict(t.baselines))
    return None


def explanation_to_proto(e: TextExplanation, out: Any) -> None:
    """Fills ``out`` (a ``pb.TextExplanation``) from ``e``."""
    from .tensors import tensor_to_proto

    out.generated = e.generated
    out.output_tokens.extend(e.output_tokens)
    out.input_features.extend(e.input_features)
    out.seq_attr.extend(float(v) for v in e.seq_attr)
    if e.token_attr is not None:
        out.token_attr.CopyFrom(tensor_to_proto(e.token_attr))
    if e.heatmap_png:
        out.heatmap_png = e.heatmap_png
    out.token_row_offset = e.token_row_offset


def explanation_from_proto(m: Any) -> TextExplanation:
    import numpy as np

    from .tensors import tensor_from_proto

    return TextExplanation(
        generated=m.generated, output_tokens=list(m.output_tokens),
        input_features=list(m.input_features), seq_attr=np.asarray(m.seq_attr, dtype=np.float64),
        token_attr=(tensor_from_proto(m.token_attr, "text.token_attr")
                    if m.HasField("token_attr") else None),
        heatmap_png=m.heatmap_png or None, token_row_offset=m.token_row_offset)


def info_to_proto(spec: ModelSpec) -> pb.TextModelInfo | None:
    """``ModelSpec.text`` for a text model, else None."""
    if spec.text is None:
        return None
    return pb.TextModelInfo(context_length=spec.text.context_length,
                            stop_token=spec.text.stop_token,
                            baseline_token=spec.text.baseline_token)
