"""The Explainer servicer: a thin adapter. Each call becomes one TorchServe Predictions call
carrying the serialized request and the explain marker; the handler's ExplainReply becomes the
response or a status with the same message REST gives (its Error carries the gRPC code the wire
layer chose). Conversions live in service.wire."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc

from .config import GatewayConfig
from .upstream import TorchServe, UpstreamError

PASSED_METADATA = ("authorization",)
_MARGIN_S = 0.05  # leave the gateway time to answer before the client's deadline


class CallError(Exception):
    """What one call answers when it fails: a gRPC status and, when the handler refused the
    request, its Error message."""

    def __init__(self, code: grpc.StatusCode, message: str, error: pb.Error | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.error = code, message, error


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
            raise CallError(grpc.StatusCode.INVALID_ARGUMENT, "model: is required")
        try:
            raw = await self.upstream.predictions(model, version, inputs, metadata, timeout)
        except UpstreamError as e:
            raise CallError(e.code, e.message) from None
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
        if e.error is not None:
            context.set_trailing_metadata((("explain-error-code", e.error.code),
                                           ("explain-error-field", e.error.field)))
        await context.abort(e.code, e.message)

    # -- RPCs -------------------------------------------------------------------------------

    async def Explain(self, request: pb.ExplainRequest, context) -> pb.ExplainResponse:
        try:
            return await self._forward(request, True, context)
        except CallError as e:
            await self._abort(context, e)
            raise  # unreachable: abort raises

    async def Predict(self, request: pb.ExplainRequest, context) -> pb.ExplainResponse:
        try:
            return await self._forward(request, False, context)
        except CallError as e:
            await self._abort(context, e)
            raise

    async def ExplainStream(self, request_iterator: AsyncIterator[pb.ExplainRequest],
                            context) -> AsyncIterator[pb.ExplainResponse]:
        """Requests are forwarded concurrently (so TorchServe can batch and fuse them); answers
        come back as they complete, each tagged with its request's id."""
        limit = asyncio.Semaphore(self.config.stream_concurrency)
        done: asyncio.Queue = asyncio.Queue()
        running: set[asyncio.Future] = set()  # strong references until each task finishes
        pending = 0
        reading = True

        async def one(req: pb.ExplainRequest) -> None:
            try:
                resp = await self._forward(req, True, context)
                resp.request_id = req.request_id
            except CallError as e:
                error = e.error or pb.Error(code=e.code.name, message=e.message)
                resp = pb.ExplainResponse(model=req.model, request_id=req.request_id,
                                          error=error)
            finally:
                limit.release()
            await done.put(resp)

        async def read() -> None:
            nonlocal pending, reading
            n = 0
            try:
                async for req in request_iterator:
                    n += 1
                    if not req.request_id:
                        req.request_id = str(n)
                    await limit.acquire()
                    pending += 1
                    task = asyncio.ensure_future(one(req))
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
        finally:
            reader.cancel()
            for task in running:
                task.cancel()

    async def GetModelSpec(self, request: pb.GetModelSpecRequest, context) -> pb.ModelSpec:
        try:
            reply = await self._call(request.model, request.model_version, {"spec": b"1"},
                                     self._metadata(context), self._timeout(context))
        except CallError as e:
            await self._abort(context, e)
            raise
        return reply.spec

    async def ListModels(self, request: pb.ListModelsRequest, context) -> pb.ListModelsResponse:
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
