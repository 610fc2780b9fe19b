"""The service's public API as the explorer uses it: TorchServe REST (``/ping``,
``/predictions/<m>``, ``/explanations/<m>``) and the Explainer gateway's ``ListModels`` and
``GetModelSpec`` (through the generated stubs). Every call carries the caller's
``Authorization`` header and nothing else of theirs; answers come back as (status, JSON bytes),
errors as ``{"code", "field", "message"}``, and a refused key always as 401 ``KEY_REFUSED``
whichever API refused it."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

import grpc
import httpx
from google.protobuf import json_format

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc

from .config import ExplorerConfig

KEY_REFUSED = "KEY_REFUSED"
# TorchServe 0.12 answers a missing, wrong or expired key with 400 and this exception type.
_TS_KEY_TYPES = ("InvalidKeyException",)
_GRPC_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400, grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 422, grpc.StatusCode.FAILED_PRECONDITION: 422,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504, grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.UNIMPLEMENTED: 501,
}


class Gateway:
    """A channel to the Explainer gateway and its stub. (Not service.client: that one imports
    the runtime, i.e. torch, which a thin proxy does not need: 25 s of start-up on a loaded
    machine.)"""

    def __init__(self, address: str, max_message_bytes: int = 64 * 2**20) -> None:
        opts = [("grpc.max_receive_message_length", max_message_bytes),
                ("grpc.max_send_message_length", max_message_bytes)]
        self.channel = grpc.aio.insecure_channel(address, options=opts)
        self.stub = pb_grpc.ExplainerStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes  # JSON

    @property
    def ok(self) -> bool:
        return self.status == 200


def error(status: int, code: str, message: str, field: str = "") -> Answer:
    body = {"code": code, "field": field, "message": message}
    return Answer(status, json.dumps(body).encode())


def key_refused(detail: str = "") -> Answer:
    message = "the service refused the inference key (missing, wrong, or expired)"
    return error(401, KEY_REFUSED, message + (f": {detail}" if detail else ""), "authorization")


def _rest_error(status: int, raw: bytes, model: str) -> Answer:
    """TorchServe's own errors ({"code": int, "type", "message"}) in the explorer's shape; the
    handler's errors ({"code": str, "field", ...}) as they are."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return error(status if status >= 400 else 502, "UPSTREAM_ERROR",
                     raw.decode("utf-8", "replace")[:500])
    if body.get("type") in _TS_KEY_TYPES or status in (401, 403):
        return key_refused(str(body.get("message", "")))
    if isinstance(body.get("code"), str):
        return Answer(status, raw)
    kind = str(body.get("type", "UPSTREAM_ERROR"))
    field = "model" if kind == "ModelNotFoundException" else ""
    return error(status, "NOT_FOUND" if status == 404 else kind,
                 str(body.get("message", "")), field)


class Upstream:
    """The connections are opened on first use, inside the server's event loop (a grpc.aio
    channel belongs to the loop it was made in)."""

    def __init__(self, config: ExplorerConfig, *,
                 http_transport: httpx.AsyncBaseTransport | None = None,
                 grpc_client: Gateway | None = None) -> None:
        self.config = config
        self._transport = http_transport  # tests: a fake TorchServe
        self._http: httpx.AsyncClient | None = None
        self._grpc: Gateway | None = grpc_client

    @property
    def http(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(base_url=self.config.inference_url.rstrip("/"),
                                           timeout=self.config.timeout_s,
                                           transport=self._transport)
        return self._http

    @property
    def grpc(self) -> Gateway | None:
        if self._grpc is None and self.config.gateway:
            self._grpc = Gateway(self.config.gateway)
        return self._grpc

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._grpc is not None:
            await self._grpc.close()
        self._http = self._grpc = None

    @staticmethod
    def _headers(auth: str | None) -> dict[str, str]:
        return {"Authorization": auth} if auth else {}

    async def ping(self, auth: str | None) -> Answer:
        """The key check: TorchServe refuses a missing or wrong key also on /ping."""
        try:
            r = await self.http.get("/ping", headers=self._headers(auth))
        except httpx.HTTPError as e:
            return error(502, "UPSTREAM_UNAVAILABLE", f"TorchServe at "
                         f"{self.config.inference_url} is not reachable: {e}")
        return Answer(200, r.content) if r.status_code == 200 else _rest_error(
            r.status_code, r.content, "")

    async def forward(self, kind: str, model: str, body: bytes, auth: str | None) -> Answer:
        """POST ``body`` (an ExplainRequest JSON) to ``/<kind>/<model>``; kind is
        ``predictions`` or ``explanations``."""
        headers = {"Content-Type": "application/json", **self._headers(auth)}
        try:
            r = await self.http.post(f"/{kind}/{model}", content=body, headers=headers)
        except httpx.TimeoutException:
            return error(504, "DEADLINE_EXCEEDED", f"no answer within {self.config.timeout_s:g} s")
        except httpx.HTTPError as e:
            return error(502, "UPSTREAM_UNAVAILABLE", f"TorchServe at "
                         f"{self.config.inference_url} is not reachable: {e}")
        if r.status_code == 200:
            return Answer(200, r.content)
        return _rest_error(r.status_code, r.content, model)

    async def _rpc(self, rpc: str, request, auth: str | None):
        if self.grpc is None:
            return error(501, "UNIMPLEMENTED", "the explorer runs without a gateway "
                         "(--gateway host:port) and cannot read model specs")
        metadata = (("authorization", auth),) if auth else ()
        try:
            return await getattr(self.grpc.stub, rpc)(request, metadata=metadata,
                                                      timeout=self.config.timeout_s)
        except grpc.aio.AioRpcError as e:
            code = e.code()
            if code in (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED):
                return key_refused(e.details() or "")
            trailing = dict(e.trailing_metadata() or ())
            return error(_GRPC_STATUS.get(code, 502),
                         trailing.get("explain-error-code") or code.name, e.details() or "",
                         urllib.parse.unquote(trailing.get("explain-error-field", "")))

    @staticmethod
    def _json(message) -> Answer:
        d = json_format.MessageToDict(message, always_print_fields_with_no_presence=True)
        return Answer(200, json.dumps(d).encode())

    async def models(self, auth: str | None) -> Answer:
        out = await self._rpc("ListModels", pb.ListModelsRequest(), auth)
        return out if isinstance(out, Answer) else self._json(out)

    async def spec(self, model: str, auth: str | None) -> Answer:
        out = await self._rpc("GetModelSpec", pb.GetModelSpecRequest(model=model), auth)
        return out if isinstance(out, Answer) else self._json(out)
