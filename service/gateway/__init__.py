"""The gRPC gateway: a typed ``Explainer`` service that forwards into TorchServe, so gRPC and REST
requests share TorchServe's batching queue. Run it with ``python -m service.gateway``."""

from .config import GatewayConfig
from .server import build_server, serve

__all__ = ["GatewayConfig", "build_server", "serve"]
