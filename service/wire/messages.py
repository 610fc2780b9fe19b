"""Parsing serialized protobuf messages, with the field at fault named: a malformed message is
the caller's mistake (InvalidInput), not an internal error."""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from service.runtime.errors import InvalidInput, clip

M = TypeVar("M", bound=Message)


def parse_message(data: bytes | bytearray | M, cls: type[M]) -> M:
    """``data`` parsed as a ``cls`` (a message already parsed is returned as it is). Unknown
    field numbers are fine (a newer client); a known number among the unknown fields had the
    wrong wire type: the message is malformed."""
    if not isinstance(data, (bytes, bytearray)):
        return data
    m = cls()
    name = cls.DESCRIPTOR.name
    try:
        m.ParseFromString(bytes(data))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise InvalidInput("request", f"not a valid {name} "
                           f"({clip(' '.join(str(e).split()), 120)})") from None
    known = cls.DESCRIPTOR.fields_by_number
    wrong = sorted({f.field_number for f in UnknownFieldSet(m) if f.field_number in known})
    if wrong:
        field = known[wrong[0]].json_name
        raise InvalidInput(field, f"malformed in the serialized {name} (wrong wire type)")
    return m
