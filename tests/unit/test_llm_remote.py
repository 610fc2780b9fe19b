"""RemoteLLMAttribution and VLLMProvider: a remote model must give the attributions the same
model gives in-process (LLMAttribution scoring prompt + answer in one forward), the vLLM
provider must read vLLM's prompt_logprobs as the answer's log-probabilities, and failures must
say what went wrong. The vLLM server is a fake ``openai`` package backed by the local LM."""

from __future__ import annotations

import sys
import types
from types import SimpleNamespace

import pytest
import torch

import service.attribution as sa
from tests.unit.test_llm_attr import PrefixMeanLM, WordTokenizer

TEMPLATE = ("the {} sat on {} ", ["cat", "mat"])   # the trailing space: prompt + answer is text


def _answer_log_probs(model, tok, prompt: str, answer: str) -> list[float]:
    """log p(answer token j | prompt, answer[:j]) from the local model, by one forward."""
    p_ids = tok.encode(prompt)
    a_ids = tok.encode(answer, add_special_tokens=False)
    ids = torch.tensor([p_ids + a_ids])                              # (1, n_prompt + n_answer)
    with torch.no_grad():
        lp = torch.log_softmax(model(ids).logits[0].double(), -1)    # (seq, vocab)
    return [float(lp[len(p_ids) - 1 + j, t]) for j, t in enumerate(a_ids)]


class LocalProvider(sa.RemoteLLMProvider):
    """The 'remote' model is PrefixMeanLM behind the provider interface."""

    def __init__(self, model, tok) -> None:
        self.api_url, self.model, self.tok, self.calls = "local://", model, tok, 0

    def generate(self, prompt, **gen_args):
        ids = self.model.generate(self.tok.encode(prompt, return_tensors="pt"),
                                  max_new_tokens=gen_args.get("max_new_tokens", 25))
        return self.tok.decode(ids[0, len(self.tok.encode(prompt)):])

    def get_logprobs(self, input_prompt, target_str, tokenizer=None):
        self.calls += 1
        return _answer_log_probs(self.model, self.tok, input_prompt, target_str)


@pytest.mark.parametrize("method", ["FeatureAblation", "ShapleyValues", "Lime"])
@pytest.mark.parametrize("attr_target", ["log_prob", "prob"])
def test_remote_equals_local_scoring(method, attr_target):
    model, tok = PrefixMeanLM(seed=3).eval(), WordTokenizer()
    kwargs = {"n_samples": 12} if method == "Lime" else {}

    def run(llm):
        torch.manual_seed(0)
        return llm.attribute(sa.TextTemplateInput(*TEMPLATE), "yes no", **kwargs,
                             **({"forward_in_tokens": False}
                                if not isinstance(llm, sa.RemoteLLMAttribution) else {}))

    local = run(sa.LLMAttribution(getattr(sa, method)(model), tok, attr_target=attr_target))
    remote_method = getattr(sa, method)(sa.RemoteLLMAttribution.placeholder_model)
    remote = run(sa.RemoteLLMAttribution(remote_method, tok, LocalProvider(model, tok),
                                         attr_target=attr_target))
    torch.testing.assert_close(remote.seq_attr.double(), local.seq_attr.double(),
                               atol=1e-5, rtol=1e-4)
    if local.token_attr is None:
        assert remote.token_attr is None
    else:
        torch.testing.assert_close(remote.token_attr.double(), local.token_attr.double(),
                                   atol=1e-5, rtol=1e-4)
    assert remote.output_tokens == local.output_tokens == ["yes", "no"]


def test_remote_generates_the_target_through_the_provider():
    model, tok = PrefixMeanLM().eval(), WordTokenizer()
    provider = LocalProvider(model, tok)
    inp = sa.TextTemplateInput(*TEMPLATE)
    llm = sa.RemoteLLMAttribution(sa.FeatureAblation(sa.RemoteLLMAttribution.placeholder_model),
                                  tok, provider)
    res = llm.attribute(inp, gen_args={"max_new_tokens": 3})
    want = provider.generate(inp.to_model_input(), max_new_tokens=3)
    assert " ".join(res.output_tokens) == want
    # FeatureAblation: the unperturbed prompt plus one ablation per feature
    assert provider.calls == 1 + 2
    torch.testing.assert_close(res.seq_attr, res.token_attr.sum(0))


def test_remote_refuses_a_provider_that_miscounts_tokens():
    model, tok = PrefixMeanLM().eval(), WordTokenizer()

    class Short(LocalProvider):
        def get_logprobs(self, input_prompt, target_str, tokenizer=None):
            return super().get_logprobs(input_prompt, target_str, tokenizer)[:-1]

    llm = sa.RemoteLLMAttribution(sa.FeatureAblation(sa.RemoteLLMAttribution.placeholder_model),
                                  tok, Short(model, tok))
    with pytest.raises(ValueError, match="1 log-probabilities for an answer of 2 tokens"):
        llm.attribute(sa.TextTemplateInput(*TEMPLATE), "yes no")
    with pytest.raises(ValueError, match="provider"):
        sa.RemoteLLMAttribution(sa.FeatureAblation(sa.RemoteLLMAttribution.placeholder_model),
                                tok, object())


# --------------------------------------------------------------------------- VLLMProvider

class FakeCompletions:
    """vLLM's completions endpoint over the local LM: prompt_logprobs for every prompt token
    (None for the first, as vLLM gives), one mapping {token id: {"logprob": ...}} each."""

    def __init__(self, model, tok) -> None:
        self.model, self.tok, self.requests = model, tok, []

    def create(self, model, prompt, **kwargs):
        self.requests.append({"model": model, "prompt": prompt, **kwargs})
        ids = self.tok.encode(prompt)
        with torch.no_grad():
            lp = torch.log_softmax(self.model(torch.tensor([ids])).logits[0].double(), -1)
        entries = [None] + [{str(t): {"logprob": float(lp[i - 1, t]), "rank": 1}}
                            for i, t in enumerate(ids) if i > 0]
        return SimpleNamespace(choices=[SimpleNamespace(text=" yes", prompt_logprobs=entries)])


@pytest.fixture
def fake_openai(monkeypatch):
    model, tok = PrefixMeanLM(seed=5).eval(), WordTokenizer()
    server = SimpleNamespace(completions=FakeCompletions(model, tok),
                             models=SimpleNamespace(list=lambda: SimpleNamespace(
                                 data=[SimpleNamespace(id="tiny-lm")])))
    made = []

    def OpenAI(base_url, api_key):
        made.append((base_url, api_key))
        return server

    monkeypatch.setitem(sys.modules, "openai", types.SimpleNamespace(OpenAI=OpenAI))
    return SimpleNamespace(model=model, tok=tok, server=server, made=made)


def test_vllm_provider_reads_the_answers_logprobs(fake_openai, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    provider = sa.VLLMProvider("http://vllm:8000/v1")
    assert provider.model_name == "tiny-lm" and fake_openai.made == [("http://vllm:8000/v1",
                                                                      "EMPTY")]
    m, tok = fake_openai.model, fake_openai.tok
    got = provider.get_logprobs("the cat sat on mat ", "yes no", tok)
    assert got == pytest.approx(_answer_log_probs(m, tok, "the cat sat on mat ", "yes no"),
                                abs=1e-12)
    sent = fake_openai.server.completions.requests[-1]
    assert sent["prompt"] == "the cat sat on mat yes no" and sent["max_tokens"] == 1
    assert sent["extra_body"] == {"prompt_logprobs": 0} and sent["temperature"] == 0.0
    # generate: max_new_tokens is OpenAI's max_tokens, do_sample is not sent
    assert provider.generate("the cat", max_new_tokens=4, do_sample=False) == " yes"
    sent = fake_openai.server.completions.requests[-1]
    assert sent["max_tokens"] == 4 and "do_sample" not in sent and "max_new_tokens" not in sent


def test_vllm_attribution_equals_local_scoring(fake_openai):
    m, tok = fake_openai.model, fake_openai.tok
    remote = sa.RemoteLLMAttribution(
        sa.FeatureAblation(sa.RemoteLLMAttribution.placeholder_model), tok,
        sa.VLLMProvider("http://vllm:8000/v1", model_name="tiny-lm"))
    local = sa.LLMAttribution(sa.FeatureAblation(m), tok)
    inp = sa.TextTemplateInput(*TEMPLATE)
    a = remote.attribute(inp, "yes no")
    b = local.attribute(inp, "yes no", forward_in_tokens=False)
    torch.testing.assert_close(a.token_attr.double(), b.token_attr.double(), atol=1e-5,
                               rtol=1e-4)


def test_vllm_provider_errors(fake_openai, monkeypatch):
    tok = fake_openai.tok
    with pytest.raises(ValueError, match="API URL is required"):
        sa.VLLMProvider("  ")
    p = sa.VLLMProvider("http://vllm:8000/v1", model_name="m")
    with pytest.raises(ValueError, match="Tokenizer is required"):
        p.get_logprobs("a", "b")
    with pytest.raises(ValueError, match="Target string cannot be empty"):
        p.get_logprobs("a", "", tok)

    def answer(entries):
        return lambda **kw: SimpleNamespace(choices=[SimpleNamespace(prompt_logprobs=entries)])

    monkeypatch.setattr(fake_openai.server.completions, "create", answer(None))
    with pytest.raises(KeyError, match="prompt_logprobs"):
        p.get_logprobs("the cat ", "yes", tok)
    monkeypatch.setattr(fake_openai.server.completions, "create", answer([{}]))
    with pytest.raises(ValueError, match="Empty probability data"):
        p.get_logprobs("the cat ", "yes", tok)
    monkeypatch.setattr(fake_openai.server.completions, "create",
                        answer([{"1": {"nope": 0.0}}]))
    with pytest.raises(IndexError, match="Unexpected format"):
        p.get_logprobs("the cat ", "yes", tok)
    monkeypatch.setattr(fake_openai.server.completions, "create",
                        answer([{"1": {"logprob": -0.5}}]))
    with pytest.raises(ValueError, match="Not enough logprobs"):
        p.get_logprobs("the cat ", "yes no", tok)
    monkeypatch.setattr(fake_openai.server.completions, "create",
                        lambda **kw: SimpleNamespace(choices=[]))
    with pytest.raises(KeyError, match="choices"):
        p.generate("the cat")

    def refuse(**kw):
        raise ConnectionError("refused")

    monkeypatch.setattr(fake_openai.server.completions, "create", refuse)
    with pytest.raises(ConnectionError, match="Failed to connect to vLLM API when getting"):
        p.get_logprobs("the cat ", "yes", tok)
    fake_openai.server.models.list = lambda: SimpleNamespace(data=[])
    with pytest.raises(ValueError, match="No models available"):
        sa.VLLMProvider("http://vllm:8000/v1")


def test_vllm_provider_without_openai_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "openai", None)   # import openai -> ImportError
    with pytest.raises(ImportError, match="pip install openai"):
        sa.VLLMProvider("http://vllm:8000/v1")
