"""The failures measured on a real TorchServe (issue "Nothing a client sends can fail another
client's request"), replayed through ExplainHandler.handle() with a stand-in context and through
the executor: each one is now its own request's 4xx naming the field in JSON spelling, with an
ASCII, short status phrase, and never touches its batch-mates."""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import numpy as np
import pytest
import torch
from google.protobuf import json_format

from service import wire
from service.runtime import (
    DeadlineExceeded,
    Executor,
    LimitExceeded,
    Limits,
    Request,
    TensorPayload,
    load_spec,
)
from service.runtime.loader import load_model
from service.runtime.respond import Responder
from tests.fuzz.strategies import b64, png
from tests.serving_fixture import tiny_image, tiny_tabular
from tests.unit.test_handler import Context, handler_module


def tensor(shape=(1, 8, 8), seed=0, dtype=np.float32) -> dict:
    x = np.random.default_rng(seed).random(shape).astype(dtype)
    return json_format.MessageToDict(wire.tensor_to_proto(x))


def valid(seed=0) -> dict:
    return {"inputs": {"tensor": tensor(seed=seed)}, "algorithm": "IntegratedGradients",
            "params": {"n_steps": 8}, "target": {"index": 1}}


def nested(depth: int) -> dict:
    inner: object = 1
    for _ in range(depth):
        inner = [inner]
    return {"params": {"x": inner}}


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    root = tmp_path_factory.mktemp("robust")
    out = {}
    for d in (tiny_image(root), tiny_tabular(root)):
        h = handler_module().ExplainHandler()
        h.initialize(Context(d, [{}]))
        out[h.executor.spec.name] = h
    return out


def answer(h, bodies: list) -> tuple[list, Context]:
    ctx = Context(".", [{"explain": "True"} for _ in bodies])
    replies = h.handle([{"body": b} for b in bodies], ctx)
    return [json.loads(r) for r in replies], ctx


def read(answer: dict):
    return wire.response_from_proto(wire.response_from_json(json.dumps(answer)))


BIG = "A" * (9 * 1024 * 1024)
EXAMPLES = [  # (model, body, status, field)
    ("tab", {"inputs": {"tabular": {"features": {"age": 1e308}}}}, 400,
     "inputs.tabular.features['age']"),
    ("tiny", nested(100), 422, "body"),
    ("tiny", ('{"params": {"x": ' + "[" * 5000 + "]" * 5000 + "}}").encode(), 422, "body"),
    ("tiny", {**valid(), "algorithm": "GradientShap", "params": {"n_samples": "x"}}, 400,
     "params.n_samples"),
    ("tiny", {**valid(), "params": {"n_steps": 1, "method": "riemann_left"}}, 400, "params"),
    ("tiny", {**valid(), "params": {"n_steps": 10**9}}, 422, "params.n_steps"),
    ("tiny", {"inputs": {"tensor": tensor((3, 8, 8))}}, 400, "inputs.tensor.shape"),
    ("tiny", {"inputs": {"tensor": tensor(dtype=np.float64) | {"dtype": "FLOAT32"}}}, 400,
     "inputs.tensor.data"),
    ("tiny", {**valid(), "baseline": {"tensor": tensor((2, 8))}}, 400, "baseline.tensor"),
    ("tiny", {**valid(), "outputs": "all"}, 400, "outputs"),
    ("tiny", {"inputs": [{"tensor": tensor()}]}, 400, "inputs"),
    ("tiny", {**valid(), "algorithm": "é"}, 400, "algorithm"),
    ("tiny", {**valid(), "target": {"topK": 99}}, 422, "target.topK"),
    ("tiny", {**valid(), "outputs": {"topFeatures": 10**6}}, 422, "outputs.topFeatures"),
    ("tiny", {"inputs": {"image": BIG}}, 422, "body"),
    ("tiny", {**valid(), "baseline": {"blur": {"sigma": 1e7}}}, 422, "baseline.blur.sigma"),
    ("tiny", {**valid(), "baseline": {"constant": 1e39}}, 400, "baseline.constant"),
    ("tiny", {"inputs": {"tensor": {"shape": [2**62, 0], "data": ""}}}, 422,
     "inputs.tensor.shape"),
    ("tiny", {"inputs": {"image": b64(png(300, 300))}}, 200, None),  # resized to 8x8
]


@pytest.mark.parametrize("model, body, status, field", EXAMPLES,
                         ids=[f"{i}-{e[3]}" for i, e in enumerate(EXAMPLES)])
def test_each_example_fails_alone_with_its_field(handlers, model, body, status, field):
    h = handlers[model]
    mate = ({"inputs": {"tabular": {"features": {"age": 40.0}}}} if model == "tab"
            else valid(seed=3))
    alone, _ = answer(h, [mate])
    out, ctx = answer(h, [mate, body, mate])
    code, phrase = ctx.status.get(1, (200, ""))
    assert code == status, out[1]
    if field is not None:
        assert out[1]["field"] == field, out[1]
        assert phrase.isascii() and len(phrase) <= 100 and "\n" not in phrase
    ref = read(alone[0])
    for k in (0, 2):  # the batch-mates are answered as if alone (up to batched float sums)
        assert k not in ctx.status
        got = read(out[k])
        assert got.prediction.index == ref.prediction.index
        np.testing.assert_allclose(got.prediction.output, ref.prediction.output, rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(got.explanations[0].attributions,
                                   ref.explanations[0].attributions, rtol=1e-4, atol=1e-6)


def test_status_phrase_is_ascii_for_client_text(handlers):
    out, ctx = answer(handlers["tiny"], [{**valid(), "algorithm": "é" * 500}])
    code, phrase = ctx.status[0]
    assert code == 400 and phrase.isascii() and len(phrase) <= 100
    assert "é" in out[0]["message"] and len(out[0]["message"]) < 1000


def test_a_crash_anywhere_is_that_requests_500_and_is_logged(handlers, monkeypatch, caplog):
    h = handlers["tiny"]
    real = Responder.respond

    def respond(self, item):
        if item.req.request_id == "boom":
            raise RuntimeError("kaputt\u00e9 with a very long text " + "x" * 500)
        return real(self, item)

    monkeypatch.setattr(Responder, "respond", respond)
    with caplog.at_level(logging.ERROR):
        out, ctx = answer(h, [valid(), {**valid(), "requestId": "boom"}])
    assert 0 not in ctx.status
    code, phrase = ctx.status[1]
    assert code == 500 and out[1]["code"] == "MODEL_ERROR"
    assert phrase.isascii() and len(phrase) <= 100
    assert any(r.exc_info and "kaputt" in str(r.exc_info[1]) for r in caplog.records)


def test_the_handler_never_raises(handlers, monkeypatch, caplog):
    h = handlers["tiny"]
    monkeypatch.setattr(h.executor, "run", lambda requests: 1 / 0)
    with caplog.at_level(logging.ERROR):
        out, ctx = answer(h, [valid(), valid()])
    assert [ctx.status[i][0] for i in (0, 1)] == [500, 500]
    assert all(o["code"] == "MODEL_ERROR" for o in out)
    assert any("ZeroDivisionError" in r.getMessage() or r.exc_info for r in caplog.records)


def test_json_body_limit_applies_to_parsed_bodies(handlers):
    out, ctx = answer(handlers["tiny"], [{"inputs": {"tensor": tensor()}, "requestId": BIG}])
    assert ctx.status[0][0] == 422 and "max_body_bytes" in out[0]["message"]


class Slow(torch.nn.Module):
    """A model whose every forward pass takes 20 ms."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x):
        time.sleep(0.02)
        return self.inner(x)


def test_deadline_is_checked_between_engine_passes(tmp_path):
    d = tiny_image(tmp_path)
    spec = load_spec(d / "spec.yaml")
    limits = Limits.build(spec, env={"EXPLAIN_LIMIT_MAX_BATCH_ROWS": "2"})
    inside = dataclasses.replace(spec, layers={n: f"inner.{m}" for n, m in spec.layers.items()})
    ex = Executor(Slow(load_model(spec, d)), inside, d, limits=limits)
    x = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)

    def req(deadline):
        return Request(inputs=TensorPayload(x), explain=True, algorithm="IntegratedGradients",
                       params={"n_steps": 64}, deadline_ms=deadline)

    t0 = time.monotonic()
    late, fine = ex.run([req(150), req(None)])  # 32 passes of 20 ms: well past 150 ms
    assert isinstance(late, DeadlineExceeded) and late.field == "deadline_ms"
    assert wire.public(late).field == "deadlineMs" and wire.http_status(late) == 504
    assert not isinstance(fine, Exception)  # its batch-mate is answered
    t1 = time.monotonic()
    (alone,) = ex.run([req(150)])
    assert isinstance(alone, DeadlineExceeded)
    assert time.monotonic() - t1 < 0.6  # stopped after ~150 ms, not after 32 passes (0.7 s)
    assert t1 - t0 > 0.6


def test_a_pass_above_the_memory_budget_is_refused_before_it_runs(tmp_path):
    d = tiny_image(tmp_path)
    spec = load_spec(d / "spec.yaml")
    model = load_model(spec, d)
    calls = []
    model.register_forward_hook(  # backward-taping passes (baseline outputs are no_grad)
        lambda m, i, o: calls.append(i[0].shape[0]) if torch.is_grad_enabled() else None)
    ex = Executor(model, spec, d, limits=Limits.build(
        spec, env={"EXPLAIN_LIMIT_MAX_PASS_BYTES": "20000"}))
    x = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    refs = np.random.default_rng(1).random((8, 1, 8, 8)).astype(np.float32)
    from service.runtime import BaselineKind, BaselineSpec
    small, big = ex.run([
        Request(inputs=TensorPayload(x), explain=True, algorithm="Saliency"),
        Request(inputs=TensorPayload(x), explain=True, algorithm="DeepLiftShap",
                baseline=BaselineSpec(BaselineKind.TENSOR, array=refs))])
    per_row = ex.budget.row_bytes(torch.zeros(1, 1, 8, 8))
    assert 8 * per_row > 20000 > per_row  # the budget holds one row, not eight
    assert isinstance(big, LimitExceeded) and "max_pass_bytes" in str(big)
    assert wire.http_status(big) == 422 and big.field == "baseline"
    assert not isinstance(small, Exception)
    assert max(calls) == 1  # the refused request never ran its 8-row pass
