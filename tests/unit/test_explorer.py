"""The explorer's server (service/explorer) against a fake TorchServe (an ASGI app behind httpx)
and a fake gateway stub: it forwards the caller's key and nothing else, serves nothing to a
caller whose key the service refuses, and passes the API's errors through with their field."""

from __future__ import annotations

import json
import warnings

import grpc
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

with warnings.catch_warnings():  # starlette 1.10 prefers httpx2 for its TestClient
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

from service._proto.explain.v1 import explain_pb2 as pb
from service.explorer import ExplorerConfig, create_app

GOOD = "Bearer good"
REFUSAL = {"code": 400, "type": "InvalidKeyException",
           "message": "Token Authorization failed. Token either incorrect, expired, or not "
                      "provided correctly"}


class FakeTorchServe:
    """TorchServe 0.12's REST answers, with token authorization on unless ``auth=False``."""

    def __init__(self, auth: bool = True) -> None:
        self.auth = auth
        self.seen: list[dict[str, str]] = []

    def _refused(self, request: Request) -> JSONResponse | None:
        self.seen.append(dict(request.headers))
        if self.auth and request.headers.get("authorization") != GOOD:
            return JSONResponse(REFUSAL, 400)
        return None

    async def ping(self, request: Request):
        return self._refused(request) or JSONResponse({"status": "Healthy"})

    async def infer(self, request: Request):
        refused = self._refused(request)
        if refused:
            return refused
        model = request.path_params["model"]
        if model == "bad":
            return JSONResponse({"code": "LIMIT_EXCEEDED", "field": "params.n_steps",
                                 "message": "100000 is above the limit 512 (max_n_steps)"}, 422)
        if model != "digits":
            return JSONResponse({"code": 404, "type": "ModelNotFoundException",
                                 "message": f"Model not found: {model}"}, 404)
        return JSONResponse({"kind": request.path_params["kind"],
                             "echo": json.loads(await request.body())})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/ping", self.ping),
                                 Route("/{kind}/{model}", self.infer, methods=["POST"])])


class FakeStub:
    def __init__(self, auth: bool) -> None:
        self.auth = auth
        self.metadata: list = []

    def _check(self, metadata) -> None:
        self.metadata.append(tuple(metadata))
        if self.auth and ("authorization", GOOD) not in tuple(metadata):
            raise grpc.aio.AioRpcError(grpc.StatusCode.PERMISSION_DENIED, grpc.aio.Metadata(),
                                       grpc.aio.Metadata(), "Token Authorization failed")

    async def GetModelSpec(self, request, metadata=(), timeout=None):
        self._check(metadata)
        if request.model == "bad":
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.INVALID_ARGUMENT, grpc.aio.Metadata(),
                grpc.aio.Metadata(("explain-error-code", "INVALID_INPUT"),
                                  ("explain-error-field", "model_version")), "no such version")
        return pb.ModelSpec(name=request.model, input_kind="image", input_shape=[1, 28, 28],
                            class_names=["zero", "one"],
                            algorithms=[pb.AlgorithmInfo(name="Saliency")])

    async def ListModels(self, request, metadata=(), timeout=None):
        self._check(metadata)
        return pb.ListModelsResponse(models=[pb.ModelSpec(name="digits")])


class FakeGateway:
    def __init__(self, auth: bool) -> None:
        self.stub = FakeStub(auth)

    async def close(self) -> None:
        pass


@pytest.fixture
def examples_dir(tmp_path):
    d = tmp_path / "digits"
    d.mkdir()
    (d / "examples.json").write_text(json.dumps({"model": "digits", "truth": "label",
                                                 "examples": [{"id": "digits-0", "true_index": 1,
                                                               "inputs": {"image": "AAAA"}}]}))
    return tmp_path


def make_client(examples_dir, auth: bool = True, **config):
    ts = FakeTorchServe(auth)
    gw = FakeGateway(auth)
    cfg = ExplorerConfig(inference_url="http://torchserve", gateway="fake:1",
                         examples_dir=examples_dir, **config)
    app = create_app(cfg, http_transport=httpx.ASGITransport(app=ts.app()), grpc_client=gw)
    return TestClient(app), ts, gw


API_CALLS = [("GET", "/api/session"), ("GET", "/api/models"), ("GET", "/api/models/digits"),
             ("GET", "/api/models/digits/examples"), ("POST", "/api/models/digits/predict"),
             ("POST", "/api/models/digits/explain")]


def test_the_page_itself_needs_no_key(examples_dir):
    client, _, _ = make_client(examples_dir)
    r = client.get("/")
    assert r.status_code == 200 and "<title>Explorer" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    js = client.get("/static/js/main.js")
    assert js.status_code == 200 and "javascript" in js.headers["content-type"]


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"},
                                     {"Authorization": "good"}])
@pytest.mark.parametrize("method,path", API_CALLS)
def test_nothing_is_served_without_a_valid_key(examples_dir, headers, method, path):
    client, _, _ = make_client(examples_dir)
    r = client.request(method, path, headers=headers,
                       content=b'{"inputs": {}}' if method == "POST" else None)
    assert r.status_code == 401
    body = r.json()
    assert body["code"] == "KEY_REFUSED" and body["field"] == "authorization"
    assert set(body) == {"code", "field", "message"}  # no spec, examples or explanation


def test_a_valid_key_is_forwarded_and_nothing_else(examples_dir):
    client, ts, gw = make_client(examples_dir)
    headers = {"Authorization": GOOD, "Cookie": "secret=1", "X-Other": "x"}
    assert client.get("/api/session", headers=headers).json()["key_sent"] is True
    spec = client.get("/api/models/digits", headers=headers).json()
    assert spec["name"] == "digits" and spec["inputShape"] == ["1", "28", "28"]
    assert client.get("/api/models", headers=headers).json()["models"][0]["name"] == "digits"
    ex = client.get("/api/models/digits/examples", headers=headers).json()
    assert [e["id"] for e in ex["examples"]] == ["digits-0"]
    body = {"inputs": {"image": "AAAA"}, "algorithm": "Saliency"}
    r = client.post("/api/models/digits/explain", headers=headers, json=body)
    assert r.status_code == 200 and r.json() == {"kind": "explanations", "echo": body}
    r = client.post("/api/models/digits/predict", headers=headers, json=body)
    assert r.json()["kind"] == "predictions"
    assert r.headers["cache-control"] == "no-store"
    for seen in ts.seen:
        assert seen.get("authorization") == GOOD
        assert "cookie" not in seen and "x-other" not in seen
    assert all(m == (("authorization", GOOD),) for m in gw.stub.metadata)


def test_auth_off_needs_no_key(examples_dir):
    client, ts, _ = make_client(examples_dir, auth=False)
    assert client.get("/api/session").json() == {"status": "ok", "key_sent": False,
                                                 "gateway": True}
    assert client.get("/api/models/digits/examples").status_code == 200
    assert all("authorization" not in s for s in ts.seen)


def test_api_errors_keep_their_field(examples_dir):
    client, _, _ = make_client(examples_dir)
    h = {"Authorization": GOOD}
    r = client.post("/api/models/bad/explain", headers=h, json={})
    assert r.status_code == 422 and r.json()["field"] == "params.n_steps"
    r = client.post("/api/models/nosuch/explain", headers=h, json={})
    assert r.status_code == 404
    assert r.json() == {"code": "NOT_FOUND", "field": "model",
                        "message": "Model not found: nosuch"}
    r = client.get("/api/models/bad", headers=h)
    assert r.status_code == 400
    assert r.json()["code"] == "INVALID_INPUT" and r.json()["field"] == "model_version"


def test_model_names_cannot_reach_other_files(examples_dir):
    client, _, _ = make_client(examples_dir)
    (examples_dir / "examples.json").write_text("{}")
    for name in ("..", ".hidden", "a..b"):
        r = client.get(f"/api/models/{name}/examples", headers={"Authorization": GOOD})
        assert r.status_code in (400, 404), name
        assert '"examples"' not in r.text


def test_a_model_without_examples_gets_an_empty_list(examples_dir):
    client, _, _ = make_client(examples_dir)
    r = client.get("/api/models/recommender/examples", headers={"Authorization": GOOD})
    assert r.json()["examples"] == []


def test_large_bodies_are_refused_before_forwarding(examples_dir):
    client, ts, _ = make_client(examples_dir, max_body_bytes=100)
    r = client.post("/api/models/digits/explain", headers={"Authorization": GOOD},
                    content=b"x" * 101)
    assert r.status_code == 413 and r.json()["field"] == "body"
    assert ts.seen == []


def test_unreachable_service_is_reported(examples_dir):
    cfg = ExplorerConfig(inference_url="http://127.0.0.1:9", examples_dir=examples_dir,
                         timeout_s=2)
    r = TestClient(create_app(cfg)).get("/api/session")
    assert r.status_code == 502 and r.json()["code"] == "UPSTREAM_UNAVAILABLE"


def test_without_a_gateway_specs_are_unavailable(examples_dir):
    cfg = ExplorerConfig(inference_url="http://torchserve", examples_dir=examples_dir)
    r = TestClient(create_app(cfg)).get("/api/models/digits", headers={"Authorization": GOOD})
    assert r.status_code == 501 and r.json()["code"] == "UNIMPLEMENTED"


def test_listen_address_is_parsed():
    from service.explorer.__main__ import build_parser

    args = build_parser().parse_args(["--inference-url", "http://x"])
    assert args.listen == ("127.0.0.1", 8090)
    args = build_parser().parse_args(["--inference-url", "http://x", "--listen", "[::1]:9"])
    assert args.listen == ("::1", 9)


def test_on_loopback_only_loopback_host_names_are_answered(examples_dir):
    from service.explorer.config import hosts_for

    cfg = ExplorerConfig(inference_url="http://torchserve", examples_dir=examples_dir,
                         allowed_hosts=hosts_for("127.0.0.1"))
    client = TestClient(create_app(cfg), base_url="http://127.0.0.1:8090")
    assert client.get("/").status_code == 200
    assert client.get("/", headers={"Host": "attacker.example:8090"}).status_code == 400
    assert hosts_for("0.0.0.0") is None


def test_the_launcher_hook_starts_and_stops_the_explorer(tmp_path):
    import socket
    import urllib.request

    from service.explorer.process import start_explorer, stop_explorer

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = start_explorer(tmp_path, port, "http://127.0.0.1:9", None, timeout=60)
    try:
        assert url == f"http://127.0.0.1:{port}/"
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b"<title>Explorer" in r.read()
        pid = int((tmp_path / "tmp" / "explorer.pid").read_text())
    finally:
        stop_explorer(tmp_path)
    assert not (tmp_path / "tmp" / "explorer.pid").exists()
    with pytest.raises(ProcessLookupError):
        import os
        os.kill(pid, 0)
