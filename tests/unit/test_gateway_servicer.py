"""The Explainer servicer in process, registered with ``add_to_server`` on a real grpc.aio
server, in front of a stand-in TorchServe that calls the real handler: malformed protobuf,
unknown models and versions, one message for REST and gRPC, limits in GetModelSpec, bounded
stream buffering."""

from __future__ import annotations

import asyncio
import json

import grpc
import numpy as np
import pytest
from google.protobuf import json_format

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service.gateway.calls import CallError, response_bytes, sole_field, with_deadline_ms
from service.gateway.config import GatewayConfig
from service.gateway.servicer import ExplainerServicer, add_to_server
from service.gateway.upstream import TorchServe, UpstreamError, _mapped
from tests.serving_fixture import tiny_image
from tests.unit.test_handler import Context, handler_module


class RpcError:
    """What grpc.aio raises, as far as ``_mapped`` reads it."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


class HandlerUpstream:
    """TorchServe's Predictions as the gateway sees it, answered by the real handler."""

    def __init__(self, handler, model_dir, delay: float = 0.0, pad: int = 0) -> None:
        self.handler, self.model_dir, self.delay, self.pad = handler, model_dir, delay, pad
        self.calls = 0

    async def predictions(self, model, version, inputs, metadata, timeout) -> bytes:
        self.calls += 1
        size = sum(len(v) for v in inputs.values())
        if model != "tiny":
            raise _mapped(RpcError(grpc.StatusCode.INTERNAL, "org.pytorch.serve.archive.model."
                                   f"ModelNotFoundException: Model not found: {model}"),
                          model, version, size)
        if version not in ("", "1.0"):
            raise _mapped(RpcError(grpc.StatusCode.INTERNAL, "org.pytorch.serve.archive.model."
                                   f"ModelVersionNotFoundException: Model version: {version} "
                                   f"does not exist for model: {model}"), model, version, size)
        await asyncio.sleep(self.delay)
        row = {k: bytearray(v) for k, v in inputs.items()}
        reply = self.handler.handle([row], Context(self.model_dir, [{}]))[0]
        m = pb.ExplainReply.FromString(reply)
        if self.pad and m.HasField("response"):  # large, to fill the flow-control window
            m.response.explanations.add().heatmap_png = b"\0" * self.pad
            reply = m.SerializeToString()
        return bytes(reply)

    rest = None                  # TorchServe.answer's gRPC route, over predictions() here
    answer = TorchServe.answer

    async def model_names(self) -> list[str]:
        return ["tiny"]

    async def close(self) -> None:
        pass


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tiny_image(tmp_path_factory.mktemp("gw"))
    h = handler_module().ExplainHandler()
    h.initialize(Context(d, [{}]))
    return h, d


def run(coro):
    return asyncio.run(coro)


async def _serve(upstream, **config):
    server = grpc.aio.server()
    add_to_server(ExplainerServicer(upstream, GatewayConfig(**config)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def _request(**kw) -> pb.ExplainRequest:
    x = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    return pb.ExplainRequest(model="tiny", inputs=pb.Input(tensor=wire.tensor_to_proto(x)), **kw)


async def _unary(upstream, method: str, payload: bytes):
    server, channel = await _serve(upstream)
    try:
        call = channel.unary_unary(f"/explain.v1.Explainer/{method}")
        try:
            return await call(payload, timeout=10), None
        except grpc.aio.AioRpcError as e:
            return None, e
    finally:
        await channel.close()
        await server.stop(None)


@pytest.mark.parametrize("payload, field", [
    (b"\xff\xff\xff", None),      # not protobuf at all
    (b"\x0a\x05ti", None),        # a truncated string
    (b"\x08\x01", "model"),       # `model` with a varint wire type
])
def test_malformed_protobuf_is_invalid_argument(tiny, payload, field):
    _, e = run(_unary(HandlerUpstream(*tiny), "Explain", payload))
    assert e is not None and e.code() is grpc.StatusCode.INVALID_ARGUMENT, e
    if field:
        assert e.details().startswith(f"{field}:")
    assert "is required" not in e.details()


def test_unknown_model_and_version_are_not_found_without_java_names(tiny):
    for req in (pb.ExplainRequest(model="nope"), _request(model_version="9.9")):
        _, e = run(_unary(HandlerUpstream(*tiny), "Explain", req.SerializeToString()))
        assert e.code() is grpc.StatusCode.NOT_FOUND
        assert "Exception" not in e.details() and "org." not in e.details()
        assert ("nope" in e.details()) or ("9.9" in e.details())


def test_refusal_has_the_rest_message_and_json_field(tiny):
    h, d = tiny
    req = _request(target=pb.Target(top_k=99))
    _, e = run(_unary(HandlerUpstream(h, d), "Explain", req.SerializeToString()))
    body = json.loads(json_format.MessageToJson(req))
    ctx = Context(d, [{"explain": "True"}])
    rest = json.loads(h.handle([{"body": body}], ctx)[0])
    assert e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert rest["field"] == "target.topK" and e.details() == rest["message"]
    assert ctx.status[0][0] == 422 and ctx.status[0][1].isascii()
    assert dict(e.trailing_metadata())["explain-error-field"] == "target.topK"


def test_upstream_size_refusal_is_resource_exhausted():
    e = _mapped(RpcError(grpc.StatusCode.CANCELLED, "Received RST_STREAM"), "m", "", 20 * 2**20)
    assert isinstance(e, UpstreamError) and e.code is grpc.StatusCode.RESOURCE_EXHAUSTED


def test_spec_reports_the_limits_in_force(tiny):
    reply, e = run(_unary(HandlerUpstream(*tiny), "GetModelSpec",
                          pb.GetModelSpecRequest(model="tiny").SerializeToString()))
    assert e is None
    spec = pb.ModelSpec.FromString(reply)
    limits = tiny[0].executor.limits
    assert dict(spec.limits) == limits.as_dict() and spec.limits["max_n_steps"] == 64


class StreamContext:
    """The parts of a grpc.aio servicer context ExplainStream reads."""

    def invocation_metadata(self):
        return ()

    def time_remaining(self):
        return None


def test_stream_buffers_a_bounded_number_of_answers(tiny):
    """A client that reads nothing: the gateway forwards at most ``stream_concurrency``
    requests whose answers are not written yet (it used to forward them all)."""
    async def go():
        upstream = HandlerUpstream(*tiny)
        servicer = ExplainerServicer(upstream, GatewayConfig(stream_concurrency=3))

        async def requests():
            for n in range(40):
                yield _request(request_id=str(n)) if n % 5 else pb.ExplainRequest(
                    model="tiny", request_id=str(n))

        stream = servicer.ExplainStream(requests(), StreamContext())
        first = await stream.__anext__()  # then the client stops reading
        await asyncio.sleep(1.0)
        stalled = upstream.calls
        answers = [first] + [a async for a in stream]
        return stalled, answers

    stalled, answers = run(go())
    assert stalled <= 3 + 1, stalled
    assert sorted(int(a.request_id) for a in answers) == list(range(40))
    failed = [a for a in answers if a.HasField("error")]
    assert {a.request_id for a in failed} == {str(n) for n in range(0, 40, 5)}
    assert all(a.error.field == "inputs" for a in failed)


def test_non_ascii_field_reaches_the_client_percent_encoded(tiny):
    """Metadata values must be ASCII: a refused non-ASCII parameter name is percent-encoded in
    `explain-error-field` and decoded back by the client (no INTERNAL 'Invalid metadata')."""
    import urllib.parse

    from google.protobuf import struct_pb2

    params = struct_pb2.Struct()
    params.update({"naïve_é": 1.0})
    req = _request(algorithm="IntegratedGradients", params=params)
    _, e = run(_unary(HandlerUpstream(*tiny), "Explain", req.SerializeToString()))
    assert e is not None and e.code() is grpc.StatusCode.INVALID_ARGUMENT, e
    raw = dict(e.trailing_metadata())["explain-error-field"]
    assert raw.isascii() and urllib.parse.unquote(raw) == "params.naïve_é"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_param_is_invalid_argument_naming_it(tiny, value):
    from google.protobuf import struct_pb2

    params = struct_pb2.Struct()
    params.update({"n_steps": value})
    req = _request(algorithm="IntegratedGradients", params=params)
    _, e = run(_unary(HandlerUpstream(*tiny), "Explain", req.SerializeToString()))
    assert e is not None and e.code() is grpc.StatusCode.INVALID_ARGUMENT, e
    assert dict(e.trailing_metadata())["explain-error-field"] == "params.n_steps"
    h, d = tiny
    ctx = Context(d, [{"explain": "True"}])
    literal = {"nan": "NaN", "inf": "Infinity", "-inf": "-Infinity"}[str(value)]
    inputs = json_format.MessageToJson(req.inputs, indent=None)
    body = (f'{{"inputs": {inputs}, "algorithm": "IntegratedGradients", '
            f'"params": {{"n_steps": {literal}}}}}')
    rest = json.loads(h.handle([{"body": body.encode()}], ctx)[0])
    assert ctx.status[0][0] == 400 and rest["field"] == "params.n_steps"


def test_the_gateway_does_not_import_torch():
    """The gateway only forwards bytes: importing it must not pull in torch (seconds of start-up
    and hundreds of MB per restart by the supervisor). service.runtime and service.wire load
    their names lazily for that."""
    import subprocess
    import sys

    code = "import sys, service.gateway.server; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout.strip()
    assert out == "False"


class PartsUpstream(HandlerUpstream):
    """Adds StreamPredictions: ``parts`` partial replies per request (each an ExplainReply,
    as the handler sends them), then the handler's real answer; counts the replies read."""

    def __init__(self, handler, model_dir, parts: int) -> None:
        super().__init__(handler, model_dir)
        self.parts, self.read = parts, 0

    async def stream_predictions(self, model, version, inputs, metadata, timeout):
        assert inputs.get("stream") == b"true"    # the handler streams only with the marker
        req = pb.ExplainRequest.FromString(inputs["explain_request"])
        for n in range(self.parts):
            await asyncio.sleep(0)
            self.read += 1
            yield pb.ExplainReply(response=pb.ExplainResponse(
                model=model, request_id=req.request_id, partial=True,
                part_index=n)).SerializeToString()
        self.read += 1
        yield await self.predictions(model, version, inputs, metadata, timeout)


def test_stream_relays_parts_in_order_beside_plain_requests(tiny):
    """A stream_tokens request's replies come back in its order, tagged with its id; plain
    requests on the same stream keep the unary path (here the tiny classifier refuses the
    streamed request's answer itself, which ends its parts with that error)."""
    async def go():
        upstream = PartsUpstream(*tiny, parts=3)
        servicer = ExplainerServicer(upstream, GatewayConfig(stream_concurrency=4))

        async def requests():
            yield _request(request_id="s", stream_tokens=True)
            yield _request(request_id="p")

        return [a async for a in servicer.ExplainStream(requests(), StreamContext())]

    answers = run(go())
    streamed = [a for a in answers if a.request_id == "s"]
    assert [(a.partial, a.part_index) for a in streamed[:3]] == [(True, 0), (True, 1),
                                                                 (True, 2)]
    assert streamed[3].error.field == "streamTokens"   # the classifier refuses streamTokens
    [plain] = [a for a in answers if a.request_id == "p"]
    assert not plain.HasField("error") and not plain.partial


def test_stream_buffers_a_bounded_number_of_parts(tiny):
    """A client that stops reading: the gateway reads at most about 2 x stream_concurrency
    parts of a long streamed answer from TorchServe (the queue, plus one held by each
    request's task), not all of them."""
    async def go():
        upstream = PartsUpstream(*tiny, parts=200)
        servicer = ExplainerServicer(upstream, GatewayConfig(stream_concurrency=3))

        async def requests():
            for n in range(3):
                yield _request(request_id=str(n), stream_tokens=True)

        stream = servicer.ExplainStream(requests(), StreamContext())
        first = await stream.__anext__()
        await asyncio.sleep(0.5)
        stalled = upstream.read
        rest = [a async for a in stream]
        return stalled, [first, *rest]

    stalled, answers = run(go())
    assert stalled <= 2 * 3 + 3, stalled
    assert len(answers) == 3 * 201
    for n in range(3):
        mine = [a.part_index for a in answers if a.request_id == str(n) and a.partial]
        assert mine == list(range(200))

@pytest.mark.parametrize("value", [1, 127, 128, 16_384, 120_000, 2**32 - 1])
def test_appended_deadline_overrides_and_keeps_the_rest(value):
    """with_deadline_ms appended to a serialized request (with or without its own deadline)
    decodes as that deadline, every other field unchanged."""
    for own in (0, 7):
        req = _request(algorithm="Saliency", request_id="r", deadline_ms=own)
        got = pb.ExplainRequest.FromString(req.SerializeToString() + with_deadline_ms(value))
        assert got.deadline_ms == value
        got.deadline_ms = own
        assert got == req


def test_response_bytes_slices_the_handlers_response(tiny):
    """The slice equals the ExplainResponse decoded and re-encoded, short and long (a length of
    one and of several varint bytes); other replies go through unpack_reply."""
    for pad in (0, 300, 70_000):
        raw = run(HandlerUpstream(*tiny, pad=pad).predictions(
            "tiny", "", {"explain_request": _request(algorithm="Saliency").SerializeToString(),
                         "explain": b"true"}, (), 10))
        reply = pb.ExplainReply.FromString(raw)
        assert reply.WhichOneof("result") == "response"
        assert response_bytes(raw, "tiny") == reply.response.SerializeToString()
        assert response_bytes(raw + b"\x10\x01", "tiny") == reply.response.SerializeToString()
    error = pb.ExplainReply(error=pb.Error(message="no", grpc_code="FAILED_PRECONDITION"))
    with pytest.raises(CallError) as e:
        response_bytes(error.SerializeToString(), "tiny")
    assert e.value.code is grpc.StatusCode.FAILED_PRECONDITION and e.value.message == "no"
    for junk in (b'[{"stock": "handler"}]', b"\x0a\x05abc", b""):
        with pytest.raises(CallError) as e:
            response_bytes(junk, "m")
        assert e.value.code is grpc.StatusCode.INTERNAL, junk


def test_the_handler_gets_the_clients_request_with_the_gateways_deadline(tiny):
    """Explain forwards the client's bytes; when it set no deadline, the gateway's (from the
    call's timeout) is appended; Predict forwards them untouched."""
    seen = []

    class Recording(HandlerUpstream):
        async def predictions(self, model, version, inputs, metadata, timeout):
            seen.append(bytes(inputs["explain_request"]))
            return await super().predictions(model, version, inputs, metadata, timeout)

    for method, req in (("Explain", _request(algorithm="Saliency")),
                        ("Explain", _request(algorithm="Saliency", deadline_ms=4321)),
                        ("Predict", _request())):
        raw = req.SerializeToString()
        reply, e = run(_unary(Recording(*tiny), method, raw))
        assert e is None, e
        assert pb.ExplainResponse.FromString(reply).model == "tiny"
        got = pb.ExplainRequest.FromString(seen[-1])
        assert seen[-1].startswith(raw)
        if method == "Predict" or req.deadline_ms:
            assert seen[-1] == raw
        else:
            assert 5_000 < got.deadline_ms <= 10_000  # _unary's timeout: 10 s (not the default 120 s)


def test_sole_field_reads_torchserves_prediction_without_a_copy():
    """upstream.predictions reads PredictionResponse.prediction as a view of the answer; an
    answer that is not that one field alone gets None (and is decoded instead)."""
    from service._proto.torchserve import inference_client_pb2 as ts_pb
    from service.gateway.upstream import _PREDICTION_TAG

    for size in (1, 127, 128, 70_000, 3 * 2**20):
        payload = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
        raw = ts_pb.PredictionResponse(prediction=payload).SerializeToString()
        view = sole_field(raw, _PREDICTION_TAG)
        assert view is not None and view.obj is raw and view.tobytes() == payload
        assert sole_field(raw + b"\x10\x01", _PREDICTION_TAG) is None
        assert sole_field(raw[:-1], _PREDICTION_TAG) is None
    assert sole_field(b"", _PREDICTION_TAG) is None


@pytest.mark.parametrize("model, version, inputs", [
    ("m", "", {}),
    ("tiny", "1.0", {"explain_request": b"\x0a\x04tiny" * 50, "explain": b"true"}),
    ("é" * 100, "", {"spec": b"1", "": b"", "big": bytes(range(256)) * 4096}),
])
def test_predictions_request_encodes_what_the_message_would(model, version, inputs):
    from service._proto.torchserve import inference_client_pb2 as ts_pb
    from service.gateway.upstream import predictions_request

    raw = predictions_request(model, version, inputs)
    assert ts_pb.PredictionsRequest.FromString(raw) == ts_pb.PredictionsRequest(
        model_name=model, model_version=version, input=inputs)


class DeadlineContext(StreamContext):
    def __init__(self, remaining):
        self.remaining = remaining

    def time_remaining(self):
        return self.remaining


def test_forwarded_timeout_stays_inside_the_clients_deadline(tiny):
    """gRPC rounds the grpc-timeout header up (a 10 s call can arrive with 10.1 s left):
    what the gateway forwards stays under the client's own 10 s, with room to answer."""
    servicer = ExplainerServicer(HandlerUpstream(*tiny), GatewayConfig(default_timeout_s=120))
    assert servicer._timeout(DeadlineContext(10.1)) < 10.0 - 0.05
    assert servicer._timeout(DeadlineContext(1.0)) > 0.9
    assert servicer._timeout(DeadlineContext(0.0)) == 0.001
    assert servicer._timeout(DeadlineContext(None)) == 120
    assert servicer._timeout(DeadlineContext(500.0)) == 120
