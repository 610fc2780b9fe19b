"""Streamed text explanations (``stream_tokens``) in process: the runtime hands every part to its
callback before the complete answer, the parts concatenated equal the unstreamed answer's
matrix, the deadline is checked between parts, the parts cap and the streamed perturbation cost
are enforced naming their field, and the handler sends parts for one request of a batch alone
(its batch-mates answered as if alone), as newline-delimited JSON over REST or ExplainReply
messages on the gateway's path."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime import Limits, Request, load_spec
from service.runtime.errors import DeadlineExceeded, InvalidInput, LimitExceeded
from service.runtime.request import TemplatePayload, TextPayload
from service.runtime.text import TextExecutor
from tests.serving_fixture import tiny_image
from tests.unit.test_handler import Context, handler_module
from tests.unit.test_text_serving import TEMPLATE, VALUES, engine, lm_dir  # noqa: F401

ANSWER = "paris . alice works as a doctor ."   # 8 answer tokens
N_OUT = 8


@pytest.fixture(scope="module")
def executor(lm_dir, engine):  # noqa: F811
    model, _ = engine
    spec = load_spec(lm_dir / "spec.yaml")
    return TextExecutor(model, spec, lm_dir, limits=Limits.build(spec, env={}))


def streamed(ex, **kw):
    """(parts, outcome) of one streamed request."""
    parts = []
    [out] = ex.run([Request(explain=True, stream_tokens=True, **kw)],
                   lambda pos, part: parts.append((pos, part)))
    assert all(pos == 0 for pos, _ in parts)
    return [p for _, p in parts], out


def prompt(kind):
    if kind == "template":
        return TemplatePayload(TEMPLATE, VALUES, {"other": "<unk>", "country": "<unk>"})
    return TextPayload("in spain alice works as a")


CASES = [("FeatureAblation", "template", {}), ("ShapleyValueSampling", "template",
                                               {"n_samples": 3, "seed": 2}),
         ("LayerIntegratedGradients", "text", {"n_steps": 8})]


@pytest.mark.parametrize("algorithm,kind,params", CASES)
@pytest.mark.parametrize("size", [0, 1, 3, N_OUT + 4])
def test_parts_concatenated_equal_the_unstreamed_answer(executor, algorithm, kind, params, size):
    common = dict(inputs=prompt(kind), algorithm=algorithm, params=params, target_text=ANSWER)
    [plain] = executor.run([Request(explain=True, **common)])
    parts, final = streamed(executor, stream_part_tokens=size, **common)
    assert not isinstance(final, Exception), final
    per = size or 1           # 0: one token per part (8 tokens fit the 16-part cap)
    starts = list(range(0, N_OUT, min(per, N_OUT)))
    # every part but the last is sent before the answer; the answer carries the last rows
    assert [p.text.token_row_offset for p in parts] == starts[:-1]
    assert [p.part_index for p in parts] == list(range(len(parts)))
    assert all(p.partial and p.request_id == final.request_id for p in parts)
    assert all(p.text.output_tokens == plain.text.output_tokens for p in parts)
    assert all(p.text.seq_attr.size == 0 and p.text.heatmap_png is None for p in parts)
    assert not final.partial and final.part_index == len(parts)
    # the parts' rows: the answer's up to float32 rounding (computed on a prefix of it)
    width = plain.text.token_attr.shape[1]
    rows = np.concatenate([p.text.token_attr for p in parts]) if parts else np.zeros((0, width))
    np.testing.assert_allclose(rows, plain.text.token_attr[:len(rows)], rtol=1e-5, atol=1e-6)
    # the final answer: the unstreamed one
    np.testing.assert_allclose(final.text.token_attr, plain.text.token_attr, rtol=1e-12)
    np.testing.assert_allclose(final.text.seq_attr, plain.text.seq_attr, rtol=1e-12)
    assert final.text.token_row_offset == 0 and final.prediction.label == plain.prediction.label


def test_lime_streams_its_final_answer_only(executor):
    common = dict(inputs=prompt("template"), algorithm="Lime", params={"n_samples": 20,
                                                                       "seed": 1})
    [plain] = executor.run([Request(explain=True, **common)])
    parts, final = streamed(executor, **common)
    assert parts == [] and final.text.token_attr is None and final.part_index == 0
    np.testing.assert_allclose(final.text.seq_attr, plain.text.seq_attr, rtol=1e-12)


def test_the_default_part_size_keeps_within_the_parts_cap(lm_dir, engine):  # noqa: F811
    model, _ = engine
    spec = load_spec(lm_dir / "spec.yaml")
    ex = TextExecutor(model, spec, lm_dir, limits=Limits.build(spec, env={
        "EXPLAIN_LIMIT_MAX_STREAM_PARTS": "3"}))
    parts, final = streamed(ex, inputs=prompt("template"), target_text=ANSWER)
    assert len(parts) + 1 == math.ceil(N_OUT / math.ceil(N_OUT / 3)) <= 3
    e = streamed(ex, inputs=prompt("template"), target_text=ANSWER, stream_part_tokens=2)[1]
    assert isinstance(e, LimitExceeded) and e.field == "stream_part_tokens"
    assert "max_stream_parts" in str(e)


def test_streamed_perturbations_count_every_part(lm_dir, engine):  # noqa: F811
    """FeatureAblation over 2 slots runs 3 prompts a part: 8 parts are 24 > 20 prompts."""
    model, _ = engine
    spec = load_spec(lm_dir / "spec.yaml")
    ex = TextExecutor(model, spec, lm_dir, limits=Limits.build(spec, env={
        "EXPLAIN_LIMIT_MAX_PERTURBATIONS": "20"}))
    e = streamed(ex, inputs=prompt("template"), target_text=ANSWER, stream_part_tokens=1)[1]
    assert isinstance(e, LimitExceeded) and e.field == "stream_part_tokens"
    parts, final = streamed(ex, inputs=prompt("template"), target_text=ANSWER)
    assert not isinstance(final, Exception) and (len(parts) + 1) * 3 <= 20


def test_a_deadline_passing_mid_stream_ends_the_request_with_its_error(executor, monkeypatch):
    clock = {"t": 1000.0}
    monkeypatch.setattr("service.runtime.text.time.monotonic", lambda: clock["t"])
    monkeypatch.setattr("service.runtime.work.time.monotonic", lambda: clock["t"])
    parts = []

    def on_part(pos, part):
        parts.append(part)
        clock["t"] += 10.0            # the client's deadline passes after the first part

    req = Request(explain=True, stream_tokens=True, stream_part_tokens=2,
                  inputs=prompt("template"), target_text=ANSWER, deadline_ms=5_000,
                  received_at=1000.0)
    [out] = executor.run([req], on_part)
    assert len(parts) == 1 and isinstance(out, DeadlineExceeded) and out.field == "deadline_ms"


@pytest.mark.parametrize("kw,field", [
    (dict(stream_part_tokens=2), "stream_part_tokens"),            # without stream_tokens
    (dict(stream_tokens=True, explain=False), "stream_tokens"),     # a prediction
    (dict(stream_tokens=True, outputs=None), "stream_tokens"),      # attributions: false
])
def test_bad_streaming_requests_name_their_field(executor, kw, field):
    from service.runtime.request import OutputOptions

    kw = dict(kw)
    explain = kw.pop("explain", True)
    if "outputs" in kw:
        kw["outputs"] = OutputOptions(attributions=False)
    [e] = executor.run([Request(explain=explain, inputs=prompt("text"), **kw)],
                       lambda pos, part: None)
    assert isinstance(e, InvalidInput) and e.field == field


def test_a_caller_that_cannot_stream_is_refused(executor):
    [e] = executor.run([Request(explain=True, stream_tokens=True, inputs=prompt("text"))])
    assert isinstance(e, InvalidInput) and e.field == "stream_tokens"


# ---- the handler


@pytest.fixture(scope="module")
def lm_handler(lm_dir):  # noqa: F811
    h = handler_module().ExplainHandler()
    h.initialize(Context(lm_dir, [{}]))
    return h


def handle(h, lm_dir, rows, headers):  # noqa: F811
    """``handle`` with TorchServe's intermediate responses recorded: (replies, ctx, sent)."""
    sent: list[tuple[int, object]] = []
    h._handle.__globals__["send_part"] = lambda ctx, idx, payload: sent.append((idx, payload))
    ctx = Context(lm_dir, headers)
    return h.handle(rows, ctx), ctx, sent


def _body(**kw):
    return {"inputs": {"template": {"template": TEMPLATE, "values": VALUES}},
            "targetText": ANSWER, **kw}


def test_rest_parts_are_json_lines_for_one_request_of_the_batch(lm_handler, lm_dir):  # noqa: F811
    rows = [{"body": json.dumps(_body(streamTokens=True, streamPartTokens=3)).encode()},
            {"body": json.dumps(_body()).encode()}]
    replies, ctx, sent = handle(lm_handler, lm_dir, rows, [{"explain": "true"}] * 2)
    assert [idx for idx, _ in sent] == [0, 0]            # ceil(8 / 3) = 3 parts: 2 before
    lines = [json.loads(p) for _, p in sent]
    assert all(p.endswith("\n") and p.count("\n") == 1 for _, p in sent)
    assert [ln["text"]["tokenRowOffset"] for ln in lines] == [0, 3]
    assert [ln["partIndex"] for ln in lines] == [0, 1] and all(ln["partial"] for ln in lines)
    final, alone = json.loads(replies[0]), json.loads(replies[1])
    assert replies[0].endswith("\n") and final["partIndex"] == 2 and "partial" not in alone
    assert ctx.status == {}
    # the batch-mate is answered as if alone
    [solo], _, none = handle(lm_handler, lm_dir, [{"body": json.dumps(_body()).encode()}],
                             [{"explain": "true"}])
    assert none == [] and json.loads(solo)["text"] == alone["text"]
    got = np.concatenate([wire.tensor_from_proto(wire.response_from_json(p).text.token_attr,
                                                 "t") for _, p in sent])   # (6, 2)
    want = wire.tensor_from_proto(wire.response_from_json(replies[0]).text.token_attr, "t")
    np.testing.assert_allclose(got, want[:6], rtol=1e-5, atol=1e-6)   # float32 rounding


def test_gateway_parts_need_the_stream_marker(lm_handler, lm_dir):  # noqa: F811
    req = pb.ExplainRequest(model="tinylm", target_text=ANSWER, stream_tokens=True,
                            stream_part_tokens=4)
    req.inputs.text = "in spain alice works as a"
    row = {"explain_request": req.SerializeToString(), "explain": b"true"}
    replies, _, sent = handle(lm_handler, lm_dir, [row], [{}])
    reply = pb.ExplainReply.FromString(replies[0])
    assert sent == [] and reply.error.field == "streamTokens" and "cannot stream" in \
        reply.error.message                     # a unary Predictions call must not stream
    # a refused request on the streaming call gets the header too
    bad = pb.ExplainRequest(model="tinylm", stream_tokens=True, stream_part_tokens=1,
                            target_text=ANSWER, algorithm="Saliency")
    bad.inputs.text = "in spain"
    replies, ctx, sent = handle(lm_handler, lm_dir, [{"explain_request": bad.SerializeToString(),
                                                      "explain": b"true", "stream": b"true"}],
                              [{}])
    assert sent == [] and ctx.response_headers == {0: {"ts_stream_next": "false"}}
    assert pb.ExplainReply.FromString(replies[0]).error.field == "algorithm"
    replies, ctx, sent = handle(lm_handler, lm_dir, [{**row, "stream": b"true"}], [{}])
    # TorchServe's StreamPredictions needs the header on the final answer (else: worker died)
    assert ctx.response_headers == {0: {"ts_stream_next": "false"}}
    [(idx, part)] = sent
    part_reply = pb.ExplainReply.FromString(part)
    final = pb.ExplainReply.FromString(replies[0]).response
    assert part_reply.response.partial and list(part_reply.response.text.token_attr.shape) == \
        [4, 6]
    assert not final.partial and final.part_index == 1 and final.text.token_row_offset == 0


def test_rest_protobuf_answers_do_not_stream(lm_handler, lm_dir):  # noqa: F811
    rows = [{"body": json.dumps(_body(streamTokens=True)).encode()}]
    headers = [{"explain": "true", "Accept": "application/x-protobuf"}]
    ctx = Context(lm_dir, headers)
    ctx.get_all_request_header = lambda i: headers[i]
    lm_handler._handle.__globals__["send_part"] = lambda *a: pytest.fail("sent a part")
    [reply] = lm_handler.handle(rows, ctx)
    assert ctx.status[0][0] == 400
    assert pb.ExplainResponse.FromString(reply).error.field == "streamTokens"


def test_a_classifier_refuses_stream_tokens(tmp_path):
    d = tiny_image(tmp_path)
    h = handler_module().ExplainHandler()
    h.initialize(Context(d, [{}]))
    x = np.zeros((1, 8, 8), np.float32)
    from google.protobuf import json_format

    body = {"inputs": {"tensor": json_format.MessageToDict(wire.tensor_to_proto(x))},
            "streamTokens": True}
    replies, ctx, sent = handle(h, d, [{"body": json.dumps(body).encode()}],
                                [{"explain": "true"}])
    assert sent == [] and ctx.status[0][0] == 400
    assert json.loads(replies[0])["field"] == "streamTokens"
