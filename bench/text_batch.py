"""A TorchServe batch of text requests, generation fused across the batch vs request by request,
side by side in one process: ``python -m bench.text_batch [--repeats 9] [--threads 1]``.

Needs ``make models`` (model_store/build/tinylm). Two ``TextExecutor`` on the same model run the
same batch: ``fuse=True`` (the served path: every request validated, then one greedy generation
for the whole batch, one forward pass a step, which also scores the tokens; then each
explanation) and ``fuse=False`` (each request alone: the model's own ``generate``, one more
forward pass scoring the generation, then the explanation: the path before fusion). The batch
is tinylm's 8 examples (4 prompt lengths, 7-13 tokens; each answer is 2 tokens, the stop token
the second), or with ``--batch 1`` the first of them. Runs are interleaved (fused, per request,
fused, ...) after one warm-up each; the table gives the median milliseconds per batch, the
ratio per request / fused (above 1: fusing pays) and whether the two gave the same answers
(labels; probabilities within 1e-6 relative, as float32 rounding differs with the batch's
shape; seq_attr within 1e-5), so that a fast wrong answer shows.

A second table backs the choice ``service.runtime.generate`` makes between padding and the
model's key/value cache: greedy generation alone (``generate.greedy``: prompts of several
lengths padded and rerun whole each step, prompts of one length on the cache) against the
alternative of decoding each group of equal-length prompts on its own cache (one forward per
group and step), on the 8 example prompts, on 8 prompts of one length and on one prompt, with
the stop token and without (8 new tokens).
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import statistics
import time
from typing import Any

import numpy as np
import torch

from bench.machine_load import LoadMeter
from service.runtime import Limits, Request
from service.runtime.generate import Row, greedy
from service.runtime.loader import load_model
from service.runtime.request import TemplatePayload, TextPayload
from service.runtime.spec import load_spec
from service.runtime.text import TextExecutor

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "model_store" / "build" / "tinylm"

ROWS = [("FeatureAblation", True, "FeatureAblation"),
        ("LayerIntegratedGradients", True, "LayerIntegratedGradients"),
        ("predictions only (explain=False)", False, "")]


def payloads() -> list[Any]:
    examples = json.loads((ARCHIVE / "examples.json").read_text())["examples"]
    out: list[Any] = []
    for e in examples:
        i = e["inputs"]
        out.append(TemplatePayload(i["template"]["template"], dict(i["template"]["values"]))
                   if "template" in i else TextPayload(i["text"]))
    return out


def same(a: list[Any], b: list[Any]) -> bool:
    for x, y in zip(a, b, strict=True):
        if isinstance(x, Exception) or isinstance(y, Exception):
            return False
        if x.prediction.label != y.prediction.label or not math.isclose(
                x.prediction.probability, y.prediction.probability, rel_tol=1e-6):
            return False
        if (x.text is None) != (y.text is None):
            return False
        if x.text is not None and not np.allclose(x.text.seq_attr, y.text.seq_attr,
                                                  rtol=1e-5, atol=1e-5):
            return False
    return True


@torch.no_grad()
def grouped_on_cache(model: torch.nn.Module, rows: list[Row], stop_id: int | None) -> list[Any]:
    """The alternative to ``greedy``: each group of equal-length prompts decoded on its own
    key/value cache (rows that have stopped stay in their group's batch)."""
    groups: dict[int, list[int]] = {}
    for k, r in enumerate(rows):
        groups.setdefault(r.prompt_ids.numel(), []).append(k)
    out: list[Any] = [None] * len(rows)
    for ks in groups.values():
        x = torch.stack([rows[k].prompt_ids for k in ks])                  # (group, n_prompt)
        done = torch.zeros(len(ks), dtype=torch.bool)
        past, made = None, []
        for _ in range(max(rows[k].n_new for k in ks)):
            o = model(input_ids=x, past_key_values=past, use_cache=True)
            past, last = o.past_key_values, o.logits[:, -1]                # (group, vocab)
            nxt = last.argmax(-1)
            made.append((nxt, torch.log_softmax(last.double(), -1).gather(1, nxt[:, None])))
            x = nxt[:, None]
            if stop_id is not None:
                done |= nxt == stop_id
                if bool(done.all()):
                    break
        for j, k in enumerate(ks):
            out[k] = torch.stack([t[j] for t, _ in made])
    return out


def generation_rows(ex: TextExecutor) -> None:
    tok, model = ex.tokenizer, ex.model
    prompts = [tok.encode(p.text if isinstance(p, TextPayload) else
                          p.template.format(**p.values), return_tensors="pt")[0]
               for p in payloads()]
    cases = [("8 example prompts (4 lengths)", prompts), ("8 prompts of one length",
                                                          [prompts[0]] * 8),
             ("1 prompt", prompts[:1])]
    print("\n| greedy generation | generate.greedy ms | per length on the cache ms | "
          "cache / greedy |")
    print("|---|---|---|---|")
    for label, ps in cases:
        for stop, tail in ((ex.stop_id, "stop token (2 new)"), (None, "8 new")):
            rows = [Row(p, 8, math.inf) for p in ps]
            times: dict[str, list[float]] = {"greedy": [], "cache": []}
            for rep in range(16):
                for name, fn in (("greedy", greedy), ("cache", grouped_on_cache)):
                    t0 = time.perf_counter()
                    fn(model, rows, stop)
                    if rep:
                        times[name].append((time.perf_counter() - t0) * 1e3)
            g, c = statistics.median(times["greedy"]), statistics.median(times["cache"])
            print(f"| {label}, {tail} | {g:.2f} | {c:.2f} | {c / g:.2f}x |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=8, help="requests per batch (at most 8)")
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    spec = load_spec(ARCHIVE / "spec.yaml")
    model = load_model(spec, ARCHIVE)
    limits = Limits.build(spec, env={})
    executors = {fuse: TextExecutor(model, spec, ARCHIVE, limits=limits, fuse=fuse)
                 for fuse in (True, False)}
    inputs = payloads()[:opts.batch]
    meter = LoadMeter(pathlib.Path("/nonexistent/no-torchserve"))   # this process only
    meter.start()
    print(f"tinylm, batches of {len(inputs)} requests, torch threads {opts.threads}, "
          f"{opts.repeats} interleaved repeats after one warm-up; ms per batch\n")
    print("| row | fused ms | per request ms | per request / fused | same answers |")
    print("|---|---|---|---|---|")
    for label, explain, algorithm in ROWS:
        times: dict[bool, list[float]] = {True: [], False: []}
        answers: dict[bool, list[Any]] = {}
        for rep in range(opts.repeats + 1):
            for fuse in (True, False):
                batch = [Request(explain=explain, inputs=p, algorithm=algorithm,
                                 received_at=time.monotonic()) for p in inputs]
                t0 = time.perf_counter()
                answers[fuse] = executors[fuse].run(batch)
                if rep:   # the first round warms up
                    times[fuse].append((time.perf_counter() - t0) * 1e3)
        f, u = statistics.median(times[True]), statistics.median(times[False])
        print(f"| {label} | {f:.1f} | {u:.1f} | {u / f:.2f}x | "
              f"{'yes' if same(answers[True], answers[False]) else 'NO'} |", flush=True)
    generation_rows(executors[True])
    print(f"\n{meter.stop().describe()}")


if __name__ == "__main__":
    main()
