"""``python -m service.explorer --listen 127.0.0.1:8090 --inference-url http://127.0.0.1:8080
--gateway 127.0.0.1:50051``: serve the explorer page (127.0.0.1 unless told otherwise)."""

from __future__ import annotations

import argparse
import pathlib
import sys

from .config import DEFAULT_EXAMPLES, ExplorerConfig


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants host:port, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m service.explorer", description=__doc__)
    ap.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8090),
                    help="host:port to serve the page on (default 127.0.0.1:8090)")
    ap.add_argument("--inference-url", required=True,
                    help="TorchServe's inference API, e.g. http://127.0.0.1:8080")
    ap.add_argument("--gateway", default=None,
                    help="the Explainer gateway host:port (model list and specs)")
    ap.add_argument("--examples-dir", type=pathlib.Path, default=DEFAULT_EXAMPLES,
                    help="<dir>/<model>/examples.json (default: model_store/build)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds an upstream call may take (default 300)")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import uvicorn

    from .app import create_app

    host, port = args.listen
    config = ExplorerConfig(inference_url=args.inference_url, gateway=args.gateway,
                            examples_dir=args.examples_dir, timeout_s=args.timeout)
    print(f"explorer: http://{host}:{port}/ (service {args.inference_url}, "
          f"gateway {args.gateway or 'none'})", flush=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
