"""tinylm: a tiny causal LM trained on generated sentences with planted facts.

The corpus states two kinds of facts, each with distractor words around it:
- "the capital of <country> is <city> ." (12 countries), and
- "<name> works as a <job> ." (12 people),
inside prompt templates that add a distracting country or name ("after a trip to spain i think
the capital of france is"). The cause of each answer is known: the country (for the city) and
the name (for the job), never the distractor. During training, prompt words are replaced by
``<unk>`` at random (the baseline token), so the model has seen a word go missing and leans on
the word that carries the fact.

The build checks, and fails otherwise, that on every probe prompt (held out from training, one
per fact and template with a distractor) the model answers the planted fact and both
``LLMAttribution(FeatureAblation)`` over the template's slots and
``LLMGradientAttribution(LayerIntegratedGradients)`` over the prompt's tokens put the cause on
top. ``planted.json`` lists the facts and probes; ``metrics.json`` the held-out accuracy.
"""

from __future__ import annotations

import random
from typing import Any

import torch
from torch import Tensor, nn

from service.nets import TinyCausalLM, WordTokenizer

from ._examples import EXAMPLES_FILE, report
from ._recipe import BATCH, Built, deterministic

NAME = "tinylm"
SEED = 0
DIM, N_LAYERS, N_HEADS, MAX_LEN = 64, 2, 4, 24
EPOCHS, BATCH_SIZE, LR = 120, 32, 3e-3
UNK_RATE = 0.15            # prompt words replaced by <unk> in training
HELD_OUT_FRACTION = 0.25   # of the prompts with a distractor (probes always held out)
STOP = "."
VOCAB_FILE = "vocab.json"

CAPITALS = (("france", "paris"), ("spain", "madrid"), ("italy", "rome"), ("germany", "berlin"),
            ("japan", "tokyo"), ("egypt", "cairo"), ("peru", "lima"), ("kenya", "nairobi"),
            ("norway", "oslo"), ("canada", "ottawa"), ("greece", "athens"),
            ("chile", "santiago"))
JOBS = (("alice", "doctor"), ("bob", "teacher"), ("carol", "pilot"), ("dave", "chef"),
        ("erin", "lawyer"), ("frank", "farmer"), ("grace", "nurse"), ("henry", "baker"),
        ("iris", "painter"), ("jack", "plumber"), ("kate", "singer"), ("liam", "writer"))
COUNTRIES = tuple(c for c, _ in CAPITALS)
NAMES = tuple(n for n, _ in JOBS)

# Prompt templates: {country} / {name} is the cause; {other} a distractor of the given kind.
CAPITAL_TEMPLATES = (
    ("the capital of {country} is", None),
    ("in my opinion the capital of {country} is", None),
    ("{other} says that the capital of {country} is", "name"),
    ("after a trip to {other} i think the capital of {country} is", "country"),
)
JOB_TEMPLATES = (
    ("{name} works as a", None),
    ("in my opinion {name} works as a", None),
    ("in {other} {name} works as a", "country"),
    ("{other} says that {name} works as a", "name"),
)
SPECIALS = ("<pad>", "<s>", "<unk>")


def vocabulary() -> list[str]:
    words: list[str] = list(SPECIALS)
    for text in [t for t, _ in CAPITAL_TEMPLATES + JOB_TEMPLATES] + [STOP]:
        for w in text.split():
            if not w.startswith("{") and w not in words:
                words.append(w)
    for pair in CAPITALS + JOBS:
        words += [w for w in pair if w not in words]
    return words


def tokenizer() -> WordTokenizer:
    return WordTokenizer(vocabulary(), bos_token="<s>", unk_token="<unk>", pad_token="<pad>")


def prompts() -> list[dict[str, Any]]:
    """Every prompt of the corpus: template, slot values, cause slot, answer, kind."""
    out = []
    for templates, facts, cause in ((CAPITAL_TEMPLATES, CAPITALS, "country"),
                                    (JOB_TEMPLATES, JOBS, "name")):
        for t, (template, distractor) in enumerate(templates):
            for subject, answer in facts:
                pool = {None: [None], "country": COUNTRIES, "name": NAMES}[distractor]
                for other in pool:
                    if other == subject:
                        continue
                    values = {cause: subject} | ({"other": other} if other else {})
                    out.append({"kind": cause, "template": template, "template_index": t,
                                "values": values, "cause": cause, "answer": answer,
                                "prompt": template.format(**values)})
    return out


def probes() -> list[dict[str, Any]]:
    """One prompt per fact and distractor template: the distractor is the next country/name."""
    out = []
    for templates, facts, cause in ((CAPITAL_TEMPLATES, CAPITALS, "country"),
                                    (JOB_TEMPLATES, JOBS, "name")):
        for template, distractor in templates:
            if distractor is None:
                continue
            pool = COUNTRIES if distractor == "country" else NAMES
            for i, (subject, answer) in enumerate(facts):
                other = next(p for p in pool[i + 1:] + pool[:i + 1] if p != subject)
                values = {cause: subject, "other": other}
                out.append({"template": template, "values": values, "cause": cause,
                            "cause_word": subject, "distractor_word": other, "answer": answer,
                            "prompt": template.format(**values)})
    return out


def split() -> tuple[list[dict], list[dict]]:
    """(train, held_out): held out are the probes and a seeded fraction of the other prompts
    with a distractor; every prompt without a distractor is trained on (the facts themselves)."""
    probe_prompts = {p["prompt"] for p in probes()}
    rng = random.Random(SEED)
    train, held = [], []
    for p in prompts():
        if p["prompt"] in probe_prompts:
            held.append(p)
        elif "other" in p["values"] and rng.random() < HELD_OUT_FRACTION:
            held.append(p)
        else:
            train.append(p)
    return train, held


def encode_corpus(rows: list[dict], tok: WordTokenizer) -> Tensor:
    """``(n, MAX_LEN)`` ids of "<s> prompt answer ." padded with <pad>."""
    out = torch.full((len(rows), MAX_LEN), tok.pad_token_id, dtype=torch.long)
    for i, r in enumerate(rows):
        ids = tok.encode(f"{r['prompt']} {r['answer']} {STOP}")
        out[i, :len(ids)] = torch.tensor(ids)
    return out


def _train(model: nn.Module, ids: Tensor, tok: WordTokenizer, n_prompt: Tensor,
           gen: torch.Generator) -> list[float]:
    """Next-token cross-entropy on every non-pad position; prompt words (not <s>) are replaced
    by <unk> with probability UNK_RATE in the inputs (a fresh draw every epoch)."""
    opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=LR, total_steps=EPOCHS * -(-ids.size(0) // BATCH_SIZE))
    positions = torch.arange(MAX_LEN)[None]                             # (1, MAX_LEN)
    in_prompt = (positions >= 1) & (positions < n_prompt[:, None])      # (n, MAX_LEN)
    losses = []
    model.train()
    for _ in range(EPOCHS):
        order = torch.randperm(ids.size(0), generator=gen)
        drop = in_prompt & (torch.rand(ids.shape, generator=gen) < UNK_RATE)
        noisy = ids.masked_fill(drop, tok.unk_token_id)
        total = 0.0
        for start in range(0, ids.size(0), BATCH_SIZE):
            idx = order[start:start + BATCH_SIZE]
            x, y = noisy[idx, :-1], ids[idx, 1:]                        # (b, MAX_LEN - 1)
            logits = model(x).logits
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.size(-1)),
                                               y.reshape(-1), ignore_index=tok.pad_token_id)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * idx.numel()
        losses.append(total / ids.size(0))
    model.eval()
    return losses


def answer(model: TinyCausalLM, tok: WordTokenizer, prompt: str, max_new_tokens: int = 4) -> str:
    """The model's greedy continuation of ``prompt`` up to and including the stop word."""
    ids = tok.encode(prompt, return_tensors="pt")
    out = model.generate(ids, max_new_tokens=max_new_tokens,
                         eos_token_id=tok.convert_tokens_to_ids(STOP))
    return tok.decode(out[0, ids.size(1):])


def attribution_tops(model: TinyCausalLM, tok: WordTokenizer, probe: dict) -> dict[str, Any]:
    """Both attributions of the probe's planted answer: the top template slot (FeatureAblation
    over TextTemplateInput) and the top prompt word (LayerIntegratedGradients on ``emb``, over
    TextTokenInput with <unk> as the baseline token)."""
    from service.attribution import (
        FeatureAblation,
        LayerIntegratedGradients,
        LLMAttribution,
        LLMGradientAttribution,
        TextTemplateInput,
        TextTokenInput,
    )

    target = f"{probe['answer']} {STOP}"
    slots = list(probe["values"])
    template_inp = TextTemplateInput(probe["template"], values=dict(probe["values"]))
    fa = LLMAttribution(FeatureAblation(model), tok).attribute(template_inp, target=target)
    token_inp = TextTokenInput(probe["prompt"], tok, baselines=tok.unk_token,
                               skip_tokens=[tok.bos_token])
    lig = LLMGradientAttribution(LayerIntegratedGradients(model, model.emb), tok).attribute(
        token_inp, target=target, n_steps=32)
    return {
        "ablation_top": slots[int(fa.seq_attr.argmax())],
        "ablation_seq_attr": [round(float(v), 4) for v in fa.seq_attr],
        "gradient_top": token_inp.values[int(lig.seq_attr.argmax())],
        "gradient_seq_attr": [round(float(v), 4) for v in lig.seq_attr],
    }


class PlantedCheckFailed(RuntimeError):
    """The trained model misses a planted fact, or an attribution misses a planted cause."""


def check_probes(model: TinyCausalLM, tok: WordTokenizer) -> list[dict[str, Any]]:
    """Every probe with its answer and attribution tops; raises PlantedCheckFailed listing the
    probes where the answer or either attribution's top is not the planted one."""
    rows, bad = [], []
    for probe in probes():
        got = answer(model, tok, probe["prompt"])
        tops = attribution_tops(model, tok, probe)
        row = {**probe, "generated": got, **tops}
        rows.append(row)
        if (got != f"{probe['answer']} {STOP}" or tops["ablation_top"] != probe["cause"]
                or tops["gradient_top"] != probe["cause_word"]):
            bad.append(row)
    if bad:
        raise PlantedCheckFailed(
            f"{len(bad)} of {len(rows)} probes miss their planted answer or cause: "
            + "; ".join(f"{b['prompt']!r} -> {b['generated']!r}, ablation top "
                        f"{b['ablation_top']}, gradient top {b['gradient_top']}"
                        for b in bad[:5]))
    return rows


def build() -> Built:
    tok = tokenizer()
    train, held = split()
    with deterministic(SEED) as gen:
        ids = encode_corpus(train, tok)
        n_prompt = torch.tensor([len(tok.encode(r["prompt"])) for r in train])
        model = TinyCausalLM(tok.vocab_size, DIM, N_LAYERS, N_HEADS, MAX_LEN)
        losses = _train(model, ids, tok, n_prompt, gen)
    correct = [answer(model, tok, r["prompt"]) == f"{r['answer']} {STOP}" for r in held]
    trained = [answer(model, tok, r["prompt"]) == f"{r['answer']} {STOP}" for r in train]
    checked = check_probes(model, tok)
    metrics = {
        "model": NAME,
        "dataset": "generated sentences with planted facts (see planted.json)",
        "n_train": len(train),
        "n_held_out": len(held),
        "held_out_accuracy": round(sum(correct) / len(correct), 4),
        "train_accuracy": round(sum(trained) / len(trained), 4),
        "probes": len(checked),
        "probes_with_cause_on_top_ablation": sum(r["ablation_top"] == r["cause"]
                                                 for r in checked),
        "probes_with_cause_on_top_gradient": sum(r["gradient_top"] == r["cause_word"]
                                                 for r in checked),
        "final_train_loss": round(losses[-1], 5),
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    planted = {
        "model": NAME,
        "facts": {"capital": {c: city for c, city in CAPITALS}, "job": {n: j for n, j in JOBS}},
        "templates": {"capital": [t for t, _ in CAPITAL_TEMPLATES],
                      "job": [t for t, _ in JOB_TEMPLATES]},
        "stop_token": STOP,
        "explain": {"target": "the planted answer and the stop word, e.g. 'paris .'",
                    "expectation": "the cause (the country, the name) is the top template slot "
                                   "(FeatureAblation) and the top prompt word "
                                   "(LayerIntegratedGradients, <unk> baseline)"},
        "probes": checked,
    }
    spec = {
        "name": NAME,
        "version": "1.0",
        "description": "Tiny causal LM (2-layer transformer) on generated sentences with planted "
                       "facts (capitals, jobs) and distractor words; explanations say which "
                       "prompt words caused the answer",
        "purpose": "production",
        "model": {"file": "model.py", "class": "TinyLM", "weights": "weights.pt"},
        "input": {"kind": "text", "shape": [MAX_LEN],
                  "text": {"tokenizer": VOCAB_FILE, "embedding_layer": "emb",
                           "stop_token": STOP, "baseline_token": tok.unk_token,
                           "skip_tokens": [tok.bos_token],
                           # a request's inputs for `make serve`'s printed examples
                           "example": {"template": probes()[-1]["template"],
                                       "values": probes()[-1]["values"]}}},
        "output": {"kind": "generation"},
        "explain": {
            "algorithms": TEXT_ALGORITHMS,
            "default_algorithm": "FeatureAblation",
            "default_params": {"LayerIntegratedGradients": {"n_steps": 32},
                               "ShapleyValueSampling": {"n_samples": 8},
                               "Lime": {"n_samples": 32}, "KernelShap": {"n_samples": 32}},
            "default_target": "generated",
            "top_k_features": 3,
        },
        "limits": {"max_new_tokens": 8},
        "batch": BATCH,
    }
    return Built(
        name=NAME, model=model, base="TinyCausalLM",
        base_args=f"{tok.vocab_size}, {DIM}, {N_LAYERS}, {N_HEADS}, {MAX_LEN}", spec=spec,
        data_files={}, text_files={VOCAB_FILE: tok.to_json()},
        reports={"metrics.json": metrics, "planted.json": planted,
                 EXAMPLES_FILE: examples()},
    )


TEXT_ALGORITHMS = ["FeatureAblation", "ShapleyValueSampling", "Lime", "KernelShap",
                   "LayerIntegratedGradients", "LayerGradientXActivation", "LayerGradientShap"]


def examples() -> dict:
    """Probe prompts as the client sends them: a template with its values (the first probe of
    each template) and a plain text prompt."""
    out = []
    seen: set[str] = set()
    for i, p in enumerate(probes()):
        if p["template"] in seen:
            continue
        seen.add(p["template"])
        out.append({"id": f"{NAME}-probe-{i}",
                    "inputs": {"template": {"template": p["template"], "values": p["values"]}},
                    "true_index": None, "true_label": f"{p['answer']} {STOP}",
                    "note": f"cause: {p['cause']} = {p['cause_word']}; distractor: "
                            f"{p['distractor_word']}"})
        out.append({"id": f"{NAME}-text-{i}", "inputs": {"text": p["prompt"]},
                    "true_index": None, "true_label": f"{p['answer']} {STOP}",
                    "note": f"cause: {p['cause_word']}"})
    return report(NAME, "the planted fact", out)


