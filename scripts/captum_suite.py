"""Run captum's own test suite against the engine and print ``P passed of T``.

    python scripts/captum_suite.py PATH_TO_CAPTUM_CHECKOUT [-k EXPR] [--list-failures] [pytest args]

PATH is a checkout of the captum repository (its ``tests/`` folder; the pip sdist has none).
Every public ``captum.attr`` class is swapped for ``service.attribution``'s of the same name by
``scripts/captum_shim.py`` (a class we lack raises). The files run are captum's gradient,
perturbation, layer, neuron, summarizer, LLM and metrics tests; the Hugging Face LLM tests
(they download models) and captum's internal utilities are left out (``EXCLUDED``). The
VLLMProvider tests patch ``openai.OpenAI``: they need the ``openai`` package installed
(``pip install openai``), else they fail on the import.
Nothing of captum's is copied into this repository.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DIRS = ("tests/attr", "tests/attr/layer", "tests/attr/neuron", "tests/attr/models", "tests/metrics")
EXCLUDED = {
    "test_llm_attr_hf_compatibility.py": "needs transformers and models from the Hugging Face hub",
    "test_approximation_methods.py": "captum-internal quadrature helpers, not public classes",
    "test_utils_batching.py": "captum-internal batching helpers",
    "test_data_parallel.py": "needs CUDA devices",
}


def test_files(checkout: pathlib.Path) -> list[str]:
    files = []
    for d in DIRS:
        for f in sorted((checkout / d).glob("test_*.py")):
            if f.name not in EXCLUDED:
                files.append(str(f.relative_to(checkout)))
    return files


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkout", type=pathlib.Path)
    ap.add_argument("--list-failures", action="store_true", help="print every failing test id")
    args, extra = ap.parse_known_args(argv)
    checkout = args.checkout.resolve()
    if not (checkout / "tests" / "attr").is_dir():
        ap.error(f"{checkout} has no tests/attr: pass a captum repository checkout")
    cmd = [sys.executable, "-m", "pytest", "-p", "scripts.captum_shim", "-q", "-rfE",
           "--no-header", "--continue-on-collection-errors", "-p", "no:cacheprovider",
           "-o", "addopts=", "-o", "filterwarnings=", "--rootdir", str(checkout),
           *extra, *test_files(checkout)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run(cmd, cwd=checkout, env=env, capture_output=True, text=True)
    out = proc.stdout
    failed_ids = re.findall(r"^(?:FAILED|ERROR) (\S+)", out, flags=re.M)
    if args.list_failures:
        sys.stdout.write(out)
    last = out.splitlines()[-1] if out else ""
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|errors?|skipped)", last)}
    passed = counts.get("passed", 0)
    failed = counts.get("failed", 0) + counts.get("error", 0) + counts.get("errors", 0)
    total = passed + failed
    if not args.list_failures:
        for tid in failed_ids:
            print("FAILED", tid)
    print(f"{passed} passed of {total} ({100.0 * passed / max(total, 1):.1f} %), "
          f"{counts.get('skipped', 0)} skipped")
    if proc.returncode not in (0, 1):
        sys.stderr.write(proc.stderr[-4000:])
        sys.stderr.write(out[-4000:])
    return 0 if total and failed == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
