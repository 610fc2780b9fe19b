"""TorchServe as the gateway sees it: its REST inference API (pooled keep-alive connections,
``http1``) for the answers to explanation and prediction requests, one persistent gRPC channel
for the rest (the spec marker, StreamPredictions, Ping; and every call when no REST address is
configured), and the REST management API for the list of models."""

from __future__ import annotations

import asyncio
import json
import re
import urllib.parse
import urllib.request
from collections.abc import AsyncGenerator, Mapping, Sequence

import grpc
from google.protobuf import empty_pb2

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.torchserve import inference_client_pb2 as ts_pb
from service._proto.torchserve import inference_client_pb2_grpc as ts_grpc

from .calls import CallError, response_bytes, sole_field, varint
from .config import GatewayConfig
from .http1 import Http1Pool, HttpError, Reply


class UpstreamError(CallError):
    """A failed TorchServe call (TorchServe's refusal, not the handler's), already mapped to
    the status the gateway's client gets: the call's error as it is."""

    def __init__(self, code: grpc.StatusCode, message: str, field: str = "") -> None:
        super().__init__(code, message, field=field)


# "org.pytorch.serve.archive.model.ModelNotFoundException: " and the like
_JAVA_CLASS = re.compile(r"\b(?:[a-z_$][\w$]*\.)+[A-Z][\w$]*(?:Exception|Error)\b:?\s*")
# Requests above this size are refused by TorchServe itself (launcher: max_request_size), which
# cancels the call instead of answering.
LARGE_REQUEST_BYTES = 4 * 2**20
_PREDICTION_TAG = bytes(
    [ts_pb.PredictionResponse.DESCRIPTOR.fields_by_name["prediction"].number << 3 | 2])


def clean(details: str, limit: int = 300) -> str:
    """TorchServe's status details without Java class names, on one line, clipped."""
    text = " ".join(_JAVA_CLASS.sub("", details).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _mapped(e: grpc.aio.AioRpcError, model: str, version: str, size: int) -> UpstreamError:
    return refusal(e.code(), e.details() or "", model, version, size)


def refusal(code: grpc.StatusCode, details: str, model: str, version: str, size: int
            ) -> UpstreamError:
    """TorchServe's own refusal (not the handler's), by its status and message, as the status
    the gateway's client gets; the same whether it came over gRPC or REST."""
    lowered = details.lower()
    if "version" in lowered and ("not exist" in lowered or "not found" in lowered):
        return UpstreamError(grpc.StatusCode.NOT_FOUND,
                             f"model_version: {version!r} of model {model!r} is not served",
                             "model_version")
    if code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.NOT_FOUND) and (
            "not found" in lowered or "model not" in lowered):
        return UpstreamError(grpc.StatusCode.NOT_FOUND, f"model: {model!r} is not served",
                             "model")
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED or (
            size > LARGE_REQUEST_BYTES and code in (grpc.StatusCode.CANCELLED,
                                                    grpc.StatusCode.UNKNOWN,
                                                    grpc.StatusCode.INTERNAL)):
        return UpstreamError(grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"explain_request: {size} bytes is more than TorchServe accepted "
                             f"({clean(details) or code.name}); the limit is max_body_bytes "
                             "(GetModelSpec lists it)", "explain_request")
    return UpstreamError(code, clean(details) or code.name)


# TorchServe's REST statuses as gRPC codes (TorchServe's gRPC frontend gives these codes for
# the same refusals; a refused inference key is PERMISSION_DENIED there too)
_HTTP_CODES = {400: grpc.StatusCode.INVALID_ARGUMENT, 401: grpc.StatusCode.UNAUTHENTICATED,
               403: grpc.StatusCode.PERMISSION_DENIED, 404: grpc.StatusCode.NOT_FOUND,
               408: grpc.StatusCode.DEADLINE_EXCEEDED, 413: grpc.StatusCode.RESOURCE_EXHAUSTED,
               429: grpc.StatusCode.RESOURCE_EXHAUSTED, 500: grpc.StatusCode.INTERNAL,
               501: grpc.StatusCode.UNIMPLEMENTED, 503: grpc.StatusCode.UNAVAILABLE,
               504: grpc.StatusCode.DEADLINE_EXCEEDED, 507: grpc.StatusCode.RESOURCE_EXHAUSTED}
PROTOBUF = "application/x-protobuf"


def http_refusal(reply: Reply, model: str, version: str, size: int) -> CallError:
    """A REST answer other than 200: the handler's Error (in its protobuf ExplainResponse) as
    the call's error, or TorchServe's own refusal (a JSON ``{code, type, message}``) mapped as
    its gRPC frontend's would be."""
    if reply.headers.get("content-type", "").startswith(PROTOBUF):
        try:  # the handler answers a refusal as an ExplainResponse with its error set
            answer = pb.ExplainResponse.FromString(reply.body)
            error = answer.error if answer.HasField("error") else None
        except Exception:
            error = None
        if error is not None:
            return CallError.refused(error)
    kind, message = "", reply.reason
    try:
        body = json.loads(reply.body)
        kind, message = str(body.get("type", "")), str(body.get("message", "")) or message
    except (ValueError, AttributeError):
        pass
    code = (grpc.StatusCode.PERMISSION_DENIED if "InvalidKey" in kind
            else _HTTP_CODES.get(reply.status, grpc.StatusCode.UNKNOWN))
    return refusal(code, f"{kind}: {message}" if kind else message, model, version, size)


def _field(number: int, data: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(data)) + data


def predictions_request(model: str, version: str, inputs: Mapping[str, bytes]) -> bytes:
    """A serialized PredictionsRequest (model_name = 1, model_version = 2, input = 3: a map of
    entries key = 1, value = 2) built in one join: the values (the client's request) are
    copied once, not into a message and again out of it."""
    parts = [_field(1, model.encode()), _field(2, version.encode()) if version else b""]
    for key, value in inputs.items():
        head = _field(1, key.encode()) + varint(2 << 3 | 2) + varint(len(value))  # then value
        parts += [varint(3 << 3 | 2), varint(len(head) + len(value)), head, value]
    return b"".join(parts)


class TorchServe:
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        size = config.max_message_bytes
        self.channel = grpc.aio.insecure_channel(
            config.torchserve,
            options=[("grpc.max_receive_message_length", size),
                     ("grpc.max_send_message_length", size),
                     ("grpc.keepalive_time_ms", 30_000)])
        self.stub = ts_grpc.InferenceAPIsServiceStub(self.channel)
        # Predictions in and out as bytes: predictions_request, and the answer's prediction a
        # view of it (sole_field)
        self._predictions = self.channel.unary_unary(
            "/org.pytorch.serve.grpc.inference.InferenceAPIsService/Predictions")
        self.rest = (Http1Pool(config.inference_url, config.upstream_connections, size)
                     if config.inference_url else None)

    async def close(self) -> None:
        await self.channel.close()
        if self.rest is not None:
            await self.rest.close()

    async def answer(self, model: str, version: str, request: bytes, explain: bool,
                     metadata: Sequence[tuple[str, str]], timeout: float) -> bytes:
        """The serialized ExplainResponse the handler gives the serialized ExplainRequest
        ``request`` (on /explanations when ``explain``, else /predictions); the handler's
        refusal raises CallError, TorchServe's and failures of the call itself UpstreamError
        (a CallError too)."""
        if self.rest is None:
            raw = await self.predictions(model, version, {
                "explain_request": request, "explain": b"true" if explain else b"false"},
                metadata, timeout)
            return response_bytes(raw, model)
        path = "/{}/{}{}".format("explanations" if explain else "predictions",
                                 urllib.parse.quote(model, safe=""),
                                 "/" + urllib.parse.quote(version, safe="") if version else "")
        headers = [("Content-Type", PROTOBUF), ("Accept", PROTOBUF),
                   *(("Authorization", v) for k, v in metadata if k.lower() == "authorization")]
        try:
            reply = await asyncio.wait_for(self.rest.post(path, request, headers), timeout)
        except asyncio.TimeoutError:
            raise UpstreamError(grpc.StatusCode.DEADLINE_EXCEEDED,
                                f"TorchServe did not answer within {timeout:.3f} s") from None
        except HttpError as e:
            if len(request) > LARGE_REQUEST_BYTES and not e.answered:
                raise refusal(grpc.StatusCode.CANCELLED, str(e), model, version,
                              len(request)) from None
            raise UpstreamError(grpc.StatusCode.UNAVAILABLE,
                                f"TorchServe's REST API ({self.config.inference_url}): {e}"
                                ) from None
        if reply.status != 200:
            raise http_refusal(reply, model, version, len(request))
        if not reply.headers.get("content-type", "").startswith(PROTOBUF):
            raise CallError(grpc.StatusCode.INTERNAL,
                            f"model {model!r} did not answer with an ExplainResponse (is it "
                            "served by this project's handler?)")
        return reply.body

    async def predictions(self, model: str, version: str, inputs: dict[str, bytes],
                          metadata: Sequence[tuple[str, str]], timeout: float,
                          ) -> bytes | memoryview:
        """The handler's answer (``PredictionResponse.prediction``)."""
        request = predictions_request(model, version, inputs)
        try:
            reply = await self._predictions(request, metadata=tuple(metadata), timeout=timeout)
        except grpc.aio.AioRpcError as e:
            raise _mapped(e, model, version, len(request)) from None
        prediction = sole_field(reply, _PREDICTION_TAG)
        return prediction if prediction is not None else ts_pb.PredictionResponse.FromString(
            reply).prediction

    async def stream_predictions(self, model: str, version: str, inputs: dict[str, bytes],
                                 metadata: Sequence[tuple[str, str]], timeout: float
                                 ) -> AsyncGenerator[bytes, None]:
        """StreamPredictions: the handler's intermediate responses, then its final one."""
        request = ts_pb.PredictionsRequest(model_name=model, model_version=version, input=inputs)
        call = self.stub.StreamPredictions(request, metadata=tuple(metadata), timeout=timeout)
        try:
            async for reply in call:
                yield reply.prediction
        except grpc.aio.AioRpcError as e:
            raise _mapped(e, model, version, request.ByteSize()) from None
        finally:
            call.cancel()   # no-op once it ended; stops TorchServe's side if we stop early

    async def healthy(self, timeout: float = 2.0) -> bool:
        """TorchServe answers Ping as healthy (with the inference key when token auth is on)."""
        key = self._key("inference")
        metadata = (("authorization", f"Bearer {key}"),) if key else ()
        try:
            reply = await self.stub.Ping(empty_pb2.Empty(), metadata=metadata, timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return "healthy" in reply.health.lower()

    def _key(self, kind: str) -> str | None:
        """The current ``inference`` or ``management`` key from TorchServe's key file (re-read:
        keys rotate)."""
        if not self.config.key_file:
            return None
        try:
            with open(self.config.key_file) as f:
                entry = json.load(f).get(kind, {})
        except (OSError, ValueError):
            return None
        return entry.get("key") if isinstance(entry, dict) else entry

    async def model_names(self) -> list[str]:
        """Every registered model, from the management API (with the management key when token
        authorization is on)."""
        return await asyncio.to_thread(self._model_names)

    def _model_names(self) -> list[str]:
        key = self._key("management")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        names: list[str] = []
        token = ""
        while True:
            query = urllib.parse.urlencode({"limit": 100, **({"next_page_token": token} if token else {})})
            req = urllib.request.Request(f"{self.config.management_url}/models?{query}",
                                         headers=headers)
            try:
                with urllib.request.urlopen(req, timeout=10) as r:
                    body = json.load(r)
            except OSError as e:
                raise UpstreamError(grpc.StatusCode.UNAVAILABLE,
                                    f"TorchServe management API unreachable: {e}") from e
            names.extend(m["modelName"] for m in body.get("models", []))
            token = body.get("nextPageToken", "")
            if not token:
                return names
