"""``python -m service.launcher start|stop|supervise ...`` (``make serve``, ``make serve-stop``;
``supervise`` is what ``start`` runs in the background, and the container's entry point)."""

from __future__ import annotations

import argparse
import contextlib
import logging
import pathlib
import subprocess
import sys

from service.gateway import process as gw_process

from . import ROOT, TOKEN_EXPIRATION_MIN, start, stop, supervisor
from .examples import print_banner
from .torchserve import models_properties


def _supervise(a: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    key_file = pathlib.Path(a.key_file) if a.key_file else None
    gateway_cmd = None
    if a.gateway_listen:
        gateway_cmd = tuple(gw_process.gateway_command(
            a.gateway_listen, a.torchserve_grpc, a.management_url, key_file,
            a.gateway_arg or [], a.torchserve_rest))
    host, _, port = (a.gateway_listen or "").rpartition(":")
    probe = f"{'127.0.0.1' if host in ('0.0.0.0', '', '[::]') else host}:{port}"
    torchserve_cmd = tuple(a.torchserve_cmd[1:] if a.torchserve_cmd[:1] == ["--"]
                           else a.torchserve_cmd) or None
    cfg = supervisor.SupervisorConfig(
        run_dir=pathlib.Path(a.run_dir).resolve(), gateway_cmd=gateway_cmd,
        gateway_address=probe if a.gateway_listen else None,
        gateway_log=pathlib.Path(a.gateway_log) if a.gateway_log else None,
        key_file=key_file, management_url=a.management_url,
        token_lifetime_s=a.token_expiration_min * 60.0, torchserve_cmd=torchserve_cmd)
    return supervisor.run(cfg)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m service.launcher",
                                 description=sys.modules["service.launcher"].__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    for name in ("start", "stop"):
        p = sub.add_parser(name)
        p.add_argument("--instance", default="default")
        p.add_argument("--run-root", default=str(ROOT / "run"))
        if name == "stop":
            continue
        p.add_argument("--model-store", default=str(ROOT / "model_store" / "build"))
        p.add_argument("--models", default="", help="comma-separated names (default: all)")
        p.add_argument("--auth", choices=("on", "off"), default="on")
        p.add_argument("--port-base", type=int, default=0,
                       help="first of 8 consecutive ports (default: free ports)")
        p.add_argument("--workers", type=int, default=None,
                       help="TorchServe workers of every model (default: each model's spec, "
                            "batch.workers)")
        p.add_argument("--gateway", choices=("on", "off"), default="on",
                       help="also start the gRPC Explainer gateway (default on)")
        p.add_argument("--access-log", choices=("on", "off"), default="off",
                       help="TorchServe's access log in logs/access_log.log (default off)")
        p.add_argument("--explorer", choices=("on", "off"), default="on",
                       help="also start the explorer page on 127.0.0.1 (default on)")
        p.add_argument("--token-expiration-min", type=float, default=TOKEN_EXPIRATION_MIN,
                       help="lifetime of TorchServe's inference/management keys; the "
                            "supervisor renews them a quarter of it before they expire "
                            "(default %(default)s, TorchServe's own)")
    mc = sub.add_parser("models-config", help="print config.properties lines registering every "
                        "archive of a model store with its spec's batching (the container)")
    mc.add_argument("--model-store", default=str(ROOT / "model_store" / "build"))
    mc.add_argument("--workers", type=int, default=None,
                    help="workers of every model (default: each model's spec, batch.workers)")
    s = sub.add_parser("supervise", help="keep the gateway running and the keys valid")
    s.add_argument("--run-dir", required=True, help="where tmp/gateway.pid goes")
    s.add_argument("--management-url", default="http://127.0.0.1:8081")
    s.add_argument("--key-file", help="TorchServe's key_file.json (token auth on)")
    s.add_argument("--token-expiration-min", type=float, default=TOKEN_EXPIRATION_MIN)
    s.add_argument("--gateway-listen", help="run the gateway on this address")
    s.add_argument("--torchserve-grpc", default="127.0.0.1:7070")
    s.add_argument("--torchserve-rest", default="http://127.0.0.1:8080",
                   help="TorchServe's REST inference API, for the gateway's Explain and Predict "
                        "(\"\": over gRPC)")
    s.add_argument("--gateway-log", help="the gateway's log file (default: this output)")
    s.add_argument("--gateway-arg", action="append", help="extra gateway argument (repeat)")
    s.add_argument("torchserve_cmd", nargs=argparse.REMAINDER,
                   help="-- CMD...: TorchServe in the foreground as a child (containers)")
    a = ap.parse_args(argv)
    if a.command == "supervise":
        return _supervise(a)
    if a.command == "models-config":
        sys.stdout.write(models_properties(pathlib.Path(a.model_store), a.workers))
        return 0
    run_dir = pathlib.Path(a.run_root) / a.instance
    if a.command == "stop":
        stop(run_dir)
        print(f"stopped instance {a.instance!r}")
        return 0
    store = pathlib.Path(a.model_store)
    models = [m for m in a.models.split(",") if m] or None
    try:
        server = start(store, run_dir, models, auth=a.auth == "on",
                       port_base=a.port_base or None, workers=a.workers,
                       gateway=a.gateway == "on", token_expiration_min=a.token_expiration_min,
                       explorer=a.explorer == "on", access_log=a.access_log == "on")
    except (RuntimeError, ValueError, FileNotFoundError, TimeoutError,
            subprocess.CalledProcessError) as e:
        print(f"make serve: {e}", file=sys.stderr)
        return 1
    with contextlib.suppress(KeyboardInterrupt):
        print_banner(server, store.resolve(), a.instance)
    return 0


if __name__ == "__main__":
    sys.exit(main())
