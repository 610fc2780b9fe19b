"""One gateway call's failure: ``CallError`` (a gRPC status, and the handler's Error when it
refused the request), how a failed unary RPC reports it (``aborting``), the reading of the
handler's ExplainReply, and the two byte-level edits that let Explain and Predict pass bytes
through (``with_deadline_ms``, ``response_bytes``)."""

from __future__ import annotations

import functools
import urllib.parse
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message

from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.errors import InvalidInput
from service.wire.messages import parse_message


class CallError(Exception):
    """What one call answers when it fails: a gRPC status and, when the handler refused the
    request, its Error message."""

    def __init__(self, code: grpc.StatusCode, message: str, error: pb.Error | None = None,
                 field: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.error = code, message, error
        self.field = error.field if error is not None else field

    def as_proto(self) -> pb.Error:
        return self.error or pb.Error(code=self.code.name, message=self.message,
                                      field=self.field, grpc_code=self.code.name)

    @staticmethod
    def refused(error: pb.Error) -> CallError:
        """The handler's refusal, with the gRPC code the wire layer chose for it."""
        code = grpc.StatusCode.__members__.get(error.grpc_code, grpc.StatusCode.INVALID_ARGUMENT)
        return CallError(code, error.message, error)


M = TypeVar("M", bound=Message)


def parse(request: bytes | M, cls: type[M]) -> M:
    """The request message; raw bytes (from ``add_to_server``) are parsed here so that a
    malformed message is INVALID_ARGUMENT naming what failed."""
    try:
        return parse_message(request, cls)
    except InvalidInput as e:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT, str(e), field=e.field) from None


def _ascii(text: str) -> str:
    """A metadata value: printable ASCII, the rest percent-encoded (``urllib.parse.unquote``
    gives the field back)."""
    return urllib.parse.quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[]^_`{|}~")


def aborting(rpc: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    """A unary RPC whose CallError becomes the call's status (with the error's code and field
    in the trailing metadata)."""
    @functools.wraps(rpc)
    async def wrapped(self: Any, request: Any, context: Any) -> Any:
        try:
            return await rpc(self, request, context)
        except CallError as e:
            # metadata values must be printable ASCII: a field naming a client's non-ASCII
            # key (features['é']) is percent-encoded (clients unquote it)
            if e.error is not None:
                context.set_trailing_metadata((("explain-error-code", _ascii(e.error.code)),
                                               ("explain-error-field", _ascii(e.error.field))))
            elif e.field:
                context.set_trailing_metadata((("explain-error-field", _ascii(e.field)),))
            await context.abort(e.code, e.message)
            raise  # unreachable: abort raises
    return wrapped


def unpack_reply(raw: bytes | memoryview, model: str) -> pb.ExplainReply:
    """The handler's ExplainReply; its error becomes a CallError with the gRPC code the wire
    layer chose, an answer that is not an ExplainReply an INTERNAL one."""
    reply = pb.ExplainReply()
    try:
        reply.ParseFromString(raw)
    except Exception:
        reply.Clear()
    if reply.WhichOneof("result") is None:
        raise CallError(grpc.StatusCode.INTERNAL,
                        f"model {model!r} did not answer with an ExplainReply (is it served "
                        "by this project's handler?)")
    if reply.WhichOneof("result") == "error":
        raise CallError.refused(reply.error)
    return reply


_DEADLINE_TAG = bytes([pb.ExplainRequest.DESCRIPTOR.fields_by_name["deadline_ms"].number << 3])
_RESPONSE_TAG = bytes([pb.ExplainReply.DESCRIPTOR.fields_by_name["response"].number << 3 | 2])


def varint(value: int) -> bytes:
    """``value`` (>= 0) as a protobuf varint: 7 bits a byte, low first."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def with_deadline_ms(value: int) -> bytes:
    """``deadline_ms: value`` (uint32, >= 1) as one encoded field: appended to a serialized
    ExplainRequest it overrides the request's own (protobuf: a scalar's last value wins)."""
    return _DEADLINE_TAG + varint(value)


def sole_field(raw: bytes | memoryview, tag: bytes) -> memoryview | None:
    """The payload of the length-delimited field ``tag`` (its one-byte key) when ``raw`` is
    that one field and nothing else (how a message with just that field set serializes), as a
    view of ``raw`` (no copy); None otherwise."""
    view = memoryview(raw)
    if view[:1] != tag:
        return None
    size, i = 0, 1
    while i < min(len(view), 6):  # the length: a varint of at most 5 bytes
        size |= (view[i] & 0x7F) << 7 * (i - 1)
        i += 1
        if not view[i - 1] & 0x80:
            return view[i:] if i + size == len(view) else None
    return None


def response_bytes(raw: bytes | memoryview, model: str) -> bytes:
    """The serialized ExplainResponse of the handler's ExplainReply ``raw``: copied out once
    when ``raw`` is that one field (as the handler serializes a response); any other reply is
    read by ``unpack_reply`` (an error raised) and its response re-encoded."""
    payload = sole_field(raw, _RESPONSE_TAG)
    if payload is not None:
        return payload.tobytes()
    return unpack_reply(raw, model).response.SerializeToString()
