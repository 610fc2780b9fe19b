"""tinylm: the planted facts are learned, and both LLM attributions of the model's own answer put
the planted cause (the country, the name) on top of every probe prompt; the tokenizer and the
model follow the Hugging Face protocol the engine uses."""

from __future__ import annotations

import json

import pytest
import torch

from model_store import tinylm
from service.attribution import (
    FeatureAblation,
    LayerIntegratedGradients,
    LLMAttribution,
    LLMGradientAttribution,
    TextTemplateInput,
    TextTokenInput,
)
from service.nets import WordTokenizer

from .conftest import build


def test_tokenizer_round_trips_and_marks_offsets():
    tok = tinylm.tokenizer()
    text = "after a trip to spain i think the capital of france is"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and len(ids) == 1 + len(text.split())
    assert tok.decode(ids[1:]) == text
    assert tok.decode(ids, skip_special_tokens=True) == text
    assert tok.convert_ids_to_tokens(ids[1:]) == text.split()
    assert tok.convert_tokens_to_ids(text.split()) == ids[1:]
    assert tok.encode("zanzibar", add_special_tokens=False) == [tok.unk_token_id]
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert [text[a:b] for a, b in enc["offset_mapping"]] == text.split()
    assert tuple(tok.encode(text, return_tensors="pt").shape) == (1, len(ids))
    again = WordTokenizer.from_json(json.loads(json.dumps(tok.to_json())))
    assert again.words == tok.words


def test_probes_are_held_out_and_have_a_distractor_of_the_cause_kind():
    train, held = tinylm.split()
    trained = {r["prompt"] for r in train}
    probes = tinylm.probes()
    assert len(probes) == 2 * len(tinylm.CAPITALS) + 2 * len(tinylm.JOBS)
    for p in probes:
        assert p["prompt"] not in trained
        assert p["cause_word"] != p["distractor_word"]
        assert p["cause_word"] in p["prompt"].split() and p["distractor_word"] in p["prompt"]


def test_check_fails_the_build_when_a_cause_is_not_on_top(monkeypatch):
    """A probe whose 'cause' is the distractor: the build check must refuse it."""
    model = build(tinylm.NAME).model
    probe = dict(tinylm.probes()[0])
    swapped = {**probe, "cause": "other", "cause_word": probe["distractor_word"]}
    monkeypatch.setattr(tinylm, "probes", lambda: [swapped])
    with pytest.raises(tinylm.PlantedCheckFailed, match="1 of 1 probes"):
        tinylm.check_probes(model, tinylm.tokenizer())


@pytest.mark.slow
def test_held_out_accuracy_and_probe_report():
    built = build(tinylm.NAME)
    metrics = built.reports["metrics.json"]
    assert metrics["held_out_accuracy"] >= 0.95
    assert metrics["probes"] == len(tinylm.probes())
    assert metrics["probes_with_cause_on_top_ablation"] == metrics["probes"]
    assert metrics["probes_with_cause_on_top_gradient"] == metrics["probes"]


@pytest.mark.slow
def test_generate_is_greedy_decoding_of_the_logits():
    model, tok = build(tinylm.NAME).model, tinylm.tokenizer()
    ids = tok.encode("the capital of peru is", return_tensors="pt")
    out = model.generate(ids, max_new_tokens=5, eos_token_id=tok.convert_tokens_to_ids("."))
    step = ids
    for _ in range(out.size(1) - ids.size(1)):
        step = torch.cat([step, model(step).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, step)
    assert tok.decode(out[0, ids.size(1):]) == "lima ."
    # the cache (which generate uses) changes no numbers of the trained model
    assert torch.equal(model.generate(ids, max_new_tokens=5, use_cache=False,
                                      eos_token_id=tok.convert_tokens_to_ids(".")), out)
    with torch.no_grad():
        full = model(out).logits                                      # (1, n, vocab)
        head = model(out[:, :3], use_cache=True)
        tail = model(out[:, 3:], past_key_values=head.past_key_values)
    torch.testing.assert_close(torch.cat([head.logits, tail.logits], 1), full,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("probe", tinylm.probes(), ids=lambda p: p["prompt"])
def test_both_attributions_of_the_generated_answer_put_the_cause_on_top(probe):
    """The model's own answer (generated, not the planted one) is attributed; the cause slot
    beats the distractor slot (FeatureAblation, the captum default "" baseline) and the cause
    word beats every other prompt word (LayerIntegratedGradients, <unk> baseline)."""
    model, tok = build(tinylm.NAME).model, tinylm.tokenizer()
    gen_args = {"max_new_tokens": 4, "eos_token_id": tok.convert_tokens_to_ids(".")}
    fa = LLMAttribution(FeatureAblation(model), tok).attribute(
        TextTemplateInput(probe["template"], values=probe["values"]), gen_args=gen_args)
    assert fa.output_tokens == [probe["answer"], "."]
    slots = list(probe["values"])
    assert slots[int(fa.seq_attr.argmax())] == probe["cause"]
    # the sequence attribution is the drop of the answer's log-prob without the slot
    assert float(fa.seq_attr.max()) > 1.0
    inp = TextTokenInput(probe["prompt"], tok, baselines="<unk>", skip_tokens=["<s>"])
    lig = LLMGradientAttribution(LayerIntegratedGradients(model, model.emb), tok).attribute(
        inp, gen_args=gen_args, n_steps=32)
    assert lig.output_tokens == [probe["answer"], "."]
    assert inp.values[int(lig.seq_attr.argmax())] == probe["cause_word"]
