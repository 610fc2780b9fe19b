"""service.client with ``key_file=``: a long-lived client follows TorchServe's key rotation.

Fake servers (a gRPC Explainer and an HTTP server answering as TorchServe does: 400
InvalidKeyException for a refused key) accept only the current key and record every key they
were sent. Rotation is what the supervisor does: TorchServe replaces the key (the old one is
refused at once) and rewrites key_file.json."""

from __future__ import annotations

import asyncio
import json
import pathlib
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import pytest
from google.protobuf import json_format

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc
from service.client import AsyncExplainClient, ExplainClient, ExplainClientError


class Keys:
    """TorchServe's side: the valid key, key_file.json, and the keys each call carried."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self.valid = ""
        self.sent: list[str] = []
        self.rotate_on_next_call = False  # the renewal lands between a client's read and call
        self.n = 0
        self.rotate()

    def rotate(self) -> None:
        self.n += 1
        self.valid = f"key-{self.n}"
        self.path.write_text(json.dumps({"inference": {"key": self.valid,
                                                       "expiration time": "2099-01-01T00:00:00Z"},
                                         "API": {"key": "api"}}))

    def accept(self, authorization: str) -> bool:
        key = authorization.removeprefix("Bearer ")
        self.sent.append(key)
        if self.rotate_on_next_call:
            self.rotate_on_next_call = False
            self.rotate()
        return key == self.valid


class FakeExplainer(pb_grpc.ExplainerServicer):
    def __init__(self, keys: Keys) -> None:
        self.keys = keys

    def _check(self, context) -> None:
        md = dict(context.invocation_metadata())
        if not self.keys.accept(md.get("authorization", "")):
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "Token Authorization failed")

    def Predict(self, request, context):
        self._check(context)
        return pb.ExplainResponse(model=request.model, request_id=request.request_id)

    def GetModelSpec(self, request, context):
        self._check(context)
        return pb.ModelSpec(name=request.model)

    def ExplainStream(self, request_iterator, context):
        md = dict(context.invocation_metadata())
        for n, req in enumerate(request_iterator, 1):
            rid = req.request_id or str(n)
            if self.keys.accept(md.get("authorization", "")):
                yield pb.ExplainResponse(model=req.model, request_id=rid)
            else:   # the gateway answers each stream item with its own error
                yield pb.ExplainResponse(model=req.model, request_id=rid, error=pb.Error(
                    code="PERMISSION_DENIED", message="Token Authorization failed"))


@pytest.fixture
def keys(tmp_path: pathlib.Path) -> Keys:
    return Keys(tmp_path / "key_file.json")


@pytest.fixture
def gateway(keys: Keys):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_ExplainerServicer_to_server(FakeExplainer(keys), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(None)


@pytest.fixture
def rest(keys: Keys):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if keys.accept(self.headers.get("Authorization", "")):
                req = json_format.Parse(body, pb.ExplainRequest())
                code, out = 200, json_format.MessageToJson(pb.ExplainResponse(model=req.model))
            else:   # TorchServe 0.12's answer to a wrong or expired key
                code, out = 400, json.dumps({"code": 400, "type": "InvalidKeyException",
                                             "message": "Token Authorization failed."})
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(out.encode())

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_grpc_client_retries_once_with_the_rotated_key(keys: Keys, gateway: str) -> None:
    with ExplainClient(gateway, key_file=keys.path) as c:
        c.predict("m", features={"a": 1.0})
        keys.rotate_on_next_call = True         # refused: the file changed after the client read it
        c.predict("m", features={"a": 1.0})
        assert keys.sent == ["key-1", "key-1", "key-2"]
        keys.rotate()                           # rotated between calls: the file is re-read first
        assert c.model_spec("m").name == "m"
        assert keys.sent[-1] == "key-3" and len(keys.sent) == 4


def test_a_refused_key_the_file_does_not_change_fails_after_one_call(keys: Keys,
                                                                      gateway: str) -> None:
    with ExplainClient(gateway, key_file=keys.path) as c:
        keys.valid = "another"                  # the file's key is simply wrong
        with pytest.raises(ExplainClientError) as e:
            c.predict("m", features={"a": 1.0})
        assert e.value.status == "PERMISSION_DENIED"
        assert keys.sent == ["key-1"]           # no retry with the same key


def test_a_fixed_token_is_never_retried(keys: Keys, gateway: str) -> None:
    with ExplainClient(gateway, token="key-1") as c:
        keys.rotate_on_next_call = True
        with pytest.raises(ExplainClientError, match="PERMISSION_DENIED"):
            c.predict("m", features={"a": 1.0})
        with pytest.raises(ExplainClientError):  # and it keeps its key
            c.predict("m", features={"a": 1.0})
        assert keys.sent == ["key-1", "key-1"]


def test_stream_items_refused_for_their_key_are_sent_again(keys: Keys, gateway: str) -> None:
    reqs = [pb.ExplainRequest(model="m", request_id="a"), pb.ExplainRequest(model="m")]
    with ExplainClient(gateway, key_file=keys.path) as c:
        keys.rotate_on_next_call = True         # the first item carries the old key
        answers = c.explain_many(reqs)
    assert sorted(a.request_id for a in answers) == ["2", "a"]
    assert all(a.error is None for a in answers)
    assert keys.sent == ["key-1", "key-1", "key-2", "key-2"]


def test_rest_client_retries_after_torchserve_400_invalid_key(keys: Keys, rest: str) -> None:
    with ExplainClient(mode="rest", rest_url=rest, key_file=keys.path) as c:
        keys.rotate_on_next_call = True
        assert c.predict("m", features={"a": 1.0}).model == "m"
        assert keys.sent == ["key-1", "key-2"]
        keys.valid = "another"
        with pytest.raises(ExplainClientError) as e:
            c.predict("m", features={"a": 1.0})
        assert e.value.status == "400" and keys.sent[-1] == "key-2" and len(keys.sent) == 3


def test_async_client_retries_once_with_the_rotated_key(keys: Keys, gateway: str) -> None:
    async def run() -> None:
        async with AsyncExplainClient(gateway, key_file=keys.path) as c:
            keys.rotate_on_next_call = True
            await c.predict("m", features={"a": 1.0})
            keys.valid = "another"
            with pytest.raises(ExplainClientError):
                await c.predict("m", features={"a": 1.0})

    asyncio.run(run())
    assert keys.sent == ["key-1", "key-2", "key-2"]


def test_key_file_and_token_are_exclusive_and_the_file_must_hold_a_key(tmp_path) -> None:
    path = tmp_path / "key_file.json"
    path.write_text(json.dumps({"API": {"key": "api"}}))
    with pytest.raises(ValueError, match="not both"):
        ExplainClient(token="t", key_file=path)
    with pytest.raises(ValueError, match="no inference key"):
        ExplainClient(key_file=path)
    with pytest.raises(FileNotFoundError):
        ExplainClient(key_file=tmp_path / "missing.json")
