"""The gateway's grpc.aio server: the Explainer servicer, gRPC health checking (following
TorchServe's health), server reflection, optional TLS and message-size limits."""

from __future__ import annotations

import asyncio
import contextlib
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
    while True:
        ok = await upstream.healthy()
        status = (health_pb2.HealthCheckResponse.SERVING if ok
                  else health_pb2.HealthCheckResponse.NOT_SERVING)
        for name in ("", SERVICE_NAME):
            await checker.set(name, status)
        await asyncio.sleep(interval)


async def build_server(config: GatewayConfig) -> tuple[grpc.aio.Server, TorchServe, asyncio.Task]:
    """A started server, its TorchServe client and the health-following task."""
    size = config.max_message_bytes
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", size),
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
