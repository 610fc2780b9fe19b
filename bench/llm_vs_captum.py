"""LLM attribution, our engine vs captum, side by side in one process, on the bundled tinylm:
``python -m bench.llm_vs_captum [--repeats 5] [--threads 1] [--probes 8]``.

Needs ``make models`` (model_store/build/tinylm). For every row, both sides attribute the
planted answer of the same probe prompts (tinylm's examples.json) with the same wrapped method
and arguments (``use_cached_outputs=False`` on the token-by-token rows: captum's cached scoring
needs transformers' generation helpers, which tinylm lacks; the "one forward" rows run ours with
its default cache reuse, measured on its own in bench/llm_kv_cache.py). Runs are interleaved
(ours, captum, ours, ...) after one warm-up each; the table gives the median seconds per
prompt, the ratio captum / ours (above 1: we are faster) and the largest difference of the two
answers' seq_attr, so that a fast wrong answer shows.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import captum.attr as ca
import torch

import service.attribution as sa
from service.runtime.loader import load_model
from service.runtime.spec import load_spec

ROOT = pathlib.Path(__file__).resolve().parents[1]
ARCHIVE = ROOT / "model_store" / "build" / "tinylm"


def load() -> tuple[torch.nn.Module, Any, list[dict[str, Any]]]:
    """tinylm's model, tokenizer and template probes (with their planted answers)."""
    from service.nets import WordTokenizer

    spec = load_spec(ARCHIVE / "spec.yaml")
    model = load_model(spec, ARCHIVE).eval()
    tok = WordTokenizer.from_json(json.loads((ARCHIVE / "vocab.json").read_text()))
    examples = json.loads((ARCHIVE / "examples.json").read_text())["examples"]
    probes = [e for e in examples if "template" in e["inputs"]]
    return model, tok, probes


Row = tuple[str, Callable[[Any, Any], Any], dict[str, Any], dict[str, Any] | None]


def rows(model: torch.nn.Module) -> list[Row]:
    """(label, make(lib, tokenizer) -> LLM attribution object, our attribute kwargs, captum's
    when they differ: captum's LLM forward takes one prompt per call, so perturbations_per_eval
    > 1 fails there and its row runs captum at 1, its only working setting)."""
    def fa(lib: Any, tok: Any) -> Any:
        return lib.LLMAttribution(lib.FeatureAblation(model), tok)

    def svs(lib: Any, tok: Any) -> Any:
        return lib.LLMAttribution(lib.ShapleyValueSampling(model), tok)

    def lig(lib: Any, tok: Any) -> Any:
        return lib.LLMGradientAttribution(lib.LayerIntegratedGradients(model, model.emb), tok)

    return [
        ("FeatureAblation, token by token", fa, {"use_cached_outputs": False}, None),
        ("FeatureAblation, one forward per prompt", fa, {"forward_in_tokens": False}, None),
        ("FeatureAblation, one forward, ours ppe=8 (captum 1)", fa,
         {"forward_in_tokens": False, "perturbations_per_eval": 8},
         {"forward_in_tokens": False}),
        ("ShapleyValueSampling n_samples=4", svs, {"n_samples": 4,
                                                   "use_cached_outputs": False}, None),
        ("LayerIntegratedGradients n_steps=16", lig, {"n_steps": 16}, None),
    ]


def _inputs(lib: Any, tok: Any, probe: dict[str, Any], gradient: bool) -> Any:
    t = probe["inputs"]["template"]
    if gradient:   # LLMGradientAttribution takes token inputs
        text = t["template"].format(**t["values"])
        return lib.TextTokenInput(text, tok)
    return lib.TextTemplateInput(t["template"], values=t["values"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--probes", type=int, default=8)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    model, tok, probes = load()
    probes = probes[:opts.probes]
    print(f"tinylm, {len(probes)} template probes, torch threads {opts.threads}, "
          f"{opts.repeats} interleaved repeats after one warm-up\n")
    print("| row | ours s/prompt | captum s/prompt | captum / ours | max abs diff |")
    print("|---|---|---|---|---|")
    for label, make, our_kwargs, their_kwargs in rows(model):
        gradient = "Integrated" in label
        times: dict[str, list[float]] = {"ours": [], "captum": []}
        answers: dict[str, list[torch.Tensor]] = {"ours": [], "captum": []}
        for rep in range(opts.repeats + 1):
            for side, lib in (("ours", sa), ("captum", ca)):
                llm = make(lib, tok)
                t0 = time.perf_counter()
                got = []
                for p in probes:
                    torch.manual_seed(0)
                    kwargs = our_kwargs if side == "ours" else (their_kwargs or our_kwargs)
                    res = llm.attribute(_inputs(lib, tok, p, gradient), p["true_label"],
                                        **kwargs)
                    got.append(res.seq_attr.detach().double())
                took = (time.perf_counter() - t0) / len(probes)
                if rep:   # the first round warms up
                    times[side].append(took)
                    answers[side] = got
        ours, theirs = statistics.median(times["ours"]), statistics.median(times["captum"])
        diff = max(float((a - b).abs().max()) for a, b in zip(answers["ours"],
                                                               answers["captum"]))
        print(f"| {label} | {ours:.4f} | {theirs:.4f} | {theirs / ours:.2f}x | {diff:.2g} |",
              flush=True)


if __name__ == "__main__":
    main()
