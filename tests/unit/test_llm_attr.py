"""LLM attribution: parity with captum 0.9's LLM classes, a closed form, batching, errors.

The causal LM and the word-level tokenizer are built here (no transformers): the LM embeds the
tokens, averages each prefix (causal), and maps the average to next-token logits.
"""

from __future__ import annotations

from collections import UserDict
from types import SimpleNamespace

import captum.attr as ca
import pytest
import torch
from torch import nn

import service.attribution as sa

WORDS = ["<s>", "<unk>", "the", "cat", "dog", "sat", "on", "mat", "a", "red", "blue", "big",
         "is", "it", "yes", "no"]


class WordTokenizer:
    """Whitespace tokenizer over WORDS; ``<s>`` is prepended as a special token."""

    def __init__(self) -> None:
        self.ids = {w: i for i, w in enumerate(WORDS)}

    def encode(self, text, add_special_tokens=True, return_tensors=None):
        ids = [self.ids.get(w, 1) for w in text.split()]
        if add_special_tokens:
            ids = [0, *ids]
        return torch.tensor([ids]) if return_tensors == "pt" else ids

    def decode(self, token_ids):
        return " ".join(WORDS[i] for i in torch.as_tensor(token_ids).reshape(-1).tolist())

    def convert_ids_to_tokens(self, token_ids):
        if isinstance(token_ids, int):
            return WORDS[token_ids]
        return [WORDS[i] for i in token_ids]

    def convert_tokens_to_ids(self, tokens):
        if isinstance(tokens, str):
            return self.ids[tokens]
        return [self.ids[t] for t in tokens]

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        out = UserDict(input_ids=self.encode(text, add_special_tokens))
        if return_offsets_mapping:
            offsets, pos = ([(0, 0)] if add_special_tokens else []), 0
            for w in text.split(" "):
                offsets.append((pos, pos + len(w)))
                pos += len(w) + 1
            out["offset_mapping"] = offsets
        return out


class PrefixMeanLM(nn.Module):
    """logits[:, i] = W · mean(emb(ids[:, :i+1])) + b: a causal LM, ``(batch, seq, vocab)``."""

    def __init__(self, seed: int = 0, dim: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.emb = nn.Embedding(len(WORDS), dim)
        self.head = nn.Linear(dim, len(WORDS))
        with torch.no_grad():
            self.emb.weight.copy_(torch.randn(len(WORDS), dim, generator=g))
            self.head.weight.copy_(torch.randn(len(WORDS), dim, generator=g))
            self.head.bias.copy_(torch.randn(len(WORDS), generator=g))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        e = self.emb(input_ids)                                        # (batch, seq, dim)
        n = torch.arange(1, e.size(1) + 1, device=e.device).view(1, -1, 1)
        return SimpleNamespace(logits=self.head(e.cumsum(1) / n))

    def generate(self, input_ids, max_new_tokens=25, **kwargs):
        ids = input_ids
        for _ in range(min(max_new_tokens, 3)):
            nxt = self(ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
        return ids


TEMPLATES = [
    ("the {} sat on {} {}", ["cat", "the", "mat"]),
    ("{} {} is {}", ["a", "red", "dog"]),
    ("it is {} {} {} {}", ["a", "big", "blue", "cat"]),
]


def _both(inp_cls, *args, **kwargs):
    return getattr(sa, inp_cls)(*args, **kwargs), getattr(ca, inp_cls)(*args, **kwargs)


@pytest.mark.parametrize("template,values", TEMPLATES)
@pytest.mark.parametrize("method", ["FeatureAblation", "ShapleyValues"])
@pytest.mark.parametrize("target", ["yes no", "target_ids"])
@pytest.mark.parametrize("forward_in_tokens", [True, False])
def test_template_matches_captum(template, values, method, target, forward_in_tokens):
    model, tok = PrefixMeanLM().eval(), WordTokenizer()
    if target == "target_ids":
        target = torch.tensor([tok.ids["dog"], tok.ids["sat"]])
    ours_inp, theirs_inp = _both("TextTemplateInput", template, values)
    ours = sa.LLMAttribution(getattr(sa, method)(model), tok).attribute(
        ours_inp, target, use_cached_outputs=False, forward_in_tokens=forward_in_tokens)
    theirs = ca.LLMAttribution(getattr(ca, method)(model), tok).attribute(
        theirs_inp, target, use_cached_outputs=False, forward_in_tokens=forward_in_tokens)
    torch.testing.assert_close(ours.seq_attr, theirs.seq_attr, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours.token_attr, theirs.token_attr, atol=1e-5, rtol=1e-5)
    assert ours.input_tokens == theirs.input_tokens == values
    assert ours.output_tokens == theirs.output_tokens


@pytest.mark.parametrize("attr_target", ["log_prob", "prob"])
def test_token_input_baselines_mask_and_prob_match_captum(attr_target):
    model, tok = PrefixMeanLM(seed=3).eval(), WordTokenizer()
    ours_inp, theirs_inp = _both("TextTokenInput", "the big cat sat", tok, baselines="<unk>",
                                 skip_tokens=["<s>"])
    ours = sa.LLMAttribution(sa.FeatureAblation(model), tok, attr_target=attr_target).attribute(
        ours_inp, "on the mat", use_cached_outputs=False)
    theirs = ca.LLMAttribution(ca.FeatureAblation(model), tok, attr_target=attr_target).attribute(
        theirs_inp, "on the mat", use_cached_outputs=False)
    torch.testing.assert_close(ours.token_attr, theirs.token_attr, atol=1e-6, rtol=1e-5)
    assert ours.input_tokens == ["the", "big", "cat", "sat"]

    # a grouping mask: grouped slots share one attribution, as in captum
    ours_inp, theirs_inp = _both("TextTemplateInput", "{} {} sat on {}", ["the", "cat", "mat"],
                                 baselines=["a", "dog", "the"], mask=[0, 0, 1])
    ours = sa.LLMAttribution(sa.FeatureAblation(model), tok, attr_target=attr_target).attribute(
        ours_inp, "yes", use_cached_outputs=False)
    theirs = ca.LLMAttribution(ca.FeatureAblation(model), tok, attr_target=attr_target).attribute(
        theirs_inp, "yes", use_cached_outputs=False)
    torch.testing.assert_close(ours.seq_attr, theirs.seq_attr, atol=1e-6, rtol=1e-5)
    assert ours.seq_attr[0] == ours.seq_attr[1]


@pytest.mark.parametrize("method", ["Lime", "KernelShap"])
def test_sequence_only_methods_match_captum(method):
    model, tok = PrefixMeanLM(seed=1).eval(), WordTokenizer()
    ours_inp, theirs_inp = _both("TextTemplateInput", "{} {} is {}", ["a", "red", "dog"])
    torch.manual_seed(0)
    ours = sa.LLMAttribution(getattr(sa, method)(model), tok).attribute(
        ours_inp, "yes", use_cached_outputs=False, n_samples=60)
    torch.manual_seed(0)
    theirs = ca.LLMAttribution(getattr(ca, method)(model), tok).attribute(
        theirs_inp, "yes", use_cached_outputs=False, n_samples=60)
    assert ours.token_attr is None and theirs.token_attr is None
    torch.testing.assert_close(ours.seq_attr, theirs.seq_attr, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("method", ["LayerIntegratedGradients", "LayerGradientXActivation"])
@pytest.mark.parametrize("skip", [None, ["<s>"]])
def test_gradient_matches_captum(method, skip):
    model, tok = PrefixMeanLM(seed=2).eval(), WordTokenizer()
    ours_inp, theirs_inp = _both("TextTokenInput", "the cat sat", tok, skip_tokens=skip)
    ours = sa.LLMGradientAttribution(getattr(sa, method)(model, model.emb), tok).attribute(
        ours_inp, "on the mat")
    theirs = ca.LLMGradientAttribution(getattr(ca, method)(model, model.emb), tok).attribute(
        theirs_inp, "on the mat")
    assert ours.token_attr.shape == (3, 3 if skip else 4)
    torch.testing.assert_close(ours.token_attr, theirs.token_attr, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours.seq_attr, ours.token_attr.sum(0))


class CountLM(nn.Module):
    """Next-token logits are a linear function of the prompt's token counts: ``W @ counts``."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(7)
        self.W = nn.Parameter(torch.randn(len(WORDS), len(WORDS), generator=g, dtype=torch.float64))

    def forward(self, input_ids, attention_mask=None, **kwargs):
        onehot = nn.functional.one_hot(input_ids, len(WORDS)).double()  # (batch, seq, V)
        return SimpleNamespace(logits=onehot.cumsum(1) @ self.W.T)     # (batch, seq, V)


def _closed_form_log_prob(W, counts, target):
    logits = W @ counts
    return float(logits[target] - torch.logsumexp(logits, 0))


def test_feature_ablation_closed_form():
    """FA of slot i = log p(t | all words) - log p(t | slot i replaced by its baseline)."""
    model, tok = CountLM(), WordTokenizer()
    values, baselines = ["cat", "red", "mat"], ["dog", "", "the"]
    inp = sa.TextTemplateInput("the {} {} sat {}", values, baselines=baselines)
    target = tok.ids["yes"]
    res = sa.LLMAttribution(sa.FeatureAblation(model), tok).attribute(
        inp, "yes", use_cached_outputs=False)

    def counts(words):
        c = torch.zeros(len(WORDS), dtype=torch.float64)
        for w in ["<s>", *words]:
            c[tok.ids[w]] += 1
        return c

    full = ["the", *values[:2], "sat", values[2]]
    W = model.W.detach()
    for i in range(3):
        ablated = list(values)
        ablated[i] = baselines[i]
        words = [w for w in ["the", *ablated[:2], "sat", ablated[2]] if w]
        expected = (_closed_form_log_prob(W, counts(full), target)
                    - _closed_form_log_prob(W, counts(words), target))
        assert res.seq_attr[i].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("ppe", [2, 3])
def test_perturbations_per_eval_batches_equal_single(ppe):
    model, tok = PrefixMeanLM(seed=4).eval(), WordTokenizer()
    calls = []
    model.register_forward_hook(lambda m, a, kw, o: calls.append(kw["input_ids"].shape[0]),
                                with_kwargs=True)
    for inp in (sa.TextTokenInput("the big red cat", tok),
                sa.TextTemplateInput("{} {} is {}", ["a", "red", "dog"])):
        llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
        one = llm.attribute(inp, "yes no", forward_in_tokens=False)
        calls.clear()
        many = llm.attribute(inp, "yes no", forward_in_tokens=False, perturbations_per_eval=ppe)
        torch.testing.assert_close(many.token_attr, one.token_attr, atol=1e-6, rtol=1e-6)
    assert max(calls) > 1   # the model saw a batch of prompts


def test_generated_target_and_fa_sum():
    model, tok = PrefixMeanLM().eval(), WordTokenizer()
    inp = sa.TextTemplateInput("the {} sat on {}", ["cat", "mat"])
    res = sa.LLMAttribution(sa.FeatureAblation(model), tok).attribute(
        inp, gen_args={"max_new_tokens": 3}, use_cached_outputs=False)
    assert len(res.output_tokens) == 3 and res.token_attr.shape == (3, 2)
    torch.testing.assert_close(res.seq_attr, res.token_attr.sum(0))


def test_errors_name_the_argument():
    model, tok = PrefixMeanLM(), WordTokenizer()
    with pytest.raises(ValueError, match="attr_method"):
        sa.LLMAttribution(sa.IntegratedGradients(model), tok)
    with pytest.raises(ValueError, match="attr_target"):
        sa.LLMAttribution(sa.FeatureAblation(model), tok, attr_target="logit")
    llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
    inp = sa.TextTemplateInput("{}", ["cat"])
    with pytest.raises(ValueError, match="gen_args"):
        llm.attribute(inp, "yes", gen_args={"max_new_tokens": 2})
    with pytest.raises(ValueError, match="target"):
        llm.attribute(inp, 3)
    with pytest.raises(ValueError, match="baselines"):
        sa.TextTemplateInput("{} {}", {"a": "x", "b": "y"}, baselines=["p", "q"])
    with pytest.raises(ValueError, match="inp"):
        sa.LLMGradientAttribution(sa.LayerIntegratedGradients(model, model.emb), tok).attribute(
            inp, "yes")
    with pytest.raises(NotImplementedError):
        llm.attribute_future()


def test_plots():
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    res = sa.LLMAttributionResult(input_tokens=["a", "b"], output_tokens=["x"],
                                  seq_attr=[0.5, -0.25], token_attr=[[0.5, -0.25]])
    fig, ax = res.plot_token_attr()
    assert [t.get_text() for t in ax.get_xticklabels()] == ["a", "b"]
    fig, ax = res.plot_seq_attr()
    assert len(ax.patches) == 4
    assert res.seq_attr_dict == {"a": 0.5, "b": -0.25}
    with pytest.raises(ValueError, match="token_attr"):
        sa.LLMAttributionResult(input_tokens=["a"], output_tokens=["x"], seq_attr=[1.0],
                                token_attr=[[1.0, 2.0]])
