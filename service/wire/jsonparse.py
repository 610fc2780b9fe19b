"""A faster reading of already-parsed protobuf-JSON (dicts) into messages, for the requests the
handler decodes.

``parse_dict(body, message)`` fills ``message`` as ``json_format.ParseDict(body, message)``
would and returns True, for bodies in the plain form clients send (field names in JSON or proto
spelling, values of the field's own JSON type: numbers for numbers, strings for strings, enums
by name, bytes as base64, objects and lists where the schema has them, Struct values of JSON
types). For anything else (null, numbers as strings, out-of-range values, unknown fields, a
oneof given twice, ...) it returns False, having changed nothing the caller keeps: the caller
then runs json_format on a fresh message, which gives the exact answer or error. About 3x
faster than json_format, which re-inspects every field's descriptor on every call; this reads a
table built once per message type. tests/unit/test_wire_jsonparse.py checks the equality.
"""

from __future__ import annotations

import binascii
import math
import re
from collections.abc import Callable
from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

_F = FieldDescriptor
_URLSAFE = bytes.maketrans(b"-_", b"+/")  # base64.urlsafe_b64decode's translation
# An unpaired surrogate (json.loads leaves only those): protobuf refuses it in a string
# field, and upb's lookup of a name holding one raises SystemError.
SURROGATE = re.compile("[\ud800-\udfff]")
_FLOAT32_MAX = 3.4028234663852886e38
_INT_RANGE = {_F.CPPTYPE_INT32: (-2**31, 2**31), _F.CPPTYPE_UINT32: (0, 2**32),
              _F.CPPTYPE_INT64: (-2**63, 2**63), _F.CPPTYPE_UINT64: (0, 2**64)}


class _Unsure(Exception):
    """The body is outside the plain form: json_format must read it."""


def _scalar(fd: FieldDescriptor) -> Any:
    """The converter of one JSON value to the field's Python value (raises _Unsure)."""
    cpp = fd.cpp_type
    if cpp in _INT_RANGE:
        low, high = _INT_RANGE[cpp]

        def integer(v: Any) -> int:
            if type(v) is not int or not low <= v < high:
                raise _Unsure
            return v
        return integer
    if cpp in (_F.CPPTYPE_DOUBLE, _F.CPPTYPE_FLOAT):
        bound = _FLOAT32_MAX if cpp == _F.CPPTYPE_FLOAT else 2.0**53

        def number(v: Any) -> float:
            t = type(v)
            if t is float:
                if not math.isfinite(v) or (cpp == _F.CPPTYPE_FLOAT and abs(v) > bound):
                    raise _Unsure
                return v
            if t is not int or abs(v) > bound:
                raise _Unsure
            return float(v)
        return number
    if cpp == _F.CPPTYPE_BOOL:
        def boolean(v: Any) -> bool:
            if type(v) is not bool:
                raise _Unsure
            return v
        return boolean
    if cpp == _F.CPPTYPE_ENUM:
        numbers = {v.name: v.number for v in fd.enum_type.values}

        def enum(v: Any) -> int:
            if type(v) is not str or v not in numbers:
                raise _Unsure
            return numbers[v]
        return enum
    if fd.type == _F.TYPE_BYTES:
        def data(v: Any) -> bytes:
            if type(v) is not str:
                raise _Unsure
            encoded = v.encode("utf-8")
            try:  # json_format's own reading (base64.urlsafe_b64decode of the padded text:
                # the URL-safe alphabet accepted), without the module's wrappers
                return binascii.a2b_base64((encoded + b"=" * (4 - len(encoded) % 4))
                                           .translate(_URLSAFE))  # not strict: as b64decode
            except (binascii.Error, ValueError):
                raise _Unsure from None
        return data

    def string(v: Any) -> str:
        if type(v) is not str or SURROGATE.search(v):
            raise _Unsure
        return v
    return string


def _plain_json(v: Any, depth: int = 0) -> None:
    """A Struct/Value's content: JSON types only, numbers that fit a double exactly."""
    t = type(v)
    if t is str:
        if SURROGATE.search(v):
            raise _Unsure
    elif t is float:
        if not math.isfinite(v):
            raise _Unsure
    elif t is int:
        if abs(v) > 2**53:
            raise _Unsure
    elif t is dict:
        for k, x in v.items():
            if type(k) is not str or SURROGATE.search(k):
                raise _Unsure
            _plain_json(x, depth + 1)
    elif t is list:
        for x in v:
            _plain_json(x, depth + 1)
    elif v is not None and t is not bool:
        raise _Unsure


def _unsure(v: Any) -> Any:
    raise _Unsure


class _Field:
    __slots__ = ("fd", "name", "kind", "convert", "message", "oneof")
    convert: Callable[[Any], Any]

    def __init__(self, fd: FieldDescriptor) -> None:
        self.fd, self.name = fd, fd.name
        self.oneof = fd.containing_oneof.name if fd.containing_oneof is not None else None
        sub = fd.message_type
        if sub is not None and sub.GetOptions().map_entry:
            self.kind = "map"
            key_fd, value_fd = sub.fields_by_name["key"], sub.fields_by_name["value"]
            if key_fd.cpp_type != _F.CPPTYPE_STRING:
                self.kind = "unsure"  # int/bool keys arrive as strings: json_format's job
            self.message = value_fd.message_type
            self.convert = _unsure if self.message is not None else _scalar(value_fd)
        else:
            self.kind = "list" if fd.is_repeated else "one"
            self.message = sub
            self.convert = _unsure if sub is not None else _scalar(fd)


_TABLES: dict[Any, dict[str, _Field] | None] = {}  # by descriptor; None: Struct


def _table(d: Descriptor) -> dict[str, _Field] | None:
    """JSON key (json_name and proto name) -> field, built once per message type; None for
    google.protobuf.Struct (raises _Unsure for the other well-known types)."""
    if d in _TABLES:
        return _TABLES[d]
    if d.full_name.startswith("google.protobuf.") and d.full_name != "google.protobuf.Struct":
        raise _Unsure
    table: dict[str, _Field] | None = None
    if d.full_name != "google.protobuf.Struct":
        table = {}
        for fd in d.fields:
            f = _Field(fd)
            table[fd.json_name] = table[fd.name] = f
    _TABLES[d] = table
    return table


def _message(body: Any, m: Message) -> None:
    if type(body) is not dict:
        raise _Unsure
    table = _table(m.DESCRIPTOR)
    if table is None:  # google.protobuf.Struct
        _plain_json(body)
        m.update(body)  # type: ignore[attr-defined]
        return
    seen: set[str] | None = set() if len(body) > 1 else None  # a key given twice, a oneof
    for key, value in body.items():
        f = table.get(key) if type(key) is str else None
        if f is None or value is None or f.kind == "unsure":
            raise _Unsure
        if seen is not None:
            if f.name in seen:
                raise _Unsure
            seen.add(f.name)
            if f.oneof is not None:
                if f.oneof in seen:
                    raise _Unsure
                seen.add(f.oneof)
        if f.kind == "one":
            if f.message is not None:
                sub = getattr(m, f.name)
                sub.SetInParent()
                _message(value, sub)
            else:
                setattr(m, f.name, f.convert(value))
        elif f.kind == "list":
            if type(value) is not list:
                raise _Unsure
            container = getattr(m, f.name)
            if f.message is not None:
                for item in value:
                    _message(item, container.add())
            else:
                container.extend([f.convert(item) for item in value])
        else:
            if type(value) is not dict:
                raise _Unsure
            container = getattr(m, f.name)
            for k, item in value.items():
                if type(k) is not str or SURROGATE.search(k) or item is None:
                    raise _Unsure
                if f.message is not None:
                    _message(item, container[k])
                else:
                    container[k] = f.convert(item)


# For service.wire.plainbody, which reads the plainest requests straight into runtime types
# with these fields' own converters (the same acceptance as parse_dict's).
Unsure = _Unsure
fields_of = _table


def parse_dict(body: Any, message: Message) -> bool:
    """Fills ``message`` (a fresh one) from ``body`` and returns True, or returns False when
    json_format must read the body (``message`` is then partly filled: discard it)."""
    try:
        _message(body, message)
    except _Unsure:
        return False
    except (ValueError, TypeError, OverflowError):  # a value the message refused
        return False
    return True
