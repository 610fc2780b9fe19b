"""Runtime errors at the edges: HTTP statuses, gRPC status-code names and the Error body."""

from __future__ import annotations

import json

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


def http_status(e: ExplainError) -> int:
    return next(code for cls, code, _ in _STATUS if isinstance(e, cls))


def grpc_code(e: ExplainError) -> str:
    """The name of the grpc.StatusCode member (``grpc.StatusCode[grpc_code(e)]``)."""
    return next(name for cls, _, name in _STATUS if isinstance(e, cls))


def status_phrase(e: ExplainError, limit: int = 200) -> str:
    """A one-line HTTP reason phrase (TorchServe's frontend rejects CR/LF in it)."""
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def error_to_proto(e: ExplainError) -> pb.Error:
    return pb.Error(code=e.code, field=e.field, message=str(e), allowed=list(e.allowed),
                    http_status=http_status(e), grpc_code=grpc_code(e))


def error_to_json(e: ExplainError) -> str:
    body = {"code": e.code, "field": e.field, "message": str(e)}
    if e.allowed:
        body["allowed"] = list(e.allowed)
    return json.dumps(body)
