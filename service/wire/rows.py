"""TorchServe's request rows <-> runtime types, for the handler: a row is a mapping holding the
body (``body`` or ``data``: ExplainRequest JSON, raw image bytes, or a serialized ExplainRequest
sent as ``Content-Type: application/x-protobuf``), or a serialized ExplainRequest under
``explain_request`` (the gRPC gateway), or the ``spec`` marker (the gateway's GetModelSpec),
with an optional ``explain`` flag. The gateway's serialized request is answered with a
serialized ExplainReply; a body with JSON, or with a serialized ExplainResponse (its ``error``
set when the request failed) when the request is protobuf or ``Accept`` names
application/x-protobuf (and not application/json).

A request with ``stream_tokens`` (text models) is also answered in parts before its answer
(``encode_part``): a serialized ExplainReply per part on the gateway's path (TorchServe's
StreamPredictions sends each as one message), one line of newline-delimited JSON per part over
REST (TorchServe writes each as an HTTP chunk; the final answer is the last line). REST streams
JSON only: a streamed request asking for application/x-protobuf is refused. A serialized
request streams only with the ``stream`` marker in its input map, which the gateway sets when
it calls StreamPredictions: an intermediate response to a unary Predictions call ends that call
with the first part, and TorchServe 0.12's worker thread then fails on the next part
(IllegalStateException) and serves no request of that model again."""

from __future__ import annotations

import json
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
from .errors import error_to_json, error_to_proto
from .jsonmap import message_to_dict

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
    stream_call: bool = False   # it came on the gateway's StreamPredictions (the marker)

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


def flag(value: object) -> bool:
    """A true/false marker (a header or input-map value: text, bytes or None)."""
    if value is None:
        return False
    return (value if type(value) is str else text(value)).lower() in TRUE


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
    marked = serialized is not None and flag(row.get("stream"))
    can_stream = serialized is None or marked
    try:
        explain = flag(explain_header) or flag(row.get("explain"))
        if serialized is not None:
            req = request_from_serialized(serialized, explain, limits=limits)
        else:
            body = row.get("body")
            if body is None:
                body = row.get("data")
            if body is None and set(row) - {"explain"}:
                raise InvalidInput("body", "got form fields; send the ExplainRequest JSON with "
                                   "'Content-Type: application/json', or the image bytes "
                                   "(curl -T image.png)")
            if _names(content_type, PROTOBUF) and isinstance(body, (bytes, bytearray)):
                req = request_from_serialized(body, explain, limits=limits, field="body")
            else:
                req = request_from_body(body, explain, limits=limits)
        req.request_id = req.request_id or text(request_id)
        if req.stream_tokens and answer == ANSWER_RESPONSE:
            raise InvalidInput("stream_tokens", "REST streams newline-delimited JSON parts; "
                               "send and accept application/json (or use ExplainStream)")
        if req.stream_tokens and not can_stream:
            raise InvalidInput("stream_tokens", "this call cannot stream (a unary call): use "
                               "ExplainStream (gRPC) or POST /explanations (REST)")
        return Row(req, answer, marked)
    except ExplainError as e:
        return Row(e, answer, marked)
    except Exception as e:
        log.exception("decoding a request failed")
        return Row(internal(e, "decode"), answer, marked)


def _encode(outcome: Response | ExplainError, answer: str) -> bytes | str:
    if answer == ANSWER_REPLY:
        return reply_to_bytes(outcome)
    if answer == ANSWER_RESPONSE:
        return response_to_bytes(outcome)
    return error_to_json(outcome) if isinstance(outcome, ExplainError) else response_to_json(outcome)


def streams(row: Row) -> bool:
    """The row's request asked for its token rows in parts."""
    return isinstance(row.item, Request) and row.item.stream_tokens


def encode_part(part: Response, answer: str) -> bytes | str:
    """A partial response of a streamed request in the row's encoding: a serialized
    ExplainReply (the gateway), or one line of newline-delimited JSON (REST)."""
    return reply_to_bytes(part) if answer == ANSWER_REPLY else response_to_json(part) + "\n"


def _encode_streamed(outcome: Response | ExplainError, answer: str,
                     parts_sent: bool) -> bytes | str:
    """The last answer of a streamed request: over REST a JSON line; an error after parts
    were sent (its HTTP status already written as 200) is an ExplainResponse whose ``error``
    is set."""
    if answer != ANSWER_JSON:
        return _encode(outcome, answer)
    if isinstance(outcome, ExplainError):
        if not parts_sent:
            return _encode(outcome, answer)
        return json.dumps({"error": message_to_dict(error_to_proto(outcome))}) + "\n"
    return response_to_json(outcome) + "\n"


def encode_outcome(outcome: Response | ExplainError | SpecAsked, answer: str, spec: ModelSpec,
                   limits: Limits, table: AlgorithmTable, layers: Mapping[str, Any] | None = None,
                   streamed: bool = False, parts_sent: bool = False,
                   ) -> tuple[bytes | str, ExplainError | None]:
    """The answer's payload in the row's ``answer`` encoding and, when it is an error, the
    error (for the status); never raises (a failure to encode becomes that request's error).
    ``layers``: the executor's measured layers (name -> LayerInfo), for the spec answer;
    ``streamed``: the request streams its parts (``parts_sent``: some were sent)."""
    try:
        if isinstance(outcome, SpecAsked):
            return reply_to_bytes(spec, limits, table, layers), None
        payload = (_encode_streamed(outcome, answer, parts_sent) if streamed
                   else _encode(outcome, answer))
        return payload, outcome if isinstance(outcome, ExplainError) else None
    except Exception as e:
        log.exception("encoding an answer failed")
        error = internal(e, "encode")
        return _encode(error, answer), error
