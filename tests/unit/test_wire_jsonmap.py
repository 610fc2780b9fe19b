"""service.wire.jsonmap against its oracle, protobuf's own json_format: equal dicts with the
same key order for every message of the explain schema, filled at random (every field kind:
optional, oneof, repeated, map, enum, bytes, int64, NaN / +-Infinity / -0.0 floats)."""

from __future__ import annotations

import json
import math
import random

import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor as F

from service._proto.explain.v1 import explain_pb2 as pb
from service.wire.jsonmap import message_to_dict

FLOATS = [0.0, -0.0, 1.5, -2.25, 1e300, 3.4e38, 1e-7, math.nan, math.inf, -math.inf, 0.1]


def _value(fd, rng: random.Random, depth: int):
    if fd.cpp_type == F.CPPTYPE_ENUM:
        return rng.choice([v.number for v in fd.enum_type.values])
    if fd.type == F.TYPE_BYTES:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(6)))
    if fd.cpp_type == F.CPPTYPE_STRING:
        return rng.choice(["", "a", "é\u00e9 x", "0"])
    if fd.cpp_type == F.CPPTYPE_BOOL:
        return rng.random() < 0.5
    if fd.cpp_type in (F.CPPTYPE_DOUBLE, F.CPPTYPE_FLOAT):
        v = rng.choice(FLOATS)
        return min(v, 3.0e38) if fd.cpp_type == F.CPPTYPE_FLOAT and math.isfinite(v) else v
    if fd.cpp_type in (F.CPPTYPE_UINT32, F.CPPTYPE_UINT64):
        return rng.choice([0, 1, 2**31 + 5 if fd.cpp_type == F.CPPTYPE_UINT64 else 7])
    if fd.cpp_type == F.CPPTYPE_INT64:
        return rng.choice([0, -3, 2**53 + 1])
    return rng.choice([0, -1, 42])


def fill(m, rng: random.Random, depth: int = 0) -> None:
    """Sets a random subset of m's fields (each oneof gets at most one member)."""
    for fd in m.DESCRIPTOR.fields:
        if rng.random() < 0.35:
            continue
        if fd.containing_oneof is not None and m.WhichOneof(fd.containing_oneof.name):
            continue
        sub = fd.message_type
        if sub is not None and sub.GetOptions().map_entry:
            container = getattr(m, fd.name)
            key_fd, val_fd = sub.fields_by_name["key"], sub.fields_by_name["value"]
            for _ in range(rng.randrange(3)):
                key = _value(key_fd, rng, depth)
                if val_fd.message_type is not None:
                    if depth < 3:
                        fill(container[key], rng, depth + 1)
                else:
                    container[key] = _value(val_fd, rng, depth)
        elif sub is not None:
            if sub.full_name.startswith("google.protobuf.") or depth >= 3:
                continue
            if fd.is_repeated:
                for _ in range(rng.randrange(3)):
                    fill(getattr(m, fd.name).add(), rng, depth + 1)
            else:
                getattr(m, fd.name).SetInParent()
                fill(getattr(m, fd.name), rng, depth + 1)
        elif fd.is_repeated:
            getattr(m, fd.name).extend(_value(fd, rng, depth) for _ in range(rng.randrange(3)))
        else:
            setattr(m, fd.name, _value(fd, rng, depth))


MESSAGES = sorted(pb.DESCRIPTOR.message_types_by_name)


def _same(m) -> None:
    want = json_format.MessageToDict(m, always_print_fields_with_no_presence=True)
    got = message_to_dict(m)
    # json.dumps compares values (NaN != NaN as floats, but their JSON spelling is equal) and
    # the key order the answer is printed in
    assert json.dumps(got) == json.dumps(want)


@pytest.mark.parametrize("name", MESSAGES)
def test_random_messages_match_json_format(name):
    cls = getattr(pb, name)
    rng = random.Random(name)
    for _ in range(60):
        m = cls()
        fill(m, rng)
        _same(m)


@pytest.mark.parametrize("name", MESSAGES)
def test_empty_messages_match_json_format(name):
    _same(getattr(pb, name)())


def test_params_struct_goes_through_json_format():
    m = pb.ExplainRequest(model="m")
    m.params.update({"n_steps": 8, "nested": {"a": [1, "x", None, True]}})
    _same(m)
    assert message_to_dict(m)["params"] == {"n_steps": 8.0, "nested": {"a": [1.0, "x", None,
                                                                             True]}}


def test_negative_zero_keeps_its_sign():
    m = pb.Feature(name="f", value=-0.0)
    _same(m)
    assert math.copysign(1.0, message_to_dict(m)["value"]) < 0
