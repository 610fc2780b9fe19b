"""Runtime errors at the edges: HTTP statuses, gRPC status-code names and the Error body.

The runtime names fields by their protobuf names (``target.top_k``); callers see them as the
request's JSON spells them (``target.topK``), the same over REST and gRPC. Status lines carry an
ASCII, short phrase (TorchServe writes it in the HTTP status line); the details go in the body.
"""

from __future__ import annotations

import copy
import json
import re

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.errors import (
    DeadlineExceeded,
    ExplainError,
    LimitExceeded,
    ModelError,
    UnknownAlgorithm,
)

# Most specific first.
_STATUS: tuple[tuple[type[ExplainError], int, str], ...] = (
    (UnknownAlgorithm, 400, "INVALID_ARGUMENT"),
    (LimitExceeded, 422, "RESOURCE_EXHAUSTED"),
    (DeadlineExceeded, 504, "DEADLINE_EXCEEDED"),
    (ModelError, 500, "INTERNAL"),
    (ExplainError, 400, "INVALID_ARGUMENT"),
)
PHRASE_CHARS = 100
_SEGMENT = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(.*)$")  # name, then "[...]" suffixes


def http_status(e: ExplainError) -> int:
    return next(code for cls, code, _ in _STATUS if isinstance(e, cls))


def grpc_code(e: ExplainError) -> str:
    """The name of the grpc.StatusCode member (``grpc.StatusCode[grpc_code(e)]``)."""
    return next(name for cls, _, name in _STATUS if isinstance(e, cls))


def json_field(path: str, message: Descriptor = pb.ExplainRequest.DESCRIPTOR) -> str:
    """A dotted path in protobuf names (or already in JSON names) spelled as the JSON mapping
    does: ``target.top_k`` -> ``target.topK``. Below a Struct (``params``) and past an unknown
    segment, the rest is kept as given (the caller's own keys)."""
    out: list[str] = []
    parts = path.split(".") if path else []
    for n, part in enumerate(parts):
        m = _SEGMENT.match(part)
        fd = None
        if m is not None and message is not None:
            name = m.group(1)
            fd = message.fields_by_name.get(name) or next(
                (f for f in message.fields if f.json_name == name), None)
        if fd is None:
            out.extend(parts[n:])
            break
        out.append(fd.json_name + m.group(2))  # type: ignore[union-attr]
        sub = fd.message_type if fd.type == FieldDescriptor.TYPE_MESSAGE else None
        if sub is not None and sub.GetOptions().map_entry:
            sub = sub.fields_by_name["value"].message_type
        if sub is not None and sub.full_name.startswith("google.protobuf."):
            out.extend(parts[n + 1:])
            break
        message = sub  # type: ignore[assignment]
    return ".".join(out)


def public(e: ExplainError) -> ExplainError:
    """The error as callers see it: its field in the request's JSON spelling."""
    spelled = json_field(e.field)
    if spelled == e.field:
        return e
    out = copy.copy(e)
    out.field = spelled
    return out


def _ascii(text: str) -> str:
    return "".join(c if " " <= c <= "~" else "?" for c in text)


def status_phrase(e: ExplainError, limit: int = PHRASE_CHARS) -> str:
    """A one-line HTTP reason phrase: printable ASCII only and at most ``limit`` characters
    (TorchServe's frontend counts characters but writes UTF-8 bytes, and rejects CR/LF)."""
    text = _ascii(" ".join(str(public(e)).split()))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_to_proto(e: ExplainError) -> pb.Error:
    e = public(e)
    return pb.Error(code=e.code, field=e.field, message=str(e), allowed=list(e.allowed),
                    http_status=http_status(e), grpc_code=grpc_code(e))


def error_to_json(e: ExplainError) -> str:
    e = public(e)
    body: dict[str, object] = {"code": e.code, "field": e.field, "message": str(e)}
    if e.allowed:
        body["allowed"] = list(e.allowed)
    return json.dumps(body)
