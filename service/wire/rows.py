"""TorchServe's request rows <-> runtime types, for the handler: a row is a mapping holding the
body (``body`` or ``data``: ExplainRequest JSON, raw image bytes, or a serialized ExplainRequest
sent as ``Content-Type: application/x-protobuf``), or a serialized ExplainRequest under
``explain_request`` (the gRPC gateway), or the ``spec`` marker (the gateway's GetModelSpec),
with an optional ``explain`` flag. The gateway's serialized request is answered with a
serialized ExplainReply; a body with JSON, or with a serialized ExplainResponse (its ``error``
set when the request failed) when the request is protobuf or ``Accept`` names
application/x-protobuf (and not application/json)."""

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

from .convert import (
    reply_to_bytes,
    request_from_body,
    request_from_serialized,
    response_to_bytes,
    response_to_json,
)
from .errors import error_to_json

log = logging.getLogger(__name__)

TRUE = ("1", "true", "yes")
PROTOBUF, JSON = "application/x-protobuf", "application/json"


class SpecAsked:
    """The decoded form of the gateway's GetModelSpec marker."""


SPEC = SpecAsked()


# How a row is answered: JSON, a serialized ExplainResponse (REST application/x-protobuf), or a
# serialized ExplainReply (the gateway's input map).
ANSWER_JSON, ANSWER_RESPONSE, ANSWER_REPLY = "json", "response", "reply"


@dataclass
class Row:
    """One decoded row: what to answer and in which encoding."""

    item: Request | ExplainError | SpecAsked
    answer: str = ANSWER_JSON

    @property
    def content_type(self) -> str:
        return JSON if self.answer == ANSWER_JSON else PROTOBUF


def _names(header: str, media_type: str) -> bool:
    return media_type in header.lower()


def answer_for(content_type: str, accept: str) -> str:
    """The answer a REST request negotiates: protobuf when Accept names it (and not JSON
    first), or when the request is protobuf and Accept does not ask for JSON."""
    accept = accept.lower()
    if PROTOBUF in accept and (JSON not in accept or accept.index(PROTOBUF) < accept.index(JSON)):
        return ANSWER_RESPONSE
    if _names(content_type, PROTOBUF) and JSON not in accept:
        return ANSWER_RESPONSE
    return ANSWER_JSON


def text(value: object) -> str:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("utf-8", "replace")
    return "" if value is None else str(value)


def decode_row(row: object, explain_header: object, request_id: object,
               limits: Limits, content_type: str = "", accept: str = "") -> Row:
    """The row's request (an ExplainError when it is unreadable; never raises).
    ``explain_header`` is the frontend's ``explain`` header (true on /explanations);
    ``content_type`` and ``accept`` the request's HTTP headers ("" when absent)."""
    if not isinstance(row, dict):
        return Row(InvalidInput("body", "unreadable request"))
    if row.get("spec") is not None:
        return Row(SPEC, ANSWER_REPLY)
    serialized = row.get("explain_request")
    answer = ANSWER_REPLY if serialized is not None else answer_for(content_type, accept)
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
            if _names(content_type, PROTOBUF) and isinstance(body, (bytes, bytearray)):
                req = request_from_serialized(body, explain, limits=limits, field="body")
            else:
                req = request_from_body(body, explain, limits=limits)
        req.request_id = req.request_id or text(request_id)
        return Row(req, answer)
    except ExplainError as e:
        return Row(e, answer)
    except Exception as e:
        log.exception("decoding a request failed")
        return Row(internal(e, "decode"), answer)


def _encode(outcome: Response | ExplainError, answer: str) -> bytes | str:
    if answer == ANSWER_REPLY:
        return reply_to_bytes(outcome)
    if answer == ANSWER_RESPONSE:
        return response_to_bytes(outcome)
    return error_to_json(outcome) if isinstance(outcome, ExplainError) else response_to_json(outcome)


def encode_outcome(outcome: Response | ExplainError | SpecAsked, answer: str, spec: ModelSpec,
                   limits: Limits, table: AlgorithmTable, layers: Mapping[str, Any] | None = None
                   ) -> tuple[bytes | str, ExplainError | None]:
    """The answer's payload in the row's ``answer`` encoding and, when it is an error, the
    error (for the status); never raises (a failure to encode becomes that request's error).
    ``layers``: the executor's measured layers (name -> LayerInfo), for the spec answer."""
    try:
        if isinstance(outcome, SpecAsked):
            return reply_to_bytes(spec, limits, table, layers), None
        return _encode(outcome, answer), outcome if isinstance(outcome, ExplainError) else None
    except Exception as e:
        log.exception("encoding an answer failed")
        error = internal(e, "encode")
        return _encode(error, answer), error
