"""``python -m service.explorer --listen 127.0.0.1:8090 --inference-url http://127.0.0.1:8080
--gateway 127.0.0.1:50051``: serve the explorer page (127.0.0.1 unless told otherwise).
``--instance NAME`` takes both addresses from ``run/NAME/ports.json`` (an instance ``make serve``
started)."""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

from .config import DEFAULT_EXAMPLES, ROOT, ExplorerConfig, hosts_for


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"--listen wants host:port, got {text!r}")
    return host.strip("[]"), int(port)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m service.explorer", description=__doc__)
    ap.add_argument("--listen", type=parse_listen, default=("127.0.0.1", 8090),
                    help="host:port to serve the page on (default 127.0.0.1:8090)")
    ap.add_argument("--inference-url", default=None,
                    help="TorchServe's inference API, e.g. http://127.0.0.1:8080")
    ap.add_argument("--instance", default=None,
                    help="take the addresses from run/<instance>/ports.json (make serve)")
    ap.add_argument("--run-root", type=pathlib.Path, default=ROOT / "run")
    ap.add_argument("--gateway", default=None,
                    help="the Explainer gateway host:port (model list and specs)")
    ap.add_argument("--examples-dir", type=pathlib.Path, default=DEFAULT_EXAMPLES,
                    help="<dir>/<model>/examples.json (default: model_store/build)")
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="seconds an upstream call may take (default 300)")
    return ap


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.instance:
        ports_file = args.run_root / args.instance / "ports.json"
        if not ports_file.is_file():
            ap.error(f"no {ports_file}: start the instance first (make serve "
                     f"INSTANCE={args.instance})")
        ports = json.loads(ports_file.read_text())
        args.inference_url = args.inference_url or f"http://127.0.0.1:{ports['inference']}"
        args.gateway = args.gateway or f"127.0.0.1:{ports['gateway']}"
    if not args.inference_url:
        ap.error("give --inference-url (or --instance NAME)")
    import uvicorn

    from .app import create_app

    host, port = args.listen
    config = ExplorerConfig(inference_url=args.inference_url, gateway=args.gateway,
                            examples_dir=args.examples_dir, timeout_s=args.timeout,
                            allowed_hosts=hosts_for(host))
    print(f"explorer: http://{host}:{port}/ (service {args.inference_url}, "
          f"gateway {args.gateway or 'none'})", flush=True)
    uvicorn.run(create_app(config), host=host, port=port, log_level="warning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
