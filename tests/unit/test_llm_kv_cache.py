"""Key/value cache reuse: tinylm's cache changes no numbers, and LLMAttribution's cached paths
(token-by-token on the cache, the shared prompt prefix cached once per call) give the answers of
the uncached path, on tinylm (random weights) and on a model of our own whose cache is an
object extended in place (like Hugging Face's ``DynamicCache``); captum (uncached) is the oracle
for tinylm."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import captum.attr as ca
import pytest
import torch
from torch import Tensor, nn

import service.attribution as sa
from service.attribution._kv_cache import expand_cache, offers_cache
from service.nets import TinyCausalLM

from .test_llm_attr import WORDS, WordTokenizer

TOL = {"atol": 1e-5, "rtol": 1e-5}


def tiny(seed: int = 0) -> TinyCausalLM:
    torch.manual_seed(seed)
    return TinyCausalLM(len(WORDS), dim=16, n_layers=2, n_heads=2, max_len=24).eval()


class RunningMean:
    """The cache of ``RunningMeanLM``: the sum of the embeddings seen ``(batch, dim)`` and their
    count. The model extends it in place, as Hugging Face's ``DynamicCache`` is."""

    def __init__(self, total: Tensor, count: int) -> None:
        self.total, self.count = total, count

    def batch_repeat_interleave(self, repeats: int) -> None:
        self.total = self.total.repeat_interleave(repeats, dim=0)


class RunningMeanLM(nn.Module):
    """logits[:, i] = W · tanh(mean(emb(ids[:, :i+1])) + pos[i]) + b, with its cache; offers it
    through ``config.use_cache`` (its forward takes ``**kwargs``). ``calls`` records
    ``(batch, n_new, n_past)`` of every forward."""

    def __init__(self, seed: int = 0, dim: int = 8) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.config = SimpleNamespace(use_cache=True)
        self.emb = nn.Embedding(len(WORDS), dim)
        self.pos = nn.Embedding(32, dim)
        self.head = nn.Linear(dim, len(WORDS))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        self.calls: list[tuple[int, int, int]] = []

    def forward(self, input_ids: Tensor, **kwargs):
        past: RunningMean | None = kwargs.get("past_key_values")
        e = self.emb(input_ids)                                        # (batch, seq, dim)
        n_past = 0 if past is None else past.count
        self.calls.append((input_ids.size(0), input_ids.size(1), n_past))
        total = e.cumsum(1) + (0 if past is None else past.total[:, None])
        n = torch.arange(n_past + 1, n_past + e.size(1) + 1).view(1, -1, 1)
        pos = self.pos(torch.arange(n_past, n_past + e.size(1)))
        logits = self.head(torch.tanh(total / n + pos))
        if not kwargs.get("use_cache", False):
            return SimpleNamespace(logits=logits)
        if past is None:
            past = RunningMean(total[:, -1], e.size(1))
        else:                                                          # in place, as HF's
            past.total, past.count = total[:, -1], past.count + e.size(1)
        return SimpleNamespace(logits=logits, past_key_values=past)


# --------------------------------------------------------------------------- the models' caches

def test_tinylm_cached_logits_equal_uncached_at_every_split():
    model, tok = tiny(), WordTokenizer()
    ids = tok.encode("the big red cat sat on the blue mat", return_tensors="pt")  # (1, 10)
    ids = torch.cat([ids, ids.flip(1)])                                           # (2, 10)
    with torch.no_grad():
        full = model(ids).logits                                       # (2, 10, vocab)
        for split in range(1, ids.size(1)):
            head = model(ids[:, :split], use_cache=True)
            past = head.past_key_values
            assert len(past) == 2 and all(k.shape == v.shape == (2, 2, split, 8) for k, v in past)
            tail = model(ids[:, split:], past_key_values=past, use_cache=True)
            assert tail.past_key_values[0][0].size(-2) == ids.size(1)
            torch.testing.assert_close(torch.cat([head.logits, tail.logits], 1), full, **TOL)
        # one row's cache expanded over a batch continues every row alike
        one = model(ids[:1, :4], use_cache=True).past_key_values
        rest = ids[:1, 4:].expand(3, -1)
        got = model(rest, past_key_values=expand_cache(one, 3)).logits
        torch.testing.assert_close(got, full[:1, 4:].expand(3, -1, -1), **TOL)
    assert model(ids).past_key_values is None


def test_tinylm_refuses_more_tokens_than_its_context_after_the_cache():
    model = tiny()
    past = model(torch.zeros(1, 20, dtype=torch.long), use_cache=True).past_key_values
    with pytest.raises(ValueError, match="after 20 cached"):
        model(torch.zeros(1, 5, dtype=torch.long), past_key_values=past)


def test_tinylm_generate_feeds_one_token_per_step_on_the_cache():
    model, tok = tiny(), WordTokenizer()
    ids = tok.encode("the cat sat on", return_tensors="pt")            # (1, 5)
    seen: list[int] = []
    handle = model.emb.register_forward_hook(lambda m, a, out: seen.append(a[0].size(1)))
    try:
        cached = model.generate(ids, max_new_tokens=6)
        n_cached = list(seen)
        seen.clear()
        uncached = model.generate(ids, max_new_tokens=6, use_cache=False)
    finally:
        handle.remove()
    assert torch.equal(cached, uncached) and cached.size(1) == 11
    assert n_cached == [5, 1, 1, 1, 1, 1]
    assert seen == [5, 6, 7, 8, 9, 10]


def test_which_models_offer_a_cache():
    assert offers_cache(tiny()) and offers_cache(RunningMeanLM())
    from .test_llm_attr import PrefixMeanLM
    assert not offers_cache(PrefixMeanLM())


# --------------------------------------------------------------------------- LLMAttribution

TEMPLATES = [
    ("{} cat sat on the {}", ["the", "mat"]),                       # first slot at the start
    ("the big red cat sat on {} {}", ["the", "mat"]),               # late slots
    ("the big red cat {a} on the {b}", {"a": "sat", "b": "mat"}),      # named slots
]
METHODS = [
    (sa.FeatureAblation, {}),
    (sa.ShapleyValueSampling, {"n_samples": 3}),
    (sa.KernelShap, {"n_samples": 12}),
]


def _attribute(model, inp, cached, method, kwargs, **more):
    torch.manual_seed(0)
    random.seed(0)                                                     # ProductBaselines' draws
    llm = sa.LLMAttribution(method(model), WordTokenizer())
    return llm.attribute(inp, "yes no", use_cached_outputs=cached, **kwargs, **more)


def _same(a, b):
    torch.testing.assert_close(a.seq_attr, b.seq_attr, **TOL)
    if a.token_attr is not None:
        torch.testing.assert_close(a.token_attr, b.token_attr, **TOL)


@pytest.mark.parametrize("make", [tiny, RunningMeanLM], ids=["tinylm", "running_mean"])
@pytest.mark.parametrize("template,values", TEMPLATES)
@pytest.mark.parametrize("method,kwargs", METHODS, ids=lambda m: getattr(m, "__name__", ""))
@pytest.mark.parametrize("forward_in_tokens", [True, False])
@pytest.mark.parametrize("ppe", [1, 3])
def test_cached_template_attribution_equals_uncached(make, template, values, method, kwargs,
                                                     forward_in_tokens, ppe):
    model = make()
    inp = sa.TextTemplateInput(template, values=values)
    args = dict(kwargs, forward_in_tokens=forward_in_tokens, perturbations_per_eval=ppe)
    _same(_attribute(model, inp, True, method, args), _attribute(model, inp, False, method, args))


def test_the_shared_prefix_runs_once_and_every_batch_runs_only_its_suffix():
    """RunningMean cannot be cut to a prefix: the first prompt runs whole, then the prefix once
    on its own, then every batch its suffix on the prefix's cache."""
    model, tok = RunningMeanLM(), WordTokenizer()
    inp = sa.TextTemplateInput("the big red cat sat on {a} {b}", values={"a": "the", "b": "mat"})
    llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
    llm.attribute(inp, "yes no", forward_in_tokens=False, perturbations_per_eval=2)
    # "<s> the big red cat sat on" is what no slot changes; the prompt with both slots empty
    # is just that, and keeps its last token ("on") of its own: a prefix of 6 tokens.
    # The original prompt + answer (11 tokens), the prefix, then the 2 ablations as one
    # batch: suffix + answer (2 + 2 tokens)
    assert model.calls == [(1, 11, 0), (1, 6, 0), (2, 4, 6)]
    model.calls.clear()
    llm.attribute(inp, "yes no", perturbations_per_eval=2)           # token by token
    assert model.calls == [(1, 9, 0), (1, 1, 9), (1, 6, 0), (2, 2, 6), (2, 1, 8)]


def test_tinylm_prefix_is_cut_from_the_first_prompt_without_an_extra_forward():
    model, tok = tiny(), WordTokenizer()
    inp = sa.TextTemplateInput("the big red cat sat on {a} {b}", values={"a": "the", "b": "mat"})
    llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
    seen: list[tuple[int, int]] = []
    handle = model.emb.register_forward_hook(lambda m, a, out: seen.append(tuple(a[0].shape)))
    try:
        runs = {}
        for cached in (True, False):
            seen.clear()
            runs[cached] = llm.attribute(inp, "yes no", forward_in_tokens=False,
                                         perturbations_per_eval=2, use_cached_outputs=cached)
            runs[cached, "seen"] = list(seen)
    finally:
        handle.remove()
    assert runs[False, "seen"] == [(1, 11), (2, 10)]
    assert runs[True, "seen"] == [(1, 11), (2, 4)]                   # on the first's 6 tokens
    _same(runs[True], runs[False])


def test_a_prompt_whose_first_token_is_a_feature_has_no_prefix_and_still_matches():
    """TextTokenInput without skip tokens: every token, <s> too, is a feature."""
    model, tok = RunningMeanLM(), WordTokenizer()
    inp = sa.TextTokenInput("the cat sat on the mat", tok, baselines="<unk>")
    llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
    assert llm._shared_prefix(inp) is None
    cached = llm.attribute(inp, "yes no", perturbations_per_eval=3)
    assert all(n_past in (0, 6, 7) for _, _, n_past in model.calls)  # step-by-step cache only
    _same(cached, llm.attribute(inp, "yes no", use_cached_outputs=False,
                                perturbations_per_eval=3))
    skipped = sa.TextTokenInput("the cat sat on the mat", tok, baselines="<unk>",
                                skip_tokens=["<s>", "the"])
    prefix = llm._shared_prefix(skipped)
    assert prefix is not None and prefix.ids.tolist() == [tok.encode("the")]
    _same(llm.attribute(skipped, "yes no", perturbations_per_eval=3),
          llm.attribute(skipped, "yes no", use_cached_outputs=False, perturbations_per_eval=3))


def test_sampled_baselines_draw_the_same_with_the_prefix_and_the_cache_object_is_not_shared():
    """ProductBaselines: computing the prefix draws baselines with the random state restored,
    so the method's draws (and answers) are those of the uncached path; RunningMean is extended
    in place by the model, so a shared cache object would corrupt every batch after the first."""
    model = RunningMeanLM()
    baselines = sa.ProductBaselines({"a": ["a", "the"], "b": ["dog", "cat", "mat"]})
    inp = sa.TextTemplateInput("the big red cat sat on {a} {b}",
                               values={"a": "the", "b": "mat"}, baselines=baselines)
    args = {"n_samples": 4, "perturbations_per_eval": 2}
    for method in (sa.ShapleyValueSampling, sa.Lime):
        _same(_attribute(model, inp, True, method, args, num_trials=2),
              _attribute(model, inp, False, method, args, num_trials=2))


def test_cached_tinylm_matches_captum_uncached():
    model, tok = tiny(1), WordTokenizer()
    for forward_in_tokens in (True, False):
        ours = sa.LLMAttribution(sa.FeatureAblation(model), tok).attribute(
            sa.TextTemplateInput("the big red {} sat on the {}", values=["cat", "mat"]),
            "yes no", forward_in_tokens=forward_in_tokens, perturbations_per_eval=3)
        theirs = ca.LLMAttribution(ca.FeatureAblation(model), tok).attribute(
            ca.TextTemplateInput("the big red {} sat on the {}", values=["cat", "mat"]),
            "yes no", forward_in_tokens=forward_in_tokens, use_cached_outputs=False)
        torch.testing.assert_close(ours.seq_attr, theirs.seq_attr, **TOL)
        torch.testing.assert_close(ours.token_attr, theirs.token_attr, **TOL)


def test_generated_target_uses_the_cached_generate():
    model, tok = tiny(), WordTokenizer()
    inp = sa.TextTemplateInput("the big red cat sat on the {}", values=["mat"])
    llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
    res = llm.attribute(inp, gen_args={"max_new_tokens": 4})
    want = copy.deepcopy(model).generate(tok.encode("the big red cat sat on the mat",
                                                    return_tensors="pt"),
                                         max_new_tokens=4, use_cache=False)[0, 9:]
    assert res.output_tokens == tok.convert_ids_to_tokens(want.tolist())
