"""Our handler at two revisions, side by side in one run: ``python -m bench.revisions --base REF``.

The working tree and a temporary git worktree of ``REF`` each load the bundled models'
archives (``model_store/build``, built from the working tree) with their own
``handlers/explain_handler.py`` and ``service`` package, in a fresh process per round, and time
``handle()`` on batches of 8 of the service bench's bodies: predictions (explain header false)
and IntegratedGradients n_steps=32 explanations. Rounds alternate which revision runs first;
the table gives each round's median microseconds per request and the median over rounds of the
per-round speed-up (base time / working tree time).

It measures in-process handler cost only (no TorchServe, no load): what a change to decode,
validation, response building or encoding saves per request, with the machine's drift shared
by both revisions. The served effect is what ``make bench-service`` reports.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parent.parent
BUILD = ROOT / "model_store" / "build"
KINDS = ("predict", "explain")


class _Context:
    """The parts of TorchServe's context the handler reads (kept here, not imported: the
    worker must not import this tree's bench package while it runs another tree's handler)."""

    def __init__(self, model_dir: str, batch: int, explain: bool) -> None:
        self.system_properties = {"model_dir": model_dir, "gpu_id": None}
        self.request_ids = {i: f"r{i}" for i in range(batch)}
        self.metrics = None
        self.explain = "true" if explain else "false"

    def get_request_header(self, idx: int, key: str) -> str | None:
        return self.explain if key == "explain" else None

    def get_all_request_header(self, idx: int) -> dict[str, str]:
        return {"Content-Type": "application/json", "explain": self.explain}

    def set_response_status(self, code: int, phrase: str, idx: int) -> None:
        pass

    def set_response_content_type(self, idx: int, value: str) -> None:
        pass


def worker(tree: str, spec: dict) -> dict:
    """In a process whose imports resolve to ``tree``: median us per request of each model's
    prediction and explanation batches through that tree's handler."""
    sys.path[0] = tree  # not this script's directory: bench's modules must not shadow any
    import torch

    torch.set_num_threads(spec["threads"])
    from handlers.explain_handler import ExplainHandler  # the tree's own

    loaded = pathlib.Path(sys.modules["handlers.explain_handler"].__file__ or "").resolve()
    assert loaded.is_relative_to(pathlib.Path(tree).resolve()), loaded
    out: dict = {}
    batch = spec["batch"]
    for model, bodies in spec["models"].items():
        handler = ExplainHandler()
        handler.initialize(_Context(str(BUILD / model), batch, True))
        for kind in KINDS:
            ctx = _Context(str(BUILD / model), batch, kind == "explain")
            text = bodies[kind]
            answer = handler.handle([{"body": json.loads(text)}], ctx)  # warm, and checked
            assert "error" not in json.loads(answer[0]), answer[0][:300]
            times = []
            deadline = time.perf_counter() + spec["seconds"]
            while len(times) < spec["batches"] and (time.perf_counter() < deadline
                                                    or len(times) < 20):
                rows = [{"body": json.loads(text)} for _ in range(batch)]
                t = time.perf_counter()
                handler.handle(rows, ctx)
                times.append((time.perf_counter() - t) * 1e6 / batch)
            out[f"{model}/{kind}"] = statistics.median(times)
    return out


def _bodies(models: list[str]) -> dict:
    from bench.service_throughput import bodies

    out = {}
    for m in models:
        b = bodies(m, 32)
        out[m] = {"explain": b["json"].decode(), "predict": b["predict"].decode()}
    return out


def _run(tree: pathlib.Path, spec_file: pathlib.Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run([sys.executable, str(pathlib.Path(__file__).resolve()), "--worker",
                           str(tree), str(spec_file)], cwd=tree, env=env, capture_output=True,
                          text=True, check=False, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"the worker in {tree} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--worker":
        spec = json.loads(pathlib.Path(sys.argv[3]).read_text())
        print(json.dumps(worker(sys.argv[2], spec)))
        return
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the git revision to compare against")
    ap.add_argument("--models", default="breast_cancer,recommender,digits")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--batches", type=int, default=400, help="per model, kind and round")
    ap.add_argument("--seconds", type=float, default=4.0,
                    help="at most this long per model, kind and round (at least 20 batches)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads, as the bench's workers")
    opts = ap.parse_args()
    models = [m for m in opts.models.split(",") if m]
    missing = [m for m in models if not (BUILD / m).is_dir()]
    if missing:
        raise SystemExit(f"no built model for {missing} in {BUILD}: run `make models` first")
    rev = subprocess.run(["git", "rev-parse", "--short", opts.base], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.strip()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                          capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           check=True, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="bench-revisions-") as tmp:
        base_tree = pathlib.Path(tmp) / "base"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(base_tree), rev],
                       cwd=ROOT, check=True)
        try:
            spec_file = pathlib.Path(tmp) / "spec.json"
            spec_file.write_text(json.dumps({
                "models": _bodies(models), "batch": 8, "batches": opts.batches,
                "seconds": opts.seconds, "threads": opts.threads}))
            trees = {"base": base_tree, "head": ROOT}
            rounds: list[dict[str, dict]] = []
            for r in range(opts.rounds):
                order = ("base", "head") if r % 2 == 0 else ("head", "base")
                got = {name: _run(trees[name], spec_file) for name in order}
                rounds.append(got)
                print(f"round {r} ({' then '.join(order)}): " + ", ".join(
                    f"{k} {got['base'][k]:.0f}->{got['head'][k]:.0f} us"
                    for k in got["head"]), flush=True)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(base_tree)], cwd=ROOT,
                           check=False)
    label = f"{head}{' + uncommitted changes' if dirty else ''}"
    print(f"\nHandler in process, base {rev} vs working tree {label}: batches of 8, torch "
          f"threads {opts.threads}, {opts.rounds} alternating rounds, median us per request "
          "(median over rounds), speed-up = base / working tree (median of per-round ratios)\n")
    print("| model | kind | base us | working tree us | speed-up | per-round speed-ups |")
    print("|---|---|---|---|---|---|")
    for key in rounds[0]["head"]:
        model, kind = key.split("/")
        b = [g["base"][key] for g in rounds]
        h = [g["head"][key] for g in rounds]
        ratios = [x / y for x, y in zip(b, h)]
        print(f"| {model} | {kind} | {statistics.median(b):.1f} | {statistics.median(h):.1f} | "
              f"**{statistics.median(ratios):.2f}x** | "
              f"{' '.join(f'{x:.2f}' for x in ratios)} |")


if __name__ == "__main__":
    main()
