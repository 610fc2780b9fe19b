"""service.wire.jsonparse against its oracle, protobuf's own json_format.ParseDict: on every
message of the explain schema, filled at random and printed as protobuf-JSON (JSON names, proto
names, and mutated values), the fast reader either declines (False) or gives exactly the
message ParseDict gives; ParseDict's refusals are always declined."""

from __future__ import annotations

import copy
import json
import random

import pytest
from google.protobuf import json_format

from service._proto.explain.v1 import explain_pb2 as pb
from service.wire.jsonparse import parse_dict
from tests.unit.test_wire_jsonmap import MESSAGES, fill

ODD = [None, "5", 5.0, 5.5, True, -1, 2**70, float("nan"), "", "Zm9v", "NaN", [], {}, [1],
       {"x": 1}, "\ud800", "IntegratedGradients", 1e39]


def _oracle(body, cls):
    m = cls()
    try:
        json_format.ParseDict(copy.deepcopy(body), m)
    except Exception:
        return None
    return m


def _check(body, cls) -> bool:
    """Whether the fast reader took the body; asserts it agrees with the oracle if so."""
    want = _oracle(body, cls)
    got = cls()
    taken = parse_dict(copy.deepcopy(body), got)
    if taken:
        assert want is not None, f"accepted what json_format refuses: {body!r}"
        assert got == want, body
    return taken


def _mutate(node, rng: random.Random):
    """One random value somewhere in the body replaced by an odd one."""
    if isinstance(node, dict) and node:
        key = rng.choice(sorted(node))
        if rng.random() < 0.4 or not isinstance(node[key], (dict, list)) or not node[key]:
            node[key] = rng.choice(ODD)
        else:
            _mutate(node[key], rng)
    elif isinstance(node, list) and node:
        i = rng.randrange(len(node))
        if isinstance(node[i], (dict, list)) and node[i] and rng.random() < 0.6:
            _mutate(node[i], rng)
        else:
            node[i] = rng.choice(ODD)


@pytest.mark.parametrize("name", MESSAGES)
def test_plain_bodies_are_read_as_json_format_reads_them(name):
    cls = getattr(pb, name)
    rng = random.Random(name)
    taken = 0
    for _ in range(60):
        m = cls()
        fill(m, rng)
        for names in (False, True):
            body = json.loads(json.dumps(json_format.MessageToDict(
                m, preserving_proto_field_name=names)))
            taken += _check(body, cls)
    assert taken > 0  # the fast path is used at all


@pytest.mark.parametrize("name", MESSAGES)
def test_odd_values_are_declined_or_read_the_same(name):
    cls = getattr(pb, name)
    rng = random.Random("odd" + name)
    for _ in range(120):
        m = cls()
        fill(m, rng)
        body = json.loads(json.dumps(json_format.MessageToDict(m)))
        _mutate(body, rng)
        _check(body, cls)


def test_a_bench_request_takes_the_fast_path():
    body = {"inputs": {"tensor": {"shape": ["1", 3], "dtype": "FLOAT32", "data": "AAAAAAAAAAAAAAAA"}},
            "algorithm": "IntegratedGradients", "params": {"n_steps": 8, "x": [1, None, {"a": "b"}]},
            "target": {"index": 0}, "outputs": {"top_features": 5}, "baseline": {"constant": 0}}
    # shape "1" (an int64 as a string) is json_format's job; as numbers the body is plain
    assert not _check(body, pb.ExplainRequest)
    body["inputs"]["tensor"]["shape"] = [1, 3]
    assert _check(body, pb.ExplainRequest)


def test_two_members_of_a_oneof_are_declined():
    assert not _check({"target": {"index": 1, "label": "x"}}, pb.ExplainRequest)
    assert not _check({"algorithm": "A", "algorithm_": "B"}, pb.ExplainRequest)
    assert not _check({"outputs": {"topFeatures": 1, "top_features": 2}}, pb.ExplainRequest)


def _fields(kinds):
    for name in MESSAGES:
        for fd in getattr(pb, name).DESCRIPTOR.fields:
            if fd.cpp_type in kinds and not fd.is_repeated:
                yield getattr(pb, name), fd


def test_integer_and_float_ranges_are_json_formats():
    from google.protobuf.descriptor import FieldDescriptor as F

    kinds = {F.CPPTYPE_INT32, F.CPPTYPE_UINT32, F.CPPTYPE_INT64, F.CPPTYPE_UINT64,
             F.CPPTYPE_FLOAT, F.CPPTYPE_DOUBLE}
    edges = [-1, 0, 2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**32 - 1, 2**32, 2**53, 2**53 + 1,
             2**63 - 1, 2**63, -2**63 - 1, 2**64, 3.4e38, 3.5e38, -1.5, 1e308]
    seen = set()
    for cls, fd in _fields(kinds):
        if (fd.cpp_type, fd.containing_oneof is None) in seen:
            continue
        seen.add((fd.cpp_type, fd.containing_oneof is None))
        for v in edges:
            _check({fd.json_name: v}, cls)
    assert {k for k, _ in seen} >= {F.CPPTYPE_INT32, F.CPPTYPE_UINT32, F.CPPTYPE_DOUBLE}
