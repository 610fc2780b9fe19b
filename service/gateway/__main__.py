"""``python -m service.gateway [--listen HOST:PORT] [--torchserve HOST:PORT] ...``"""

from __future__ import annotations

import argparse
import asyncio
import logging

from .config import GatewayConfig
from .server import serve


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m service.gateway", description=__doc__)
    p.add_argument("--listen", help="address to serve on (default 127.0.0.1:50051)")
    p.add_argument("--torchserve", help="TorchServe gRPC inference address (default 127.0.0.1:7070)")
    p.add_argument("--inference-url",
                   help="TorchServe REST inference API URL, for Explain and Predict (default "
                        "http://127.0.0.1:8080; \"\": over gRPC)")
    p.add_argument("--upstream-connections", type=int,
                   help="REST connections to TorchServe kept at most (default 64)")
    p.add_argument("--management-url", help="TorchServe management API URL")
    p.add_argument("--key-file", help="TorchServe key_file.json, for the management API")
    p.add_argument("--tls-cert", help="PEM certificate chain (enables TLS, with --tls-key)")
    p.add_argument("--tls-key", help="PEM private key")
    p.add_argument("--max-message-bytes", type=int)
    p.add_argument("--default-timeout-s", type=float)
    p.add_argument("--stream-concurrency", type=int)
    a = p.parse_args(argv)
    config = GatewayConfig.from_env(
        listen=a.listen, torchserve=a.torchserve, inference_url=a.inference_url,
        upstream_connections=a.upstream_connections, management_url=a.management_url,
        key_file=a.key_file, tls_cert=a.tls_cert, tls_key=a.tls_key,
        max_message_bytes=a.max_message_bytes, default_timeout_s=a.default_timeout_s,
        stream_concurrency=a.stream_concurrency)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    asyncio.run(serve(config))


if __name__ == "__main__":
    main()
