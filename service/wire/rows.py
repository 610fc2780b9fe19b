"""TorchServe's request rows <-> runtime types, for the handler: a row is a mapping holding the
body (``body`` or ``data``: ExplainRequest JSON or raw image bytes), or a serialized
ExplainRequest under ``explain_request`` (the gRPC gateway), or the ``spec`` marker (the
gateway's GetModelSpec), with an optional ``explain`` flag. A serialized request is answered
with a serialized ExplainReply, a body with JSON."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.runtime.algorithms import AlgorithmTable
from service.runtime.errors import ExplainError, InvalidInput, internal
from service.runtime.limits import Limits
from service.runtime.request import Request, Response
from service.runtime.spec import ModelSpec

from .convert import reply_to_bytes, request_from_body, request_from_serialized, response_to_json
from .errors import error_to_json

log = logging.getLogger(__name__)

TRUE = ("1", "true", "yes")
PROTOBUF, JSON = "application/x-protobuf", "application/json"


class SpecAsked:
    """The decoded form of the gateway's GetModelSpec marker."""


SPEC = SpecAsked()


@dataclass
class Row:
    """One decoded row: what to answer and in which encoding."""

    item: Request | ExplainError | SpecAsked
    binary: bool  # answer with a serialized ExplainReply (else JSON)

    @property
    def content_type(self) -> str:
        return PROTOBUF if self.binary else JSON


def text(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def decode_row(row: object, explain_header: object, request_id: object,
               limits: Limits) -> Row:
    """The row's request (an ExplainError when it is unreadable; never raises).
    ``explain_header`` is the frontend's ``explain`` header (true on /explanations)."""
    if not isinstance(row, dict):
        return Row(InvalidInput("body", "unreadable request"), False)
    if row.get("spec") is not None:
        return Row(SPEC, True)
    serialized = row.get("explain_request")
    binary = serialized is not None
    try:
        explain = text(explain_header).lower() in TRUE or text(row.get("explain")).lower() in TRUE
        if serialized is not None:
            req = request_from_serialized(serialized, explain, limits=limits)
        else:
            body = row.get("body") if row.get("body") is not None else row.get("data")
            if body is None and set(row) - {"explain"}:
                raise InvalidInput("body", "got form fields; send the ExplainRequest JSON with "
                                   "'Content-Type: application/json', or the image bytes "
                                   "(curl -T image.png)")
            req = request_from_body(body, explain, limits=limits)
        req.request_id = req.request_id or text(request_id)
        return Row(req, binary)
    except ExplainError as e:
        return Row(e, binary)
    except Exception as e:
        log.exception("decoding a request failed")
        return Row(internal(e, "decode"), binary)


def encode_outcome(outcome: Response | ExplainError | SpecAsked, binary: bool, spec: ModelSpec,
                   limits: Limits, table: AlgorithmTable, layers: Mapping[str, Any] | None = None
                   ) -> tuple[bytes | str, ExplainError | None]:
    """The answer's payload and, when it is an error, the error (for the status); never
    raises (a failure to encode becomes that request's error). ``layers``: the executor's
    measured layers (name -> LayerInfo), for the spec answer."""
    try:
        if isinstance(outcome, SpecAsked):
            return reply_to_bytes(spec, limits, table, layers), None
        if isinstance(outcome, ExplainError):
            return (reply_to_bytes(outcome) if binary else error_to_json(outcome)), outcome
        return (reply_to_bytes(outcome) if binary else response_to_json(outcome)), None
    except Exception as e:
        log.exception("encoding an answer failed")
        error = internal(e, "encode")
        return (reply_to_bytes(error) if binary else error_to_json(error)), error
