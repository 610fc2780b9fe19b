"""Streamed LLM attribution (``attribute_parts``, not in Captum): the parts, in order and
concatenated, are the one-shot ``token_attr`` (ours and captum 0.9's; up to float32 rounding for
the perturbation methods' earlier parts, computed on a prefix of the answer), the final part
carries the complete result (exactly ``attribute``'s), parts are computed lazily, and
sequence-only methods give one final part."""

from __future__ import annotations

import captum.attr as ca
import pytest
import torch

import service.attribution as sa
from tests.unit.test_llm_attr import PrefixMeanLM, WordTokenizer, _both

TARGET = "the cat sat on the mat"   # 6 answer tokens
N_OUT = 6
SIZES = [1, 3, 4, N_OUT + 5]        # one row, an even split, a ragged last part, one part


def _check_parts(parts: list, one_shot: sa.LLMAttributionResult, size: int) -> None:
    """Starts in order, sizes as asked, only the last final, concatenation == one-shot."""
    assert [p.start for p in parts] == list(range(0, N_OUT, size))
    assert [p.final for p in parts] == [False] * (len(parts) - 1) + [True]
    assert all(p.token_attr.shape[0] == min(size, N_OUT - p.start) for p in parts)
    rows = torch.cat([p.token_attr for p in parts])
    torch.testing.assert_close(rows, one_shot.token_attr, atol=1e-6, rtol=1e-6)
    final = parts[-1].result
    torch.testing.assert_close(final.token_attr, one_shot.token_attr, atol=0, rtol=0)
    torch.testing.assert_close(final.token_attr[parts[-1].start:], parts[-1].token_attr,
                               atol=0, rtol=0)
    torch.testing.assert_close(final.seq_attr, one_shot.seq_attr, atol=0, rtol=0)
    assert final.output_tokens == one_shot.output_tokens
    assert final.input_tokens == one_shot.input_tokens


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("method", ["FeatureAblation", "ShapleyValues"])
@pytest.mark.parametrize("forward_in_tokens", [True, False])
def test_template_parts_equal_one_shot_and_captum(size, method, forward_in_tokens):
    model, tok = PrefixMeanLM(seed=4).eval(), WordTokenizer()
    ours_inp, theirs_inp = _both("TextTemplateInput", "it is {} {} {} {}",
                                 ["a", "big", "blue", "cat"])
    llm = sa.LLMAttribution(getattr(sa, method)(model), tok)
    kwargs = dict(use_cached_outputs=False, forward_in_tokens=forward_in_tokens)
    parts = list(llm.attribute_parts(ours_inp, TARGET, part_size=size, **kwargs))
    _check_parts(parts, llm.attribute(ours_inp, TARGET, **kwargs), size)
    theirs = ca.LLMAttribution(getattr(ca, method)(model), tok).attribute(
        theirs_inp, TARGET, **kwargs)
    torch.testing.assert_close(torch.cat([p.token_attr for p in parts]), theirs.token_attr,
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(parts[-1].result.seq_attr, theirs.seq_attr, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("attr_target", ["log_prob", "prob"])
def test_token_input_parts_with_skip_tokens_and_prob(size, attr_target):
    model, tok = PrefixMeanLM(seed=5).eval(), WordTokenizer()
    ours_inp, theirs_inp = _both("TextTokenInput", "the big cat sat", tok, baselines="<unk>",
                                 skip_tokens=["<s>"])
    llm = sa.LLMAttribution(sa.FeatureAblation(model), tok, attr_target=attr_target)
    parts = list(llm.attribute_parts(ours_inp, TARGET, part_size=size, use_cached_outputs=False,
                                     perturbations_per_eval=3))
    _check_parts(parts, llm.attribute(ours_inp, TARGET, use_cached_outputs=False), size)
    theirs = ca.LLMAttribution(ca.FeatureAblation(model), tok, attr_target=attr_target).attribute(
        theirs_inp, TARGET, use_cached_outputs=False)
    torch.testing.assert_close(parts[-1].result.token_attr, theirs.token_attr, atol=1e-6,
                               rtol=1e-5)
    torch.testing.assert_close(parts[-1].result.seq_attr, theirs.seq_attr, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("size", [1, 3])
def test_seeded_sampling_draws_the_same_permutations_in_every_part(size):
    model, tok = PrefixMeanLM(seed=6).eval(), WordTokenizer()
    inp = sa.TextTemplateInput("{} {} is {}", ["a", "red", "dog"])
    llm = sa.LLMAttribution(sa.ShapleyValueSampling(model), tok)
    torch.manual_seed(7)
    one_shot = llm.attribute(inp, TARGET, use_cached_outputs=False, n_samples=5, num_trials=2)
    after_one_shot = torch.random.get_rng_state()
    torch.manual_seed(7)
    parts = list(llm.attribute_parts(inp, TARGET, part_size=size, use_cached_outputs=False,
                                     n_samples=5, num_trials=2))
    _check_parts(parts, one_shot, size)
    # the random state afterwards is the one-shot call's: the parts draw as one call would
    assert torch.equal(torch.random.get_rng_state(), after_one_shot)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("skip", [None, ["<s>"]])
def test_gradient_parts_equal_one_shot_and_captum(size, skip):
    model, tok = PrefixMeanLM(seed=2).eval(), WordTokenizer()
    ours_inp, theirs_inp = _both("TextTokenInput", "the cat sat", tok, skip_tokens=skip)
    llm = sa.LLMGradientAttribution(sa.LayerIntegratedGradients(model, model.emb), tok)
    parts = list(llm.attribute_parts(ours_inp, TARGET, part_size=size, n_steps=20))
    _check_parts(parts, llm.attribute(ours_inp, TARGET, n_steps=20), size)
    theirs = ca.LLMGradientAttribution(ca.LayerIntegratedGradients(model, model.emb),
                                       tok).attribute(theirs_inp, TARGET, n_steps=20)
    torch.testing.assert_close(parts[-1].result.token_attr, theirs.token_attr, atol=1e-5,
                               rtol=1e-4)


class _Counting(PrefixMeanLM):
    calls = 0

    def forward(self, input_ids, attention_mask=None, **kwargs):
        type(self).calls += 1
        return super().forward(input_ids, attention_mask, **kwargs)


@pytest.mark.parametrize("kind", ["perturbation", "gradient"])
def test_parts_are_computed_lazily(kind):
    """The first part is yielded before the later rows are computed."""
    model, tok = _Counting(seed=1).eval(), WordTokenizer()
    inp = sa.TextTokenInput("the big cat", tok)
    if kind == "perturbation":
        llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
        stream = llm.attribute_parts(inp, TARGET, part_size=2, use_cached_outputs=False,
                                     forward_in_tokens=False)
    else:
        llm = sa.LLMGradientAttribution(sa.LayerGradientXActivation(model, model.emb), tok)
        stream = llm.attribute_parts(inp, TARGET, part_size=2)
    _Counting.calls = 0
    first = next(stream)
    after_first = _Counting.calls
    rest = list(stream)
    assert first.start == 0 and not first.final and len(rest) == 2
    assert 0 < after_first < _Counting.calls


@pytest.mark.parametrize("method", ["Lime", "KernelShap"])
def test_sequence_only_methods_give_one_final_part(method):
    model, tok = PrefixMeanLM(seed=1).eval(), WordTokenizer()
    inp = sa.TextTemplateInput("{} {} is {}", ["a", "red", "dog"])
    llm = sa.LLMAttribution(getattr(sa, method)(model), tok)
    torch.manual_seed(0)
    one_shot = llm.attribute(inp, TARGET, use_cached_outputs=False, n_samples=40)
    torch.manual_seed(0)
    parts = list(llm.attribute_parts(inp, TARGET, part_size=1, use_cached_outputs=False,
                                     n_samples=40))
    assert len(parts) == 1 and parts[0].final and parts[0].token_attr is None
    assert parts[0].result.token_attr is None
    torch.testing.assert_close(parts[0].result.seq_attr, one_shot.seq_attr, atol=0, rtol=0)


@pytest.mark.parametrize("size", [0, -1, 1.5, True])
def test_bad_part_size_is_refused(size):
    model, tok = PrefixMeanLM().eval(), WordTokenizer()
    inp = sa.TextTokenInput("the cat", tok)
    llm = sa.LLMAttribution(sa.FeatureAblation(model), tok)
    with pytest.raises(ValueError, match="part_size"):
        next(llm.attribute_parts(inp, TARGET, part_size=size))
