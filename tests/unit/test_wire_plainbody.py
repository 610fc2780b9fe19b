"""service.wire.plainbody against its oracle, the general path of ``request_from_dict`` (the
ExplainRequest message, itself checked against json_format in test_wire_jsonparse.py): on
generated bodies in the plain form, mutated ones and tight limits, the plain reader either
declines (None) or gives exactly the Request the general path gives (payload values and dtypes,
params values and types); whatever the general path refuses, it declines."""

from __future__ import annotations

import base64
import copy
import dataclasses
import random

import numpy as np
import pytest

from service.runtime import Limits
from service.runtime.errors import ExplainError
from service.runtime.request import ImagePayload, TabularPayload, TensorPayload
from service.wire import convert
from service.wire.plainbody import plain_request

DTYPES = {"FLOAT32": "<f4", "FLOAT64": "<f8", "FLOAT16": "<f2", "INT64": "<i8", "INT32": "<i4",
          "UINT8": "u1"}
ODD = [None, "5", 5.0, 5.5, True, False, -1, 0, 2**70, 2**53 + 1, float("nan"), float("inf"),
       "", "Zm9v", "Zm9", "NaN", [], {}, [1], {"x": 1}, "\ud800", "FLOAT32", 1e39, -0.0]


def general(body, explain, limits):
    """The oracle: request_from_dict without the plain reader (a Request, or the error)."""
    saved = convert.plain_request
    convert.plain_request = lambda *a: None
    try:
        return convert.request_from_dict(copy.deepcopy(body), explain, limits)
    except ExplainError as e:
        return e
    finally:
        convert.plain_request = saved


def _key(rng: random.Random, json_name: str, proto_name: str) -> str:
    return rng.choice((json_name, proto_name))


def tensor_body(rng: random.Random) -> dict:
    name = rng.choice(sorted(DTYPES))
    shape = [rng.randint(0, 4) for _ in range(rng.randint(0, 3))]
    a = (np.random.default_rng(rng.randrange(2**32)).standard_normal(shape) * 50).astype(
        DTYPES[name])
    data = a.tobytes()
    if rng.random() < 0.1:
        data = data[:-1] if data else b"x"  # a wrong length
    t: dict = {"shape": shape, "data": base64.b64encode(data).decode()}
    if name != "FLOAT32" or rng.random() < 0.5:
        t["dtype"] = name
    if rng.random() < 0.1:
        t["data"] = base64.urlsafe_b64encode(data).decode().rstrip("=")  # also json_format's
    return {"tensor": t}


def inputs_body(rng: random.Random) -> dict:
    kind = rng.random()
    if kind < 0.5:
        return tensor_body(rng)
    if kind < 0.8:
        names = rng.sample(["mean radius", "age", "x1", "é", "zeta", "b b"], rng.randint(0, 5))
        return {"tabular": {"features": {n: rng.choice([rng.uniform(-1e3, 1e3), rng.randint(
            -10, 10), 0.1]) for n in names}}}
    return {"image": base64.b64encode(bytes(rng.randrange(256) for _ in range(
        rng.randint(0, 40)))).decode()}


def body(rng: random.Random) -> dict:
    b: dict = {"inputs": inputs_body(rng)}
    if rng.random() < 0.6:
        b["model"] = rng.choice(["breast_cancer", "digits", ""])
    if rng.random() < 0.5:
        b["algorithm"] = rng.choice(["IntegratedGradients", "Saliency", ""])
    if rng.random() < 0.4:
        b[_key(rng, "requestId", "request_id")] = rng.choice(["r1", "", "ü-2"])
    if rng.random() < 0.3:
        b[_key(rng, "deadlineMs", "deadline_ms")] = rng.choice([0, 1, 5000, 2**32 - 1])
    if rng.random() < 0.2:
        b[_key(rng, "modelVersion", "model_version")] = "1.0"
    if rng.random() < 0.6:
        b["params"] = {k: rng.choice([32, 32.0, 0.5, -3, True, "riemann_trapezoid", 2**53])
                       for k in rng.sample(["n_steps", "method", "stdevs", "seed", "x"],
                                           rng.randint(0, 4))}
    if rng.random() < 0.4:
        b["target"] = rng.choice([{}, {"index": 1}, {"label": "benign"}, {"predicted": True},
                                  {"predicted": False}, {"topK": 2}, {"top_k": 3},
                                  {"index": 0, "label": "x"}])
    if rng.random() < 0.4:
        o = {k: v for k, v in (("topFeatures", rng.choice([0, 5])), ("heatmap", True),
                               ("attributions", False), ("reasons", rng.random() < 0.5),
                               ("metrics", rng.choice([[], ["infidelity"], ["a", "b"]])),
                               ("metricSamples", 4), ("top_features", 3))
             if rng.random() < 0.35}
        b["outputs"] = o
    return b


def mutate(node, rng: random.Random) -> None:
    if isinstance(node, dict) and node:
        key = rng.choice(sorted(node))
        if rng.random() < 0.4 or not isinstance(node[key], (dict, list)) or not node[key]:
            node[key] = rng.choice(ODD)
        else:
            mutate(node[key], rng)
    elif isinstance(node, list) and node:
        i = rng.randrange(len(node))
        node[i] = rng.choice(ODD)


def same(got, want) -> None:
    """Field by field, payload values and dtypes, params values and types."""
    assert type(got.inputs) is type(want.inputs)
    if isinstance(want.inputs, TensorPayload):
        assert got.inputs.array.dtype == want.inputs.array.dtype
        assert got.inputs.array.shape == want.inputs.array.shape
        np.testing.assert_array_equal(got.inputs.array, want.inputs.array)
    elif isinstance(want.inputs, TabularPayload):
        assert got.inputs.features == want.inputs.features
        assert {k: type(v) for k, v in got.inputs.features.items()} == {
            k: type(v) for k, v in want.inputs.features.items()}
    elif isinstance(want.inputs, ImagePayload):
        assert got.inputs.data == want.inputs.data
    assert got.params == want.params
    assert {k: type(v) for k, v in got.params.items()} == {
        k: type(v) for k, v in want.params.items()}
    rest = [f.name for f in dataclasses.fields(want) if f.name not in (
        "inputs", "params", "received_at")]
    assert {n: getattr(got, n) for n in rest} == {n: getattr(want, n) for n in rest}


def check(b: dict, limits: Limits, explain: bool = True) -> bool:
    """Whether the plain reader took the body; asserts it agrees with the oracle if so."""
    want = general(b, explain, limits)
    got = plain_request(copy.deepcopy(b), explain, limits)
    if got is None:
        return False
    assert not isinstance(want, ExplainError), f"took what the general path refuses: {b!r}"
    same(got, want)
    return True


def test_plain_bodies_are_read_as_the_general_path_reads_them():
    rng = random.Random(1)
    limits = Limits()
    taken = sum(check(body(rng), limits, explain=rng.random() < 0.5) for _ in range(600))
    assert taken > 300  # the plain reader is used for most of them


def test_odd_values_are_declined_or_read_the_same():
    rng = random.Random(2)
    limits = Limits()
    for _ in range(1500):
        b = body(rng)
        for _ in range(rng.randint(1, 2)):
            mutate(b, rng)
        check(b, limits)


@pytest.mark.parametrize("limit", ["max_body_bytes", "max_json_depth", "max_tensor_elements"])
def test_limits_decide_as_on_the_general_path(limit):
    rng = random.Random(limit)
    for _ in range(400):
        b = body(rng)
        value = {"max_body_bytes": rng.randint(20, 400), "max_json_depth": rng.randint(1, 6),
                 "max_tensor_elements": rng.randint(0, 20)}[limit]
        check(b, dataclasses.replace(Limits(), **{limit: value}))


def test_the_bench_body_is_plain_and_other_forms_are_not():
    x = np.arange(30, dtype=np.float32)
    plain = {"inputs": {"tensor": {"shape": [30], "dtype": "FLOAT32",
                                   "data": base64.b64encode(x.tobytes()).decode()}},
             "algorithm": "IntegratedGradients", "params": {"n_steps": 32}}
    got = plain_request(plain, True, Limits())
    assert got is not None and got.params == {"n_steps": 32} and type(got.params["n_steps"]) is int
    np.testing.assert_array_equal(got.inputs.array, x)
    for other in ({**plain, "noiseTunnel": {"type": "smoothgrad"}}, {**plain, "layer": {}},
                  {**plain, "baseline": {"zeros": {}}}, {"inputs": {"text": "hello"}},
                  {**plain, "params": {"n_steps": [1]}}, {**plain, "params": {"n": None}}):
        assert plain_request(other, True, Limits()) is None
