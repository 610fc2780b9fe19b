"""Key/value cache reuse in LLM attribution and generation, cached vs uncached, side by side:
``python -m bench.llm_kv_cache [--repeats 5] [--threads 1]``.

Needs ``make models`` (model_store/build/tinylm). Every row runs our engine twice on the same
work, ``use_cached_outputs=True`` (the cache: token-by-token steps on it, the prompt prefix no
feature changes run once per call) and ``False`` (every forward reruns the whole sequence),
interleaved after one warm-up each; the table gives median seconds per call, the ratio uncached
/ cached (above 1: the cache pays) and the largest difference of the two answers (seq_attr, or
generated ids), so that a fast wrong answer shows. Generation rows time ``model.generate`` with
``use_cache`` on and off (greedy, no stop token).

Models: the bundled tinylm (trained; context 24 tokens) on its 4 template probes and on one long
probe whose slot is near the end; and, to see where the cache pays, a larger TinyCausalLM with
seeded random weights (width 256, 4 layers, context 512) on a 400-token prompt with two slots
near its end (timing only: its answers are meaningless, but cached and uncached must agree).
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

import service.attribution as sa
from bench.llm_vs_captum import load
from bench.machine_load import LoadMeter
from service.nets import TinyCausalLM

LONG_TINY = ("in my opinion after a trip to spain i think that bob says that the capital of "
             "{country} is")

Work = Callable[[bool], Any]   # cached? -> an answer tensor


def _attr_work(model: torch.nn.Module, tok: Any, method: Any, cases: list[tuple[Any, str]],
               **kwargs: Any) -> Work:
    """seq_attr of every (input, target) case, concatenated ``(sum n_features,)``."""
    def run(cached: bool) -> torch.Tensor:
        out = []
        for inp, target in cases:
            torch.manual_seed(0)
            llm = sa.LLMAttribution(method(model), tok)
            res = llm.attribute(inp, target, use_cached_outputs=cached, **kwargs)
            out.append(res.seq_attr.detach().double())
        return torch.cat(out)
    return run


def _gen_work(model: torch.nn.Module, ids: torch.Tensor, n_new: int) -> Work:
    def run(cached: bool) -> torch.Tensor:
        return model.generate(ids, max_new_tokens=n_new, use_cache=cached).double()
    return run


def rows() -> list[tuple[str, Work, int]]:
    """(label, work, calls the work makes: the time is per call)."""
    model, tok, probes = load()
    cases = []
    for p in probes:
        t = p["inputs"]["template"]
        cases.append((sa.TextTemplateInput(t["template"], values=t["values"]), p["true_label"]))
    long = [(sa.TextTemplateInput(LONG_TINY, values={"country": "peru"}), "lima .")]
    fa, svs = sa.FeatureAblation, sa.ShapleyValueSampling
    one, tokens = {"forward_in_tokens": False}, {"forward_in_tokens": True}
    n_long = len(tok.encode(LONG_TINY.format(country="peru")))
    short = tok.encode("the capital of", return_tensors="pt")
    out: list[tuple[str, Work, int]] = [
        ("tinylm probes, FA one forward ppe=8 (the runtime's)",
         _attr_work(model, tok, fa, cases, perturbations_per_eval=8, **one), len(cases)),
        ("tinylm probes, FA token by token ppe=8",
         _attr_work(model, tok, fa, cases, perturbations_per_eval=8, **tokens), len(cases)),
        ("tinylm probes, SVS n_samples=4 token by token ppe=8",
         _attr_work(model, tok, svs, cases, n_samples=4, perturbations_per_eval=8, **tokens),
         len(cases)),
        (f"tinylm long probe ({n_long} tokens, slot at {n_long - 2}), FA one forward",
         _attr_work(model, tok, fa, long, **one), 1),
        (f"tinylm long probe ({n_long} tokens), FA token by token",
         _attr_work(model, tok, fa, long, **tokens), 1),
        (f"tinylm generate {24 - short.size(1)} tokens after {short.size(1)}",
         _gen_work(model, short, 24 - short.size(1)), 1),
    ]
    torch.manual_seed(0)
    big = TinyCausalLM(tok.vocab_size, dim=256, n_layers=4, n_heads=4, max_len=512).eval()
    words = tok.words[3:]
    filler = " ".join(words[i % len(words)] for i in range(396))
    big_inp = [(sa.TextTemplateInput(filler + " {} the {} is", values=["bob", "france"]),
                "paris . the")]
    prompt = tok.encode(filler, return_tensors="pt")[:, :256]
    out += [
        ("random 256x4 LM, 400-token prompt, 2 late slots, FA one forward ppe=8",
         _attr_work(big, tok, fa, big_inp, perturbations_per_eval=8, **one), 1),
        ("random 256x4 LM, same, FA token by token ppe=8",
         _attr_work(big, tok, fa, big_inp, perturbations_per_eval=8, **tokens), 1),
        ("random 256x4 LM, generate 64 tokens after 256", _gen_work(big, prompt, 64), 1),
    ]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    opts = parser.parse_args()
    torch.set_num_threads(opts.threads)
    meter = LoadMeter(pathlib.Path("/nonexistent/no-torchserve"))   # this process only
    meter.start()
    print(f"torch threads {opts.threads}, {opts.repeats} interleaved repeats after one "
          "warm-up; seconds per call\n")
    print("| row | cached s | uncached s | uncached / cached | max abs diff |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        for label, work, calls in rows():
            times: dict[bool, list[float]] = {True: [], False: []}
            answers: dict[bool, torch.Tensor] = {}
            for rep in range(opts.repeats + 1):
                for cached in (True, False):
                    t0 = time.perf_counter()
                    answers[cached] = work(cached)
                    if rep:   # the first round warms up
                        times[cached].append((time.perf_counter() - t0) / calls)
            c, u = statistics.median(times[True]), statistics.median(times[False])
            diff = float((answers[True] - answers[False]).abs().max())
            print(f"| {label} | {c:.4f} | {u:.4f} | {u / c:.2f}x | {diff:.2g} |", flush=True)
    print(f"\n{meter.stop().describe()}")


if __name__ == "__main__":
    main()
