"""The gateway's typed, frozen configuration, built once from arguments and the environment."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass


@dataclass(frozen=True)
class GatewayConfig:
    listen: str = "127.0.0.1:50051"
    torchserve: str = "127.0.0.1:7070"           # TorchServe's gRPC inference address
    # TorchServe's REST inference API, for Explain and Predict ("": over gRPC as the rest)
    inference_url: str = "http://127.0.0.1:8080"
    upstream_connections: int = 64               # REST connections to TorchServe, at most
    management_url: str = "http://127.0.0.1:8081"  # TorchServe's REST management API
    key_file: str | None = None                  # TorchServe's key_file.json (token auth)
    tls_cert: str | None = None
    tls_key: str | None = None
    max_message_bytes: int = 64 * 2**20          # both directions, client and TorchServe side
    default_timeout_s: float = 120.0             # when the client sets no deadline
    stream_concurrency: int = 32                 # ExplainStream requests in flight per stream
    health_interval_s: float = 5.0

    def __post_init__(self) -> None:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key must be given together")
        for name in ("max_message_bytes", "stream_concurrency", "upstream_connections"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        u = urllib.parse.urlsplit(self.inference_url)
        if self.inference_url and (u.scheme not in ("http", "https") or not u.hostname):
            raise ValueError(f"inference_url: {self.inference_url!r} is not an http(s):// URL "
                             "with a host")
        if self.default_timeout_s <= 0:
            raise ValueError("default_timeout_s must be > 0")

    @staticmethod
    def from_env(**overrides: object) -> GatewayConfig:
        """EXPLAIN_GATEWAY_* environment variables, then explicit overrides (None = unset)."""
        env = os.environ
        values: dict[str, object] = {}
        for field, cast in (("listen", str), ("torchserve", str), ("inference_url", str),
                            ("upstream_connections", int), ("management_url", str),
                            ("key_file", str), ("tls_cert", str), ("tls_key", str),
                            ("max_message_bytes", int), ("default_timeout_s", float),
                            ("stream_concurrency", int)):
            raw = env.get(f"EXPLAIN_GATEWAY_{field.upper()}")
            if raw or (raw == "" and field == "inference_url"):   # set empty: gRPC only
                values[field] = cast(raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return GatewayConfig(**values)  # type: ignore[arg-type]
