"""Property-based fuzzing of the serving path, in process: hypothesis generates ExplainRequests
(every field valid, mutated or of the wrong type), raw bodies and serialized protobufs, and
drives them through wire + a real Executor (the tiny models of tests/serving_fixture.py, and the
bundled models when `make models` has built them) and through ExplainHandler.handle() with a
stand-in TorchServe context.

Properties: no exception escapes; every refusal is an ExplainError that names a field in the
request's JSON spelling, never a 500; status phrases are ASCII and short; every accepted request
gets a finite, well-shaped answer; a fuzzed request batched with valid ones never changes or
fails their answers (compared with each valid request answered alone).

About 10,500 requests per run (CASES below; each hypothesis example is a batch of several)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime import (
    Executor,
    ExplainError,
    Limits,
    ModelError,
    Response,
    default_table,
    load_spec,
)
from service.runtime.loader import load_model
from tests.fuzz import strategies as S
from tests.serving_fixture import tiny_image, tiny_tabular
from tests.unit.test_handler import Context, handler_module

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUNDLED = [ROOT / "model_store" / "build" / n for n in ("breast_cancer", "recommender", "digits")]
# Limits low enough that a fuzzed request is cheap on a 2-core machine (the refusals above them
# are part of what is fuzzed).
FUZZ_LIMITS = {"EXPLAIN_LIMIT_MAX_N_STEPS": "16", "EXPLAIN_LIMIT_MAX_N_SAMPLES": "8",
               "EXPLAIN_LIMIT_MAX_NT_SAMPLES": "4", "EXPLAIN_LIMIT_MAX_TOP_K": "3",
               "EXPLAIN_LIMIT_MAX_IMAGE_PIXELS": "4096", "EXPLAIN_LIMIT_MAX_BODY_BYTES": "65536",
               "EXPLAIN_LIMIT_MAX_REFERENCE_ROWS": "32"}
# (hypothesis examples, requests per example)
CASES = {"requests": (750, 8), "raw": (300, 8), "isolation": (150, 4), "handler": (250, 6)}
SCALE = float(os.environ.get("EXPLAIN_FUZZ_SCALE", "1"))  # < 1 for a quick local run
CASES = {k: (max(1, int(n * SCALE)), per) for k, (n, per) in CASES.items()}
SETTINGS = dict(deadline=None, database=None, derandomize=False,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.filter_too_much, HealthCheck.large_base_example])
# Seeded generators: shrinking a seed means nothing, the failing request is in the message.
SEEDED = dict(SETTINGS, phases=(Phase.explicit, Phase.generate))
COUNT: dict[str, int] = {}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models on a shared 2-core machine: intra-op threads only add contention (5x)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _executor(d: pathlib.Path) -> Executor:
    spec = load_spec(d / "spec.yaml")
    limits = Limits.build(spec, env=FUZZ_LIMITS)
    # the spec's defaults lowered to the fuzz limits (a default above a limit fails at load)
    table = default_table()
    defaults = {a: {k: min(v, getattr(limits, p.limit)) if (p := table[a].param(k)) and p.limit
                    else v for k, v in given.items()} for a, given in spec.default_params.items()}
    spec = dataclasses.replace(spec, default_params=defaults)
    return Executor(load_model(spec, d), spec, d, limits=limits, table=table)


@pytest.fixture(scope="module")
def executors(tmp_path_factory) -> list[Executor]:
    root = tmp_path_factory.mktemp("fuzz")
    dirs = [tiny_image(root), tiny_tabular(root)] + [d for d in BUNDLED if d.is_dir()]
    return [_executor(d) for d in dirs]


def pick(c: S.Choose, executors: list[Executor]) -> Executor:
    """A tiny model three times in four; a bundled one (slower: 28x28 images, wide MLPs) the
    fourth, when built."""
    tiny, bundled = executors[:2], executors[2:]
    return c.one(bundled) if bundled and c.chance(4) else c.one(tiny)


def check_refusal(e: ExplainError) -> None:
    assert isinstance(e, ExplainError), type(e)
    assert not isinstance(e, ModelError), f"500 on a client's request: {e}"
    shown = wire.public(e)
    assert shown.field, f"no field: {e}"
    assert wire.json_field(shown.field) == shown.field, shown.field  # the JSON spelling
    phrase = wire.status_phrase(e)
    assert phrase.isascii() and len(phrase) <= 100 and "\n" not in phrase
    body = json.loads(wire.error_to_json(e))
    assert body["field"] == shown.field and wire.http_status(e) in (400, 422, 504)


def check_response(r: Response, ex: Executor) -> None:
    shape = tuple(ex.spec.input_shape)
    p = r.prediction
    assert np.isfinite(p.output).all() and math.isfinite(p.probability)
    assert 0 <= p.index < p.output.shape[0]
    for e in r.explanations:
        assert math.isfinite(e.instance_output) and math.isfinite(e.baseline_output)
        assert e.approximation_error is None or math.isfinite(e.approximation_error)
        if e.attributions is not None:
            want = (ex.layers[e.layer].shape(e.attributed_to == "layer_input")
                    if e.attributed_to.startswith("layer") else shape)
            assert tuple(e.attributions.shape) == want and np.isfinite(e.attributions).all()
        assert all(math.isfinite(f.attribution) and math.isfinite(f.value)
                   for f in e.top_features)
    text = wire.response_to_json(r)
    back = wire.response_from_proto(wire.response_from_json(text))
    assert len(back.explanations) == len(r.explanations)


def check(outcome: object, ex: Executor) -> None:
    if isinstance(outcome, ExplainError):
        check_refusal(outcome)
    else:
        assert isinstance(outcome, Response), type(outcome)
        check_response(outcome, ex)


def decode(body: object, explain: bool, ex: Executor) -> object:
    try:
        return wire.request_from_body(body, explain, limits=ex.limits)  # type: ignore[arg-type]
    except ExplainError as e:
        return e


def count(name: str, n: int) -> None:
    COUNT[name] = COUNT.get(name, 0) + n


SEEDS = st.integers(0, 2**32 - 1)


def test_fuzzed_requests_through_the_executor(executors):
    """Batches of fuzzed requests (hypothesis draws the seeds; a seeded generator, the
    requests) through wire decoding and a real Executor."""
    n_examples, per = CASES["requests"]

    @settings(max_examples=n_examples, **SEEDED)
    @given(SEEDS)
    def run(seed):
        c = S.RandomChoose(seed)
        ex = pick(c, executors)
        rows = [(S.explain_request(c, ex.spec), not c.chance(5)) for _ in range(per)]
        outcomes = ex.run([decode(body, explain, ex) for body, explain in rows])
        assert len(outcomes) == len(rows)
        for (body, _), o in zip(rows, outcomes):
            try:
                check(o, ex)
            except AssertionError as e:
                raise AssertionError(f"{e}\nrequest: {json.dumps(body)[:2000]}") from None
        count("requests", len(rows))

    run()
    assert COUNT["requests"] >= n_examples * per


def test_fuzzed_raw_bodies(executors):
    n_examples, per = CASES["raw"]

    @settings(max_examples=n_examples, **SEEDED)
    @given(SEEDS)
    def run(seed):
        c = S.RandomChoose(seed)
        ex = pick(c, executors)
        bodies = [S.raw_body(c, ex.spec) for _ in range(per)]
        outcomes = ex.run([decode(bytearray(raw), True, ex) for raw in bodies])
        for raw, o in zip(bodies, outcomes):
            try:
                check(o, ex)
            except AssertionError as e:
                raise AssertionError(f"{e}\nbody: {raw[:2000]!r}") from None
        count("raw", per)

    run()
    assert COUNT["raw"] >= n_examples * per


def _same(a: object, b: object) -> None:
    assert isinstance(a, Response) and isinstance(b, Response), (a, b)
    assert a.prediction.index == b.prediction.index
    # Batched float32 kernels sum in another order: differences of a few ulps of the largest
    # value (a 28x28 CNN's logits reach ~15), nothing a batch-mate's content could cause.
    scale = float(np.abs(b.prediction.output).max(initial=1.0))
    np.testing.assert_allclose(a.prediction.output, b.prediction.output, rtol=1e-5,
                               atol=1e-6 * scale)
    assert [e.target for e in a.explanations] == [e.target for e in b.explanations]
    for ea, eb in zip(a.explanations, b.explanations):
        scale = float(np.abs(eb.attributions).max(initial=1e-3))
        np.testing.assert_allclose(ea.attributions, eb.attributions, rtol=1e-4,
                                   atol=1e-5 * scale)


def test_a_fuzzed_request_never_changes_its_batch_mates(executors):
    """Hypothesis-drawn (shrinkable) batches of two valid and two fuzzed requests in any order:
    the valid ones get the answer they get alone."""
    alone: dict[tuple[int, str], object] = {}
    n_examples, per = CASES["isolation"]

    @settings(max_examples=n_examples, **SETTINGS)
    @given(st.data())
    def run(data):
        k = data.draw(st.integers(0, len(executors) - 1))
        ex = executors[k]
        valid = [data.draw(S.strategy(S.valid_request, ex.spec)) for _ in range(2)]
        fuzzed = [data.draw(S.strategy(S.explain_request, ex.spec)) for _ in range(per - 2)]
        order = data.draw(st.permutations(range(per)))
        rows = [(valid + fuzzed)[i] for i in order]
        outcomes = ex.run([decode(b, True, ex) for b in rows])
        for i, o in zip(order, outcomes):
            check(o, ex)
            if i < 2:
                key = (k, json.dumps(valid[i], sort_keys=True))
                if key not in alone:
                    alone[key] = ex.run([decode(valid[i], True, ex)])[0]
                _same(o, alone[key])
        count("isolation", len(rows))

    run()
    assert COUNT["isolation"] >= n_examples * per


@pytest.fixture(scope="module")
def handlers(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz_h")
    out = []
    with pytest.MonkeyPatch.context() as mp:  # the handler reads its limits at initialize
        for name, value in FUZZ_LIMITS.items():
            mp.setenv(name, value)
        for d in (tiny_image(root), tiny_tabular(root)):
            h = handler_module().ExplainHandler()
            h.initialize(Context(d, [{}]))
            assert h.executor.limits == Limits.build(h.executor.spec, env=FUZZ_LIMITS)
            out.append(h)
    return out


def handler_row(c: S.Choose, spec) -> tuple[dict, dict]:
    """One TorchServe request row and its headers: a parsed JSON body (application/json), raw
    bytes, a serialized ExplainRequest (maybe mutated), the spec marker, or an odd row."""
    kind = c.one(["dict", "bytes", "serialized", "spec", "odd"])
    header = {"explain": c.one(["True", "False", "é", None, "true"])}
    if kind == "dict":
        return {"body": S.explain_request(c, spec)}, header
    if kind == "bytes":
        return {"body": bytearray(S.raw_body(c, spec))}, header
    if kind == "serialized":
        data = S.serialized(S.explain_request(c, spec))
        if data is None or c.chance(4):
            data = S.mutate(c, data or b"\x0a\x05tiny", 3)
        return {"explain_request": bytearray(data), "explain": b"true"}, header
    if kind == "spec":
        return {"spec": b"1"}, header
    return c.one([{}, {"data": None}, {"body": None}, {"x": "y"}, {"body": 5},
                  {"body": [1]}]), header


def test_fuzzed_batches_through_the_handler(handlers):
    """Whole batches through ExplainHandler.handle() with a stand-in TorchServe context."""
    n_examples, per = CASES["handler"]

    @settings(max_examples=n_examples, **SEEDED)
    @given(SEEDS)
    def run(seed):
        c = S.RandomChoose(seed)
        h = c.one(handlers)
        rows, headers = zip(*[handler_row(c, h.executor.spec) for _ in range(per)])
        ctx = Context(pathlib.Path("."), list(headers))
        replies = h.handle(list(rows), ctx)
        assert len(replies) == per
        for idx, reply in enumerate(replies):
            code, phrase = ctx.status.get(idx, (200, "OK"))
            assert phrase.isascii() and len(phrase) <= 100
            assert code in (200, 400, 422, 504), (code, phrase, rows[idx])
            if ctx.content_types[idx] == "application/x-protobuf":
                m = pb.ExplainReply.FromString(reply)
                which = m.WhichOneof("result")
                assert which is not None
                assert (which == "error") == (code != 200)
                if which == "error":
                    assert m.error.field and m.error.http_status == code
            else:
                body = json.loads(reply)
                assert ("code" in body and "field" in body) == (code != 200)
        count("handler", per)

    run()
    assert COUNT["handler"] >= n_examples * per
