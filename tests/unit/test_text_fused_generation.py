"""The text model's generation fused across a batch (``service.runtime.generate``): on tinylm,
prompts of different lengths in one batch give each row the tokens of the model's own
``generate`` for that prompt alone, and the log-probabilities of a hand-written forward pass of
prompt + generation (float64 log-softmax), including rows that stop early, rows cut by
max_new_tokens or by the context, and a batch of one. Through ``TextExecutor.run``: the
predictions equal those oracles and the unfused path's answers; a model error fails only the
request it comes from; a deadline passing mid-generation ends that row alone."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from torch import nn

from service.runtime import Limits, Request, load_spec
from service.runtime.errors import DeadlineExceeded, ModelError
from service.runtime.generate import Continuation, Row, greedy, greedy_isolated
from service.runtime.request import TemplatePayload, TextPayload
from service.runtime.text import TextExecutor
from tests.unit.test_text_serving import engine, lm_dir  # noqa: F401

CONTEXT = 24
# greedy answers of tinylm (max 8 new tokens, stop "."): lengths with <s>
STOPS_AT_7 = "bob says that"            # 4 tokens -> "the capital of norway is oslo ."
STOPS_AT_1 = "i think that bob says that"   # 7 tokens -> "."
NEVER_STOPS = "alice"                   # 2 tokens -> 8 tokens without the stop token
FULL = "in my opinion after a trip to spain i think that bob says that the capital of france is"


@pytest.fixture(scope="module")
def lm(engine):  # noqa: F811
    model, tok = engine
    return model, tok, tok.convert_tokens_to_ids(".")


def alone(model, ids: torch.Tensor, n_new: int, stop: int | None) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    """Oracles for one prompt ``(n_prompt,)``: the model's own generate, alone, and a forward of
    prompt + generation scoring it (float64 log-softmax): (tokens, log-probs)."""
    with torch.no_grad():
        out = model.generate(ids[None], max_new_tokens=n_new, eos_token_id=stop)[0]
        gen = out[ids.numel():]
        logits = model(input_ids=out[None]).logits[0, ids.numel() - 1:-1].double()
    return gen, torch.log_softmax(logits, -1).gather(1, gen[:, None])[:, 0]


def check(got: Continuation, want: tuple[torch.Tensor, torch.Tensor]) -> None:
    assert got.tokens.tolist() == want[0].tolist()
    assert got.log_probs.dtype == torch.float64
    torch.testing.assert_close(got.log_probs, want[1], atol=1e-5, rtol=0)


def rows_of(tok, texts_and_n: list[tuple[str, int]]) -> list[Row]:
    return [Row(torch.tensor(tok.encode(t)), min(n, CONTEXT - len(tok.encode(t))), math.inf)
            for t, n in texts_and_n]


def test_prompts_of_different_lengths_each_get_their_own_generation(lm):
    model, tok, stop = lm
    rows = rows_of(tok, [(STOPS_AT_7, 8), (NEVER_STOPS, 8), (STOPS_AT_1, 8),
                         ("the capital of", 2),          # cut by max_new_tokens at 2 of 4
                         (FULL, 8),                      # cut by the context
                         ("after a trip to spain i think the capital of france is", 8)])
    assert len({r.prompt_ids.numel() for r in rows}) > 1 and rows[4].n_new < 8
    got = greedy(model, rows, stop)
    for r, g in zip(rows, got):
        assert isinstance(g, Continuation)
        check(g, alone(model, r.prompt_ids, r.n_new, stop))
    lengths = [g.tokens.numel() for g in got if isinstance(g, Continuation)]
    assert lengths[:4] == [7, 8, 1, 2] and lengths[4] == rows[4].n_new
    assert tok.decode(got[0].tokens) == "the capital of norway is oslo ."   # type: ignore[union-attr]


def test_prompts_of_one_length_decode_on_the_cache_with_the_same_answers(lm):
    model, tok, stop = lm
    rows = rows_of(tok, [(STOPS_AT_7, 8), ("the capital of", 8), ("in my opinion", 3),
                         ("works as a", 8)])
    assert len({r.prompt_ids.numel() for r in rows}) == 1
    for r, g in zip(rows, greedy(model, rows, stop)):
        assert isinstance(g, Continuation)
        check(g, alone(model, r.prompt_ids, r.n_new, stop))


@pytest.mark.parametrize("text", [STOPS_AT_7, NEVER_STOPS])
def test_a_batch_of_one(lm, text):
    model, tok, stop = lm
    [row] = rows_of(tok, [(text, 8)])
    [g] = greedy(model, [row], stop)
    assert isinstance(g, Continuation)
    check(g, alone(model, row.prompt_ids, row.n_new, stop))


def test_without_a_stop_token_rows_run_to_their_n_new(lm):
    model, tok, _ = lm
    rows = rows_of(tok, [("the capital of", 6), (NEVER_STOPS, 3)])
    got = greedy(model, rows, None)
    assert [g.tokens.numel() for g in got if isinstance(g, Continuation)] == [6, 3]
    for r, g in zip(rows, got):
        assert isinstance(g, Continuation)
        check(g, alone(model, r.prompt_ids, r.n_new, None))


class RaisesOn(nn.Module):
    """tinylm, failing every forward pass whose input holds token ``bad``; counts the passes."""

    def __init__(self, lm: nn.Module, bad: int) -> None:
        super().__init__()
        self.lm, self.emb, self.bad, self.calls = lm, lm.emb, bad, 0

    def forward(self, input_ids: torch.Tensor, **kwargs):
        self.calls += 1
        if bool((input_ids == self.bad).any()):
            raise RuntimeError("the model cannot take this token")
        return self.lm(input_ids=input_ids, **kwargs)


def test_a_model_error_fails_only_the_row_that_causes_it(lm):
    model, tok, stop = lm
    wrapped = RaisesOn(model, tok.convert_tokens_to_ids("peru"))
    rows = rows_of(tok, [(STOPS_AT_7, 8), ("the capital of peru is", 8), (NEVER_STOPS, 8)])
    got = greedy_isolated(wrapped, rows, stop)
    assert isinstance(got[1], RuntimeError) and "cannot take" in str(got[1])
    for i in (0, 2):
        assert isinstance(got[i], Continuation)
        check(got[i], alone(model, rows[i].prompt_ids, rows[i].n_new, stop))  # type: ignore[arg-type]
    with pytest.raises(RuntimeError):
        greedy(wrapped, rows, stop)


@pytest.fixture(scope="module")
def spec(lm_dir):  # noqa: F811
    return load_spec(lm_dir / "spec.yaml")


def executor(model, spec, lm_dir, **kw) -> TextExecutor:  # noqa: F811
    return TextExecutor(model, spec, lm_dir, limits=Limits.build(spec, env={}), **kw)


BATCH = [dict(inputs=TextPayload(STOPS_AT_7)), dict(inputs=TextPayload(NEVER_STOPS)),
         dict(inputs=TextPayload(STOPS_AT_1)),
         dict(inputs=TextPayload("the capital of"), max_new_tokens=2),
         dict(inputs=TemplatePayload("after a trip to {other} i think the capital of {country} "
                                     "is", {"other": "spain", "country": "france"}),
              explain=True, algorithm="FeatureAblation"),
         dict(inputs=TextPayload("in spain alice works as a"), explain=True,
              algorithm="LayerIntegratedGradients", params={"n_steps": 8})]


def requests(batch=BATCH, **kw) -> list[Request]:
    return [Request(**{"explain": False, **b, **kw}) for b in batch]  # type: ignore[arg-type]


def test_the_executor_fuses_a_batch_into_the_oracles_predictions(lm, spec, lm_dir):  # noqa: F811
    model, tok, stop = lm
    fused = executor(model, spec, lm_dir).run(requests())
    unfused = executor(model, spec, lm_dir, fuse=False).run(requests())
    for req, f, u in zip(requests(), fused, unfused):
        assert not isinstance(f, Exception) and not isinstance(u, Exception), (f, u)
        ids = tok.encode(req.inputs.text if isinstance(req.inputs, TextPayload) else  # type: ignore[union-attr]
                         req.inputs.template.format(**req.inputs.values), return_tensors="pt")[0]
        gen, lp = alone(model, ids, req.max_new_tokens or 8, stop)
        assert f.prediction.label == tok.decode(gen) == u.prediction.label
        np.testing.assert_allclose(f.prediction.output, lp.numpy(), atol=1e-5, rtol=0)
        assert f.prediction.output.dtype == np.float64
        assert f.prediction.probability == pytest.approx(math.exp(float(lp.sum())), rel=1e-5)
        assert f.prediction.probability == pytest.approx(u.prediction.probability, rel=1e-5)
        assert (f.text is None) == (not req.explain) == (u.text is None)
        if f.text is not None:
            assert f.text.generated == u.text.generated and f.algorithm == u.algorithm
            np.testing.assert_allclose(f.text.seq_attr, u.text.seq_attr, rtol=1e-5, atol=1e-6)
    assert fused[3].prediction.label == "france is"            # max_new_tokens 2 of 4
    assert fused[2].prediction.label == "."


def test_a_request_the_model_fails_on_fails_alone(lm, spec, lm_dir):  # noqa: F811
    model, tok, _ = lm
    wrapped = RaisesOn(model, tok.convert_tokens_to_ids("peru"))
    ex = executor(wrapped, spec, lm_dir)
    batch = [*BATCH[:2], dict(inputs=TextPayload("the capital of peru is")), BATCH[4]]
    out = ex.run(requests(batch))
    assert isinstance(out[2], ModelError) and "RuntimeError" in str(out[2])
    want = executor(model, spec, lm_dir).run(requests([*BATCH[:2], BATCH[4]]))
    for got, w in zip([out[0], out[1], out[3]], want):
        assert not isinstance(got, Exception) and not isinstance(w, Exception), (got, w)
        assert got.prediction.label == w.prediction.label
        assert got.prediction.probability == pytest.approx(w.prediction.probability, rel=1e-5)
    assert out[3].text is not None                             # type: ignore[union-attr]


@pytest.mark.parametrize("texts", [
    [NEVER_STOPS, STOPS_AT_7, "the capital of france is"],     # several lengths: padded
    [NEVER_STOPS, "paris", "the"],                             # one length: on the cache
], ids=["padded", "lockstep"])
def test_a_deadline_passing_mid_generation_ends_that_request_alone(lm, spec, lm_dir,  # noqa: F811
                                                                   monkeypatch, texts):
    """A clock that moves 1 s with every forward pass: the first request's 1.5 s deadline
    passes after its second token (it would generate 8); the others, with the default
    deadline, finish."""
    model, tok, _ = lm
    clock = {"t": 1000.0}

    class Slow(RaisesOn):
        def forward(self, input_ids: torch.Tensor, **kwargs):
            clock["t"] += 1.0
            return super().forward(input_ids, **kwargs)

    monkeypatch.setattr("service.runtime.generate.time.monotonic", lambda: clock["t"])
    slow = Slow(model, -1)
    ex = executor(slow, spec, lm_dir)
    batch = [Request(explain=False, inputs=TextPayload(t), received_at=1000.0,
                     deadline_ms=1500 if i == 0 else 0) for i, t in enumerate(texts)]
    out = ex.run(batch)
    assert isinstance(out[0], DeadlineExceeded) and out[0].field == "deadline_ms"
    want = executor(model, spec, lm_dir).run(
        [Request(explain=False, inputs=TextPayload(t), received_at=time.monotonic())
         for t in texts[1:]])
    for got, w in zip(out[1:], want):
        assert not isinstance(got, Exception) and not isinstance(w, Exception), (got, w)
        assert got.prediction.label == w.prediction.label
    # the others went on after the first one ended: a pass for each of their tokens
    assert slow.calls >= max(w.prediction.output.size for w in want) > 2  # type: ignore[union-attr]
