"""Streamed text explanations (``streamTokens``) through the real TorchServe and gateway: parts
arrive in order over ExplainStream (TorchServe's StreamPredictions) and over REST (chunked,
newline-delimited JSON), the final answer equals the unstreamed answer of the same request,
plain requests in the same stream and the same TorchServe batch are answered as if alone, and
bad streaming requests are refused naming their field."""

from __future__ import annotations

import json

import numpy as np
import pytest
import requests

from service.client import ExplainClient, ExplainClientError, build_request

pytestmark = pytest.mark.e2e
TEMPLATE = "after a trip to {other} i think the capital of {country} is"
VALUES = {"other": "spain", "country": "france"}
ANSWER = "paris . alice works as a doctor ."          # 8 answer tokens
N_OUT = 8


@pytest.fixture(scope="module")
def client(server):
    with ExplainClient(f"127.0.0.1:{server.ports['gateway']}", token=server.key("inference"),
                       timeout=120) as c:
        yield c


def kwargs(algorithm: str) -> dict:
    if algorithm == "LayerIntegratedGradients":
        return dict(text="in spain alice works as a", algorithm=algorithm,
                    params={"n_steps": 8}, target_text=ANSWER)
    return dict(template=TEMPLATE, values=VALUES, template_baselines={"other": "<unk>",
                                                                      "country": "<unk>"},
                algorithm=algorithm, target_text=ANSWER)


def check_stream(parts, plain, size: int) -> None:
    """In order, partials then one complete final equal to the unstreamed answer."""
    *partials, final = parts
    assert [p.part_index for p in parts] == list(range(len(parts)))
    assert [p.partial for p in parts] == [True] * len(partials) + [False]
    assert [p.text.token_row_offset for p in partials] == list(range(0, N_OUT, size))[:-1]
    assert all(p.text.token_attr.shape == (size, plain.text.token_attr.shape[1])
               for p in partials)
    np.testing.assert_allclose(final.text.token_attr, plain.text.token_attr, rtol=1e-5)
    np.testing.assert_allclose(final.text.seq_attr, plain.text.seq_attr, rtol=1e-5)
    assert final.text.output_tokens == plain.text.output_tokens
    assert final.text.token_row_offset == 0
    if partials:  # the parts' rows are the answer's (float32 rounding: run on a prefix)
        rows = np.concatenate([p.text.token_attr for p in partials])
        np.testing.assert_allclose(rows, plain.text.token_attr[:len(rows)], rtol=1e-5,
                                   atol=1e-6)


@pytest.mark.parametrize("algorithm", ["FeatureAblation", "LayerIntegratedGradients"])
@pytest.mark.parametrize("size", [1, 3])
def test_grpc_parts_arrive_in_order_and_the_final_is_the_answer(client, algorithm, size):
    plain = client.explain("tinylm", **kwargs(algorithm))
    parts = list(client.explain_stream("tinylm", part_tokens=size, **kwargs(algorithm)))
    assert len(parts) == -(-N_OUT // size)
    check_stream(parts, plain, size)
    assert all(p.request_id == parts[-1].request_id for p in parts)


def test_plain_requests_in_the_same_stream_and_batch_are_answered_as_if_alone(client):
    """One ExplainStream: a slow plain request occupies the worker while a streamed one and
    plain ones queue up behind it, so TorchServe batches them together (batch size 8)."""
    slow = build_request("tinylm", request_id="slow", algorithm="ShapleyValueSampling",
                         params={"n_samples": 40, "seed": 1}, **{
                             k: v for k, v in kwargs("FeatureAblation").items()
                             if k != "algorithm"})
    streamed = build_request("tinylm", request_id="s", stream_tokens=True,
                             stream_part_tokens=2, **kwargs("FeatureAblation"))
    plains = [build_request("tinylm", request_id=f"u{n}", **kwargs(a))
              for n, a in enumerate(["FeatureAblation", "LayerIntegratedGradients"] * 2)]
    answers = client.explain_many([slow, streamed, *plains])
    by_id: dict[str, list] = {}
    for a in answers:
        assert a.error is None, a.error
        by_id.setdefault(a.request_id, []).append(a)
    assert sorted(by_id) == ["s", "slow", "u0", "u1", "u2", "u3"]
    check_stream(by_id["s"], client.explain("tinylm", **kwargs("FeatureAblation")), 2)
    for n, a in enumerate(["FeatureAblation", "LayerIntegratedGradients"] * 2):
        [got] = by_id[f"u{n}"]
        alone = client.explain("tinylm", **kwargs(a))
        assert not got.partial and got.part_index == 0
        np.testing.assert_allclose(got.text.token_attr, alone.text.token_attr, rtol=1e-12)
        np.testing.assert_allclose(got.text.seq_attr, alone.text.seq_attr, rtol=1e-12)


def test_rest_answers_newline_delimited_json_parts(server, client):
    body = {"inputs": {"template": {"template": TEMPLATE, "values": VALUES}},
            "targetText": ANSWER, "streamTokens": True, "streamPartTokens": 3}
    with requests.post(f"{server.inference_url}/explanations/tinylm", json=body,
                       headers=server.headers(), stream=True, timeout=120) as r:
        assert r.status_code == 200 and r.headers.get("transfer-encoding") == "chunked"
        lines = [json.loads(line) for line in r.iter_lines() if line]
    assert [ln.get("partial", False) for ln in lines] == [True, True, False]
    assert [ln["partIndex"] for ln in lines] == [0, 1, 2]
    assert [ln["text"]["tokenRowOffset"] for ln in lines] == [0, 3, 0]
    plain = requests.post(f"{server.inference_url}/explanations/tinylm",
                          json={k: v for k, v in body.items() if not k.startswith("stream")},
                          headers=server.headers(), timeout=120).json()
    assert lines[-1]["text"]["seqAttr"] == pytest.approx(plain["text"]["seqAttr"], rel=1e-5)
    assert lines[-1]["text"]["tokenAttr"]["shape"] == ["8", "2"]
    with ExplainClient(mode="rest", rest_url=server.inference_url,
                       token=server.key("inference"), timeout=120) as rest:
        parts = list(rest.explain_stream("tinylm", part_tokens=3, **kwargs("FeatureAblation")))
    check_stream(parts, client.explain("tinylm", **kwargs("FeatureAblation")), 3)


def test_bad_streaming_requests_are_refused_naming_their_field(client):
    def refused(call):
        with pytest.raises(ExplainClientError) as e:
            call()
        return e.value.status, e.value.field

    x = np.zeros((1, 28, 28), np.float32)
    assert refused(lambda: list(client.explain_stream("digits", tensor=x))) == (
        "INVALID_ARGUMENT", "streamTokens")
    assert refused(lambda: client.explain("tinylm", stream_tokens=True, **kwargs(
        "FeatureAblation"))) == ("INVALID_ARGUMENT", "streamTokens")   # unary: cannot stream
    assert refused(lambda: client.explain("tinylm", stream_part_tokens=2, **kwargs(
        "FeatureAblation"))) == ("INVALID_ARGUMENT", "streamPartTokens")
    long = f"{ANSWER} {ANSWER} paris"          # 17 tokens: fits tinylm's context of 24
    assert refused(lambda: list(client.explain_stream(
        "tinylm", part_tokens=1, text="in spain", target_text=long))) == (
        "RESOURCE_EXHAUSTED", "streamPartTokens")                      # 17 > 16 parts
    spec = client.model_spec("tinylm")
    assert spec.limits["max_stream_parts"] == 16
    # the worker is still serving, streams included
    assert len(list(client.explain_stream("tinylm", part_tokens=4, **kwargs(
        "FeatureAblation")))) == 2


def test_the_async_client_streams_the_same_parts(server, client):
    import asyncio

    from service.client import AsyncExplainClient

    async def go():
        async with AsyncExplainClient(f"127.0.0.1:{server.ports['gateway']}",
                                      token=server.key("inference"), timeout=120) as c:
            return [p async for p in c.explain_stream("tinylm", part_tokens=3,
                                                      **kwargs("LayerIntegratedGradients"))]

    parts = asyncio.run(go())
    check_stream(parts, client.explain("tinylm", **kwargs("LayerIntegratedGradients")), 3)
