"""The Explainer servicer: a thin adapter. Explain and Predict (and every ExplainStream request
without ``stream_tokens``) become one call of TorchServe's REST inference API carrying the
serialized request (``upstream.TorchServe.answer``: over gRPC when no REST address is
configured); GetModelSpec a TorchServe Predictions call with the spec marker. The handler's
answer becomes the response, its refusal a status with the same message REST gives (its Error
carries the gRPC code the wire layer chose). Conversions live in service.wire. On
ExplainStream, a request with ``stream_tokens`` becomes a StreamPredictions call (with the
``stream`` marker, without which the handler refuses to stream) whose every reply is relayed:
its parts, then its answer.

``add_to_server`` registers the servicer with byte-level request deserializers, so that a
malformed protobuf is answered INVALID_ARGUMENT by the servicer (``calls.parse``; gRPC's own
deserializer failure gives UNKNOWN); the servicer methods also take parsed messages. Explain and
Predict pass bytes through (bench/README.md "Gateway hop"): the client's serialized request
goes to TorchServe as it came (a deadline appended as one more encoded field, which overrides)
and they answer the handler's serialized ExplainResponse as it came, so they are registered
without a response serializer: serve them with ``add_to_server``, not the generated
``add_ExplainerServicer_to_server``."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
from google.protobuf.message import Message

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc

from .calls import CallError, aborting, parse, unpack_reply, with_deadline_ms
from .config import GatewayConfig
from .stream import answer_concurrently
from .upstream import TorchServe

PASSED_METADATA = ("authorization",)
# Leave the gateway time to answer before the client's deadline. gRPC sends the deadline as
# a grpc-timeout header that its encoder rounds *up* to keep few digits (10,001 ms goes out as
# 101 hundred-milliseconds): the server's time_remaining() can exceed the client's own by up
# to 1 %, so the margin covers that too (CI once saw a 10 s call forwarded with 10,048 ms).
_MARGIN_S = 0.05
_ROUNDING = 0.01


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
        return max(0.001, min(remaining * (1 - _ROUNDING) - _MARGIN_S,
                              self.config.default_timeout_s))

    async def _call(self, model: str, version: str, inputs: dict[str, bytes],
                    metadata: list[tuple[str, str]], timeout: float) -> pb.ExplainReply:
        """The handler's ExplainReply to a Predictions call with ``inputs``."""
        _named(model)
        raw = await self.upstream.predictions(model, version, inputs, metadata, timeout)
        return unpack_reply(raw, model)

    async def _forward(self, request: pb.ExplainRequest, explain: bool,
                       context: grpc.aio.ServicerContext) -> pb.ExplainResponse:
        timeout = self._timeout(context)
        if explain and not request.deadline_ms:
            request.deadline_ms = max(1, int(timeout * 1000))
        return pb.ExplainResponse.FromString(await self._answer(
            request.model, request.model_version, request.SerializeToString(), explain,
            context, timeout))

    async def _answer(self, model: str, version: str, raw: bytes, explain: bool,
                      context: grpc.aio.ServicerContext, timeout: float) -> bytes:
        """The handler's serialized ExplainResponse to the serialized ExplainRequest ``raw``."""
        _named(model)
        return await self.upstream.answer(model, version, raw, explain, self._metadata(context),
                                          timeout)

    async def _forward_parts(self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext
                             ) -> AsyncIterator[pb.ExplainResponse]:
        """A streamed request's parts (partial) and then its answer, as TorchServe's
        StreamPredictions relays them from the handler; an error ends them (CallError)."""
        _named(request.model)
        timeout = self._timeout(context)
        request.deadline_ms = request.deadline_ms or max(1, int(timeout * 1000))
        inputs = {"explain_request": request.SerializeToString(), "explain": b"true",
                  "stream": b"true"}
        parts = self.upstream.stream_predictions(request.model, request.model_version, inputs,
                                                 self._metadata(context), timeout)
        try:
            async for raw in parts:
                yield unpack_reply(raw, request.model).response
        finally:
            await parts.aclose()

    async def _pass_through(self, request: bytes | pb.ExplainRequest, explain: bool,
                            context: grpc.aio.ServicerContext) -> bytes:
        """``_forward`` without decoding and re-encoding: the serialized ExplainResponse."""
        req = parse(request, pb.ExplainRequest)  # malformed: INVALID_ARGUMENT naming the field
        raw = request if isinstance(request, bytes) else req.SerializeToString()
        timeout = self._timeout(context)
        if explain and not req.deadline_ms:
            raw += with_deadline_ms(max(1, int(timeout * 1000)))
        return await self._answer(req.model, req.model_version, raw, explain, context, timeout)

    # -- RPCs -------------------------------------------------------------------------------

    @aborting
    async def Explain(self, request: bytes | pb.ExplainRequest, context) -> bytes:
        return await self._pass_through(request, True, context)

    @aborting
    async def Predict(self, request: bytes | pb.ExplainRequest, context) -> bytes:
        return await self._pass_through(request, False, context)

    async def ExplainStream(self, request_iterator: AsyncIterator[bytes | pb.ExplainRequest],
                            context) -> AsyncIterator[pb.ExplainResponse]:
        """Every request answered with its response or its error (tagged with its request's
        id), concurrently; a ``stream_tokens`` request with its parts first (``partial``), in
        order. See ``stream.answer_concurrently``."""
        async def one(raw: bytes | pb.ExplainRequest, n: int
                      ) -> AsyncIterator[pb.ExplainResponse]:
            req = pb.ExplainRequest()
            try:
                req = parse(raw, pb.ExplainRequest)
                req.request_id = req.request_id or str(n)
                if req.stream_tokens:
                    async for resp in self._forward_parts(req, context):
                        resp.request_id = req.request_id
                        yield resp
                    return
                resp = await self._forward(req, True, context)
                resp.request_id = req.request_id
                yield resp
            except CallError as e:
                yield pb.ExplainResponse(model=req.model, request_id=req.request_id or str(n),
                                         error=e.as_proto())

        answers = answer_concurrently(request_iterator, one, self.config.stream_concurrency)
        async with contextlib.aclosing(answers):  # its tasks are cancelled when the call ends
            async for resp in answers:
                yield resp

    @aborting
    async def GetModelSpec(self, request: pb.GetModelSpecRequest, context) -> pb.ModelSpec:
        request = parse(request, pb.GetModelSpecRequest)
        reply = await self._call(request.model, request.model_version, {"spec": b"1"},
                                 self._metadata(context), self._timeout(context))
        return reply.spec

    @aborting
    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
        parse(request, pb.ListModelsRequest)
        names = await self.upstream.model_names()   # UpstreamError: a CallError
        metadata, timeout = self._metadata(context), self._timeout(context)
        replies = await asyncio.gather(
            *(self._call(n, "", {"spec": b"1"}, metadata, timeout) for n in sorted(names)),
            return_exceptions=True)
        out = pb.ListModelsResponse()
        for reply in replies:
            if isinstance(reply, CallError):
                if reply.code in (grpc.StatusCode.UNAUTHENTICATED,
                                  grpc.StatusCode.PERMISSION_DENIED):
                    raise CallError(reply.code, reply.message)
                continue  # a model without our handler is not an Explainer model
            if isinstance(reply, BaseException):
                raise reply
            out.models.append(reply.spec)
        return out


def _named(model: str) -> None:
    if not model:
        raise CallError(grpc.StatusCode.INVALID_ARGUMENT,
                        "model: is required (the request names no model)", field="model")


def add_to_server(servicer: ExplainerServicer, server: grpc.aio.Server) -> None:
    """Registers ``servicer`` as explain.v1.Explainer with byte-level request deserializers
    (the servicer parses, see ``_parse``)."""
    def out(cls: type[Message]):
        return cls.SerializeToString

    handlers = {
        "Explain": grpc.unary_unary_rpc_method_handler(servicer.Explain),  # bytes out
        "Predict": grpc.unary_unary_rpc_method_handler(servicer.Predict),
        "ExplainStream": grpc.stream_stream_rpc_method_handler(
            servicer.ExplainStream, response_serializer=out(pb.ExplainResponse)),
        "GetModelSpec": grpc.unary_unary_rpc_method_handler(
            servicer.GetModelSpec, response_serializer=out(pb.ModelSpec)),
        "ListModels": grpc.unary_unary_rpc_method_handler(
            servicer.ListModels, response_serializer=out(pb.ListModelsResponse)),
    }
    service = pb.DESCRIPTOR.services_by_name["Explainer"].full_name
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, handlers),))
