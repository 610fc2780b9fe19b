"""The Explainer servicer: a thin adapter. Each call becomes one TorchServe Predictions call
carrying the serialized request and the explain marker; the handler's ExplainReply becomes the
response or a status with the same message REST gives (its Error carries the gRPC code the wire
layer chose). Conversions live in service.wire.

``add_to_server`` registers the servicer with byte-level request deserializers, so that a
malformed protobuf is answered INVALID_ARGUMENT by the servicer (gRPC's own deserializer failure
gives UNKNOWN); the servicer methods also take parsed messages (the generated
``add_ExplainerServicer_to_server`` still works)."""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import DecodeError, Message
from google.protobuf.unknown_fields import UnknownFieldSet

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc

from .config import GatewayConfig
from .upstream import TorchServe, UpstreamError, clean

PASSED_METADATA = ("authorization",)
_MARGIN_S = 0.05  # leave the gateway time to answer before the client's deadline


class CallError(Exception):
    """What one call answers when it fails: a gRPC status and, when the handler refused the
    request, its Error message."""

    def __init__(self, code: grpc.StatusCode, message: str, error: pb.Error | None = None,
                 field: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.error = code, message, error
        self.field = error.field if error is not None else field


def _parse(request: bytes | Message, cls: type[Message]) -> Message:
    """The request message; raw bytes (from ``add_to_server``) are parsed here so that a
    malformed message is INVALID_ARGUMENT naming what failed."""
    if not isinstance(request, (bytes, bytearray)):
        return request
    m = cls()
    name = cls.DESCRIPTOR.name
    try:
        m.ParseFromString(bytes(request))
    except (DecodeError, RuntimeError, ValueError) as e:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"request: not a valid {name} ({clean(str(e), 120)})",
                        field="request") from None
    # Unknown field numbers are fine (a newer client); a known number in the unknown set had
    # the wrong wire type: the message is malformed.
    known = cls.DESCRIPTOR.fields_by_number
    wrong = sorted({f.field_number for f in UnknownFieldSet(m) if f.field_number in known})
    if wrong:
        field = known[wrong[0]].json_name
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT,
                        f"{field}: malformed in the serialized {name} (wrong wire type)",
                        field=field)
    return m


def _ascii(text: str) -> str:
    """A metadata value: printable ASCII, the rest percent-encoded (``urllib.parse.unquote``
    gives the field back)."""
    return urllib.parse.quote(text, safe=" !\"#$&'()*+,-./:;<=>?@[]^_`{|}~")


class ExplainerServicer(pb_grpc.ExplainerServicer):
    def __init__(self, upstream: TorchServe, config: GatewayConfig) -> None:
        self.upstream = upstream
        self.config = config

    # -- plumbing ---------------------------------------------------------------------------

    def _metadata(self, context: grpc.aio.ServicerContext) -> list[tuple[str, str]]:
        return [(k, v) for k, v in (context.invocation_metadata() or ())
                if k.lower() in PASSED_METADATA]

    def _timeout(self, context: grpc.aio.ServicerContext) -> float:
        remaining = context.time_remaining()
        if remaining is None:
            return self.config.default_timeout_s
        return max(0.001, min(remaining - _MARGIN_S, self.config.default_timeout_s))

    async def _call(self, model: str, version: str, inputs: dict[str, bytes],
                    metadata: list[tuple[str, str]], timeout: float) -> pb.ExplainReply:
        if not model:
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT,
                            "model: is required (the request names no model)", field="model")
        try:
            raw = await self.upstream.predictions(model, version, inputs, metadata, timeout)
        except UpstreamError as e:
            raise CallError(e.code, e.message, field=e.field) from None
        reply = pb.ExplainReply()
        try:
            reply.ParseFromString(raw)
        except Exception:
            reply.Clear()
        if reply.WhichOneof("result") is None:
            raise CallError(grpc.StatusCode.INTERNAL,
                            f"model {model!r} did not answer with an ExplainReply (is it served "
                            "by this project's handler?)")
        if reply.WhichOneof("result") == "error":
            code = grpc.StatusCode.__members__.get(reply.error.grpc_code,
                                                   grpc.StatusCode.INVALID_ARGUMENT)
            raise CallError(code, reply.error.message, reply.error)
        return reply

    async def _forward(self, request: pb.ExplainRequest, explain: bool,
                       context: grpc.aio.ServicerContext, timeout: float | None = None,
                       ) -> pb.ExplainResponse:
        timeout = self._timeout(context) if timeout is None else timeout
        if explain and not request.deadline_ms:
            request.deadline_ms = max(1, int(timeout * 1000))
        reply = await self._call(request.model, request.model_version,
                                 {"explain_request": request.SerializeToString(),
                                  "explain": b"true" if explain else b"false"},
                                 self._metadata(context), timeout)
        return reply.response

    @staticmethod
    async def _abort(context: grpc.aio.ServicerContext, e: CallError):
        # metadata values must be printable ASCII: a field naming a client's non-ASCII key
        # (features['é']) is percent-encoded (clients unquote it)
        if e.error is not None:
            context.set_trailing_metadata((
                ("explain-error-code", _ascii(e.error.code)),
                ("explain-error-field", _ascii(e.error.field))))
        elif e.field:
            context.set_trailing_metadata((("explain-error-field", _ascii(e.field)),))
        await context.abort(e.code, e.message)

    # -- RPCs -------------------------------------------------------------------------------

    async def Explain(self, request: pb.ExplainRequest, context) -> pb.ExplainResponse:
        try:
            return await self._forward(_parse(request, pb.ExplainRequest), True, context)
        except CallError as e:
            await self._abort(context, e)
            raise  # unreachable: abort raises

    async def Predict(self, request: pb.ExplainRequest, context) -> pb.ExplainResponse:
        try:
            return await self._forward(_parse(request, pb.ExplainRequest), False, context)
        except CallError as e:
            await self._abort(context, e)
            raise

    async def ExplainStream(self, request_iterator: AsyncIterator[pb.ExplainRequest],
                            context) -> AsyncIterator[pb.ExplainResponse]:
        """Requests are forwarded concurrently (so TorchServe can batch and fuse them); answers
        come back as they complete, each tagged with its request's id. At most
        ``stream_concurrency`` requests are in flight or answered-but-unsent: a client that
        stops reading stops the gateway reading its requests (bounded buffering)."""
        slots = asyncio.Semaphore(self.config.stream_concurrency)
        done: asyncio.Queue = asyncio.Queue()
        running: set[asyncio.Future] = set()  # strong references until each task finishes
        pending = 0
        reading = True

        async def one(raw: bytes | pb.ExplainRequest, n: int) -> None:
            req = pb.ExplainRequest()
            try:
                req = _parse(raw, pb.ExplainRequest)  # type: ignore[assignment]
                if not req.request_id:
                    req.request_id = str(n)
                resp = await self._forward(req, True, context)
                resp.request_id = req.request_id
            except CallError as e:
                error = e.error or pb.Error(code=e.code.name, message=e.message, field=e.field,
                                            grpc_code=e.code.name)
                resp = pb.ExplainResponse(model=req.model, request_id=req.request_id or str(n),
                                          error=error)
            await done.put(resp)

        async def read() -> None:
            nonlocal pending, reading
            n = 0
            try:
                async for raw in request_iterator:
                    n += 1
                    await slots.acquire()  # released once its answer is written
                    pending += 1
                    task = asyncio.ensure_future(one(raw, n))
                    running.add(task)
                    task.add_done_callback(running.discard)
            finally:
                reading = False
                await done.put(None)  # wake the writer to re-check

        reader = asyncio.ensure_future(read())
        try:
            while reading or pending:
                item = await done.get()
                if item is None:
                    continue
                pending -= 1
                yield item
                slots.release()
        finally:
            reader.cancel()
            for task in running:
                task.cancel()

    async def GetModelSpec(self, request: pb.GetModelSpecRequest, context) -> pb.ModelSpec:
        try:
            request = _parse(request, pb.GetModelSpecRequest)  # type: ignore[assignment]
            reply = await self._call(request.model, request.model_version, {"spec": b"1"},
                                     self._metadata(context), self._timeout(context))
        except CallError as e:
            await self._abort(context, e)
            raise
        return reply.spec

    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        try:
            _parse(request, pb.ListModelsRequest)
        except CallError as e:
            await self._abort(context, e)
            raise
        try:
            names = await self.upstream.model_names()
        except UpstreamError as e:
            await context.abort(e.code, e.message)
            raise
        metadata, timeout = self._metadata(context), self._timeout(context)
        out = pb.ListModelsResponse()
        replies = await asyncio.gather(
            *(self._call(n, "", {"spec": b"1"}, metadata, timeout) for n in sorted(names)),
            return_exceptions=True)
        for reply in replies:
            if isinstance(reply, CallError):
                if reply.code in (grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.PERMISSION_DENIED):
                    await context.abort(reply.code, reply.message)
                continue  # a model without our handler is not an Explainer model
            if isinstance(reply, BaseException):
                raise reply
            out.models.append(reply.spec)
        return out


def add_to_server(servicer: ExplainerServicer, server: grpc.aio.Server) -> None:
    """Registers ``servicer`` as explain.v1.Explainer with byte-level request deserializers
    (the servicer parses, see ``_parse``)."""
    def out(cls: type[Message]):
        return cls.SerializeToString

    handlers = {
        "Explain": grpc.unary_unary_rpc_method_handler(
            servicer.Explain, response_serializer=out(pb.ExplainResponse)),
        "Predict": grpc.unary_unary_rpc_method_handler(
            servicer.Predict, response_serializer=out(pb.ExplainResponse)),
        "ExplainStream": grpc.stream_stream_rpc_method_handler(
            servicer.ExplainStream, response_serializer=out(pb.ExplainResponse)),
        "GetModelSpec": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelSpec, response_serializer=out(pb.ModelSpec)),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.ListModels, response_serializer=out(pb.ListModelsResponse)),
    }
    service = pb.DESCRIPTOR.services_by_name["Explainer"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
