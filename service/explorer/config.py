"""The explorer's configuration: built once from the command line or by the caller."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_EXAMPLES = ROOT / "model_store" / "build"


@dataclass(frozen=True)
class ExplorerConfig:
    inference_url: str                     # TorchServe REST, e.g. http://127.0.0.1:8080
    gateway: str | None = None             # the Explainer gateway host:port (specs, model list)
    examples_dir: pathlib.Path = DEFAULT_EXAMPLES  # <dir>/<model>/examples.json (make models)
    timeout_s: float = 300.0               # upstream timeout of one call (resnet18 IG is slow)
    max_body_bytes: int = 16 * 2**20       # bodies the proxy forwards (TorchServe's own limit)
    # Host headers answered (None: any). On a loopback address only loopback names, so a web
    # page elsewhere cannot reach the explorer by DNS rebinding.
    allowed_hosts: tuple[str, ...] | None = None


LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


def hosts_for(listen_host: str) -> tuple[str, ...] | None:
    return LOOPBACK if listen_host in LOOPBACK else None
