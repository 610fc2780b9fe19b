"""``python -m model_store [NAME ...] --handler PATH``: build the bundled models' archives."""

from __future__ import annotations

import argparse
import importlib
import json
import time
from pathlib import Path

from . import RECIPES
from .archive import pack

BUILD_DIR = Path(__file__).resolve().parent / "build"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m model_store", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"models to build (default: all of {', '.join(RECIPES)})")
    parser.add_argument("--handler", type=Path, default=Path("handlers/explain_handler.py"),
                        help="TorchServe handler file packed into every archive")
    parser.add_argument("--out", type=Path, default=BUILD_DIR,
                        help="export directory: <out>/<name>.mar and <out>/<name>/ work files")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in RECIPES]
    if unknown:
        parser.error(f"unknown model(s) {unknown}; choose from {list(RECIPES)}")
    for name in args.names or RECIPES:
        start = time.perf_counter()
        built = importlib.import_module(f"model_store.{name}").build()
        mar = pack(built, args.out / name, args.out, args.handler)
        seconds = time.perf_counter() - start
        metrics = built.reports.get("metrics.json", {})
        shown = {k: v for k, v in metrics.items() if k.startswith("held_out_") or k == "purpose"}
        print(f"{name}: {mar} in {seconds:.1f}s {json.dumps(shown)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
