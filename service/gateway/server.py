"""The gateway's grpc.aio server: the Explainer servicer, gRPC health checking (following
TorchServe's health), server reflection, optional TLS and message-size limits, and an
interceptor that logs any unexpected exception of a handler with its traceback (method, model
and request id; never metadata, so never a token) and answers INTERNAL without its text."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import signal

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from service._proto.explain.v1 import explain_pb2 as pb

from .config import GatewayConfig
from .servicer import ExplainerServicer, add_to_server
from .upstream import TorchServe

log = logging.getLogger("service.gateway")
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Explainer"].full_name


async def _follow_health(upstream: TorchServe, checker: health.aio.HealthServicer,
                         interval: float) -> None:
    """Every ``interval`` s: SERVING while TorchServe answers Ping as healthy with the current
    inference key (re-read from the key file, which the supervisor renews). A failed ping is
    retried once after 0.5 s before the status turns NOT_SERVING (TorchServe rewrites the key
    file in place; a read in that moment finds no key). Changes are logged."""
    current = None
    while True:
        ok = await upstream.healthy()
        if not ok:
            await asyncio.sleep(0.5)
            ok = await upstream.healthy()
        status = (health_pb2.HealthCheckResponse.SERVING if ok
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        if status != current:
            (log.info if ok else log.warning)(
                "health: %s (TorchServe %s)", health_pb2.HealthCheckResponse.ServingStatus.Name(
                    status), "answers Ping" if ok else "unreachable, unhealthy or refusing the key")
            current = status
        for name in ("", SERVICE_NAME):
            await checker.set(name, status)
        await asyncio.sleep(interval)


def _describe(method: str, request: object) -> str:
    model = getattr(request, "model", "") if request is not None else ""
    rid = getattr(request, "request_id", "") if request is not None else ""
    return f"{method} (model {model!r}, request_id {rid!r})" if model or rid else method


class LogUnexpected(grpc.aio.ServerInterceptor):
    """Unary and bidirectional handlers: an exception that is not a gRPC abort is logged with
    its traceback and answered INTERNAL with a fixed message (its text may hold request data).
    Requests that do not decode are the servicer's to refuse (``servicer.add_to_server``)."""

    async def intercept_service(self, continuation, details):
        handler = await continuation(details)
        if handler is None:
            return None
        method = details.method
        message = "internal error in the gateway (logged)"

        if handler.unary_unary and inspect.iscoroutinefunction(handler.unary_unary):
            inner = handler.unary_unary

            async def unary(request, context):
                try:
                    return await inner(request, context)
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    log.exception("unexpected error in %s", _describe(method, request))
                    await context.abort(grpc.StatusCode.INTERNAL, message)

            return grpc.unary_unary_rpc_method_handler(
                unary, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_stream and inspect.isasyncgenfunction(handler.stream_stream):
            inner_stream = handler.stream_stream

            async def stream(request_iterator, context):
                try:
                    async for item in inner_stream(request_iterator, context):
                        yield item
                except grpc.aio.AbortError:
                    raise
                except Exception:
                    log.exception("unexpected error in %s", method)
                    await context.abort(grpc.StatusCode.INTERNAL, message)

            return grpc.stream_stream_rpc_method_handler(
                stream, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler


async def build_server(config: GatewayConfig) -> tuple[grpc.aio.Server, TorchServe, asyncio.Task]:
    """A started server, its TorchServe client and the health-following task."""
    size = config.max_message_bytes
    server = grpc.aio.server(interceptors=[LogUnexpected()],
                             options=[("grpc.max_receive_message_length", size),
                                      ("grpc.max_send_message_length", size)])
    upstream = TorchServe(config)
    add_to_server(ExplainerServicer(upstream, config), server)  # byte-level parsing: see servicer
    checker = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(checker, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
         reflection.SERVICE_NAME), server)
    if config.tls_cert:
        with open(config.tls_key, "rb") as k, open(config.tls_cert, "rb") as c:  # type: ignore[arg-type]
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(config.listen, creds)
    else:
        port = server.add_insecure_port(config.listen)
    if port == 0:
        raise OSError(f"cannot listen on {config.listen}")
    await server.start()
    task = asyncio.ensure_future(_follow_health(upstream, checker, config.health_interval_s))
    log.info("Explainer gateway on %s (port %d) -> TorchServe %s", config.listen, port,
             config.torchserve)
    return server, upstream, task


async def serve(config: GatewayConfig) -> None:
    server, upstream, task = await build_server(config)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    task.cancel()
    await server.stop(grace=5)
    await upstream.close()
