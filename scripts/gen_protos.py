"""Generate the Python stubs for protos/ into service/_proto/ with grpcio-tools.

Usage: ``python scripts/gen_protos.py [OUT_DIR]``. The outputs are committed and never edited by
hand; tests/unit/test_proto_generated.py fails when they are stale.
"""

from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
PROTOS = ROOT / "protos"


def generate(out_dir: pathlib.Path) -> list[pathlib.Path]:
    import grpc_tools
    from grpc_tools import protoc

    out_dir.mkdir(parents=True, exist_ok=True)
    sources = sorted(str(p.relative_to(PROTOS)) for p in PROTOS.rglob("*.proto"))
    include = pathlib.Path(grpc_tools.__file__).parent / "_proto"
    args = ["protoc", f"-I{PROTOS}", f"-I{include}", f"--python_out={out_dir}",
            f"--pyi_out={out_dir}", f"--grpc_python_out={out_dir}", *sources]
    if protoc.main(args) != 0:
        raise SystemExit(f"protoc failed: {' '.join(args)}")
    written = []
    for src in sources:
        pkg = out_dir / pathlib.Path(src).parent
        for d in [pkg, *pkg.relative_to(out_dir).parents]:
            (out_dir / d / "__init__.py").touch()
        # protoc emits imports rooted at protos/ ("from explain.v1 import ..."); root them in
        # the service._proto package instead.
        for f in pkg.glob("*_pb2*.py"):
            text = f.read_text()
            for top in sorted({pathlib.Path(s).parts[0] for s in sources}):
                text = text.replace(f"from {top}.", f"from service._proto.{top}.")
                text = text.replace(f"from {top} import", f"from service._proto.{top} import")
            f.write_text(text)
        written.extend(sorted(pkg.glob("*_pb2*")))
    return written


if __name__ == "__main__":
    out = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "service" / "_proto"
    for path in generate(out):
        print(path.relative_to(out.parent) if out.parent in path.parents else path)
