"""The gateway's REST upstream (``upstream.TorchServe.answer`` over ``http1.Http1Pool``) against
a stand-in of TorchServe's REST inference API that answers with the real handler: answers
equal the handler's, connections are reused, and every way TorchServe or the connection can
fail becomes the gRPC status the gRPC upstream gives (the e2e suite repeats the main ones
against the real TorchServe)."""

from __future__ import annotations

import asyncio
import json

import grpc
import pytest

from service._proto.explain.v1 import explain_pb2 as pb
from service.gateway.config import GatewayConfig
from service.gateway.http1 import Http1Pool, HttpError
from service.gateway.servicer import ExplainerServicer, add_to_server
from service.gateway.upstream import TorchServe
from tests.serving_fixture import tiny_image
from tests.unit.test_gateway_servicer import _request
from tests.unit.test_handler import Context, handler_module


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tiny_image(tmp_path_factory.mktemp("gwrest"))
    h = handler_module().ExplainHandler()
    h.initialize(Context(d, [{}]))
    return h, d


class HeaderContext(Context):
    def get_all_request_header(self, idx):
        return self.headers[idx]


class StandIn:
    """TorchServe's REST inference API, one asyncio server: ``/explanations/<m>[/<v>]`` and
    ``/predictions/...`` answered by the handler (status, content type and body as TorchServe
    relays them), TorchServe's own JSON refusals, and misbehaviours a test switches on."""

    def __init__(self, handler, model_dir, max_body: int = 2**20) -> None:
        self.handler, self.model_dir, self.max_body = handler, model_dir, max_body
        self.delay = 0.0
        self.chunked = False          # answers with Transfer-Encoding: chunked
        self.close_after = False      # closes every connection after its answer
        self.key: str | None = None   # the inference key asked for, if any
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def stop(self) -> None:
        self.drop_connections()
        self.server.close()

    def drop_connections(self) -> None:
        for w in self.writers:
            w.close()
        self.writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                line, *rest = head[:-4].decode("latin-1").split("\r\n")
                headers = {k.strip().lower(): v.strip()
                           for k, _, v in (h.partition(":") for h in rest)}
                size = int(headers.get("content-length", "0"))
                if size > self.max_body:  # netty's aggregator: 413 and close, body unread
                    writer.write(b"HTTP/1.1 413 Request Entity Too Large\r\n"
                                 b"content-length: 0\r\n\r\n")
                    await writer.drain()
                    writer.close()
                    return
                body = await reader.readexactly(size)
                path = line.split(" ")[1]
                self.requests.append((path, headers, body))
                await asyncio.sleep(self.delay)
                status, ctype, payload = self._answer(path, headers, body)
                out = [f"HTTP/1.1 {status} {'OK' if status == 200 else 'Refused'}",
                       f"content-type: {ctype}"]
                if self.chunked:
                    out.append("transfer-encoding: chunked")
                    half = len(payload) // 2
                    framed = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n"
                                      for p in (payload[:half], payload[half:]) if p) + b"0\r\n\r\n"
                else:
                    out.append(f"content-length: {len(payload)}")
                    framed = payload
                if status != 200 and ctype == "application/json" or self.close_after:
                    out.append("connection: close")
                writer.write("\r\n".join(out).encode() + b"\r\n\r\n" + framed)
                await writer.drain()
                if self.close_after or "connection: close" in out:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def _answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, str, bytes]:
        kind, model, *version = path.strip("/").split("/")
        if self.key is not None and headers.get("authorization") != f"Bearer {self.key}":
            return 400, "application/json", json.dumps({
                "code": 400, "type": "InvalidKeyException",
                "message": "Token Authorization failed. Token either incorrect, expired, or not "
                           "provided correctly"}).encode()
        if model != "tiny":
            return 404, "application/json", json.dumps({
                "code": 404, "type": "ModelNotFoundException",
                "message": f"Model not found: {model}"}).encode()
        if version and version[0] != "1.0":
            return 404, "application/json", json.dumps({
                "code": 404, "type": "ModelVersionNotFoundException",
                "message": f"Model version: {version[0]} does not exist for model: {model}"
            }).encode()
        ctx = HeaderContext(self.model_dir, [{
            "explain": "True" if kind == "explanations" else "False",
            "Content-Type": headers.get("content-type", ""),
            "Accept": headers.get("accept", "")}])
        payload = self.handler.handle([{"body": bytearray(body)}], ctx)[0]
        status = ctx.status.get(0, (200, ""))[0]
        payload = payload.encode() if isinstance(payload, str) else bytes(payload)
        return status, ctx.content_types.get(0, "application/json"), payload


def run(coro):
    return asyncio.run(coro)


async def _with_gateway(tiny, test, **standin):
    """Runs ``test(call, stand_in, upstream)`` with a gateway whose REST upstream is the
    stand-in; ``call(method, request, timeout)`` returns (response bytes, None) or (None, the
    AioRpcError)."""
    stand = StandIn(*tiny, **standin)
    url = await stand.start()
    config = GatewayConfig(inference_url=url, torchserve="127.0.0.1:1",
                           upstream_connections=4)
    upstream = TorchServe(config)
    big = [("grpc.max_receive_message_length", 2**26), ("grpc.max_send_message_length", 2**26)]
    server = grpc.aio.server(options=big)
    add_to_server(ExplainerServicer(upstream, config), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=big)

    async def call(method: str, req: pb.ExplainRequest | bytes, timeout: float = 10.0,
                   metadata=()):
        payload = req if isinstance(req, bytes) else req.SerializeToString()
        try:
            return await channel.unary_unary(f"/explain.v1.Explainer/{method}")(
                payload, timeout=timeout, metadata=metadata), None
        except grpc.aio.AioRpcError as e:
            return None, e
    try:
        return await test(call, stand, upstream)
    finally:
        await channel.close()
        await server.stop(None)
        await upstream.close()
        await stand.stop()


def _direct(tiny, req: pb.ExplainRequest, explain: bool) -> pb.ExplainResponse:
    """The handler's own answer to the same serialized request over REST protobuf."""
    h, d = tiny
    ctx = HeaderContext(d, [{"explain": str(explain), "Content-Type": "application/x-protobuf",
                             "Accept": "application/x-protobuf"}])
    return pb.ExplainResponse.FromString(bytes(h.handle([{"body": bytearray(
        req.SerializeToString())}], ctx)[0]))


def _same(a: pb.ExplainResponse, b: pb.ExplainResponse) -> None:
    for m in (a, b):
        m.ClearField("timings")
    assert a == b


def test_explain_and_predict_answer_as_the_handler_on_one_connection(tiny):
    async def test(call, stand, upstream):
        for method, explain in (("Explain", True), ("Predict", False), ("Explain", True)):
            req = _request(algorithm="Saliency", deadline_ms=5000)
            reply, e = await call(method, req)
            assert e is None, e
            _same(pb.ExplainResponse.FromString(reply), _direct(tiny, req, explain))
        paths = [p for p, _, _ in stand.requests]
        assert paths == ["/explanations/tiny", "/predictions/tiny", "/explanations/tiny"]
        assert {h["content-type"] for _, h, _ in stand.requests} == {"application/x-protobuf"}
        assert upstream.rest.opened == 1   # keep-alive: one connection for the three calls
    run(_with_gateway(tiny, test))


def test_explain_gets_the_clients_bytes_and_the_gateways_deadline(tiny):
    async def test(call, stand, upstream):
        req = _request(algorithm="Saliency")
        _, e = await call("Explain", req, timeout=10)
        assert e is None, e
        sent = stand.requests[-1][2]
        assert sent.startswith(req.SerializeToString())
        assert 5_000 < pb.ExplainRequest.FromString(sent).deadline_ms <= 10_000  # the call's 10 s
        _, e = await call("Predict", req)
        assert stand.requests[-1][2] == req.SerializeToString()
    run(_with_gateway(tiny, test))


def test_chunked_answers_and_closed_connections(tiny):
    async def test(call, stand, upstream):
        stand.chunked = True
        req = _request(algorithm="Saliency", deadline_ms=5000)
        for _ in range(2):
            reply, e = await call("Explain", req)
            assert e is None, e
            _same(pb.ExplainResponse.FromString(reply), _direct(tiny, req, True))
        assert upstream.rest.opened == 1
        stand.close_after = True   # "connection: close": never reused
        for _ in range(3):
            _, e = await call("Explain", req)
            assert e is None, e
        assert upstream.rest.opened == 3   # the pooled one, then a new one for each of two
    run(_with_gateway(tiny, test))


def test_a_pooled_connection_the_server_dropped_is_replaced(tiny):
    async def test(call, stand, upstream):
        req = _request(algorithm="Saliency", deadline_ms=5000)
        assert (await call("Explain", req))[1] is None
        stand.drop_connections()   # TorchServe restarted, or closed the idle connection
        await asyncio.sleep(0.05)
        reply, e = await call("Explain", req)
        assert e is None, e
        assert upstream.rest.opened == 2
    run(_with_gateway(tiny, test))


def test_handler_refusal_has_the_rest_message_field_and_code(tiny):
    async def test(call, stand, upstream):
        _, e = await call("Explain", _request(target=pb.Target(top_k=99)))
        assert e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert e.details().startswith("target.topK: 99 is above the limit")
        assert dict(e.trailing_metadata())["explain-error-field"] == "target.topK"
        _, e = await call("Explain", _request(algorithm="NoSuchMethod"))
        assert e.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert "NoSuchMethod" in e.details()
        # the connection survives a refusal the handler answered in protobuf
        assert (await call("Explain", _request(algorithm="Saliency")))[1] is None
    run(_with_gateway(tiny, test))


def test_unknown_model_and_version_are_not_found_naming_them(tiny):
    async def test(call, stand, upstream):
        for req, name in ((pb.ExplainRequest(model="nope"), "'nope'"),
                          (_request(model_version="9.9"), "'9.9'")):
            _, e = await call("Explain", req)
            assert e.code() is grpc.StatusCode.NOT_FOUND, e
            assert name in e.details() and "Exception" not in e.details()
        assert stand.requests[-1][0] == "/explanations/tiny/9.9"
    run(_with_gateway(tiny, test))


def test_a_body_torchserve_refuses_as_too_large_is_resource_exhausted(tiny):
    async def test(call, stand, upstream):
        req = _request(algorithm="Saliency", request_id="x" * (5 * 2**20))
        _, e = await call("Explain", req)
        assert e.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, e
        assert "max_body_bytes" in e.details()
        assert (await call("Explain", _request(algorithm="Saliency")))[1] is None
    run(_with_gateway(tiny, test, max_body=4 * 2**20))


def test_a_refused_key_is_permission_denied_and_the_key_is_passed_on(tiny):
    async def test(call, stand, upstream):
        stand.key = "k1"
        _, e = await call("Explain", _request(algorithm="Saliency"))
        assert e.code() is grpc.StatusCode.PERMISSION_DENIED
        reply, e = await call("Explain", _request(algorithm="Saliency"),
                              metadata=(("authorization", "Bearer k1"),))
        assert e is None, e
    run(_with_gateway(tiny, test))


def test_a_slow_answer_is_deadline_exceeded_and_its_connection_not_reused(tiny):
    async def test(call, stand, upstream):
        stand.delay = 0.5
        _, e = await call("Explain", _request(algorithm="Saliency"), timeout=0.2)
        assert e.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        stand.delay = 0.0
        await asyncio.sleep(0.5)   # the late answer arrives on the abandoned connection
        reply, e = await call("Explain", _request(algorithm="Saliency", deadline_ms=5000))
        assert e is None, e
        assert pb.ExplainResponse.FromString(reply).explanations
        assert upstream.rest.opened == 2
    run(_with_gateway(tiny, test))


def test_concurrent_calls_share_a_bounded_pool(tiny):
    async def test(call, stand, upstream):
        stand.delay = 0.02
        reqs = [_request(algorithm="Saliency", request_id=str(n), deadline_ms=9000)
                for n in range(12)]
        results = await asyncio.gather(*(call("Explain", r) for r in reqs))
        assert all(e is None for _, e in results)
        ids = [pb.ExplainResponse.FromString(r).request_id for r, _ in results]
        assert ids == [str(n) for n in range(12)]
        assert upstream.rest.opened <= 4   # upstream_connections
    run(_with_gateway(tiny, test))


def test_an_answer_that_is_not_protobuf_is_internal(tiny):
    async def test(call, stand, upstream):
        stand._answer = lambda path, headers, body: (200, "application/json", b"[0.5]")
        _, e = await call("Explain", _request(algorithm="Saliency"))
        assert e.code() is grpc.StatusCode.INTERNAL
        assert "ExplainResponse" in e.details()
    run(_with_gateway(tiny, test))


def test_torchserve_unreachable_is_unavailable(tiny):
    async def test(call, stand, upstream):
        await stand.stop()
        await asyncio.sleep(0.05)
        _, e = await call("Explain", _request(algorithm="Saliency"))
        assert e.code() is grpc.StatusCode.UNAVAILABLE
        assert "REST" in e.details()
    run(_with_gateway(tiny, test))


@pytest.mark.parametrize("response", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort",        # body cut off
    b"not http at all\r\n\r\n",
    b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n",     # over max_body_bytes
    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n",  # bad chunk size
])
def test_a_malformed_answer_is_an_error_not_a_hang(response):
    async def main():
        async def serve(reader, writer):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(response)
            await writer.drain()
            writer.close()
        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        pool = Http1Pool(f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}",
                         max_body_bytes=2**20)
        try:
            with pytest.raises(HttpError):
                await asyncio.wait_for(pool.post("/x", b"", ()), 5)
            assert not pool._idle
        finally:
            await pool.close()
            server.close()
    run(main())


def test_a_header_with_a_line_break_is_refused():
    async def main():
        pool = Http1Pool("http://127.0.0.1:1")
        with pytest.raises(ValueError, match="line breaks"):
            await pool.post("/x", b"", [("Authorization", "Bearer a\r\nX-Evil: 1")])
    run(main())


def test_the_config_refuses_a_url_that_is_not_http():
    with pytest.raises(ValueError, match="inference_url"):
        GatewayConfig(inference_url="127.0.0.1:8080")
    with pytest.raises(ValueError, match="inference_url"):
        GatewayConfig(inference_url="http://")
    assert GatewayConfig(inference_url="").inference_url == ""
