"""Serving a text model (``input.kind: text``): why did the causal LM give this answer.

``TextExecutor`` answers requests carrying ``inputs.text`` (the prompt's words are the
features) or ``inputs.template`` (a ``{name}`` template: its slots are the features). The answer
explained is ``target_text``, or the model's own greedy generation (at most ``max_new_tokens``
tokens, stopping after the spec's stop token). Perturbation methods run under the engine's
``LLMAttribution``, layer-gradient methods under ``LLMGradientAttribution`` on the spec's
embedding layer (over the prompt's words; a template is filled in first). Every request of a
batch is validated first, then one greedy generation runs for all of them (``generate.greedy``:
one forward pass a step for the whole batch, which also scores the generated tokens), then each
request is explained on its own. One bad request fails alone, with an error naming its field; if
the batch's generation fails, each request is generated again alone, so only the request the
model fails on fails.

A request with ``stream_tokens`` is answered in parts: every part of the token-by-token matrix
(the engine's ``attribute_parts``) is handed, as a partial ``Response``, to the ``on_part``
callback ``run`` was given, as soon as it is computed; the outcome ``run`` returns is the
complete answer. The deadline is checked between parts (and before every forward pass); an
error after some parts were sent is the request's outcome.
"""

from __future__ import annotations

import contextlib
import math
import pathlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from service import attribution as A

from .algorithms import AlgorithmTable, text_table
from .algorithms.text import TextAlgorithm, TextFamily
from .cache import BaselineCache
from .errors import DeadlineExceeded, ExplainError, InvalidInput, LimitExceeded, ModelError
from .generate import Continuation, Row, greedy_isolated
from .heatmap import heatmap_png
from .limits import Limits
from .request import (
    BaselineKind,
    Prediction,
    Request,
    Response,
    TargetKind,
    TextExplanation,
    Timings,
)
from .run import seeded
from .spec import ModelSpec, SpecError
from .text_prompt import Prompt, parse_prompt, template_slots
from .work import Outcome, check_deadline, expires_at, ms, unexpected

PER_EVAL = 16  # perturbed prompts per forward pass

# on_part(position of the request in the batch, partial response): a streamed request's parts
OnPart = Callable[[int, Response], None]
PartSink = Callable[[Response], None]


@dataclass
class _Prepared:
    """A request validated and ready to generate for: everything before the model runs."""

    pos: int
    req: Request
    sink: PartSink | None
    prompt: Prompt
    prompt_ids: Tensor                          # (1, n_prompt)
    n_new: int
    entry: TextAlgorithm | None
    params: dict[str, Any]
    target_ids: Tensor | None                   # (n_target,): target_text's ids, if given
    timings: Timings
    t_start: float


class _Expired(Exception):
    """Raised from the deadline hook inside an engine call."""


class TextExecutor:
    """Predictions (greedy generations) and explanations for one causal LM; transport-free.
    Same interface as ``Executor``: ``run(requests) -> outcomes``, ``spec``, ``limits``,
    ``table``, ``cache``."""

    def __init__(self, model: nn.Module, spec: ModelSpec, model_dir: str | pathlib.Path = ".",
                 limits: Limits | None = None, device: torch.device | str | None = None,
                 table: AlgorithmTable | None = None, fuse: bool = True) -> None:
        from service.nets import WordTokenizer

        if spec.text is None:
            raise SpecError("spec.yaml: `input.text` is required for a text model")
        self.spec, self.text = spec, spec.text
        self.limits = limits or Limits.build(spec)
        self.table = table if table is not None else text_table()
        self.layers: dict[str, Any] = {}   # no nameable layers (GetModelSpec lists none)
        self.table.check_spec(spec, self.limits)
        self.cache = BaselineCache(0)    # the handler's metrics read it; text has no baselines
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.model = model.to(self.device).eval()
        path = pathlib.Path(model_dir) / self.text.tokenizer
        if not path.is_file():
            raise SpecError(f"spec.yaml: `input.text.tokenizer`: {path} does not exist")
        self.tokenizer = WordTokenizer.load(path)
        for key in ("stop_token", "baseline_token"):
            token = getattr(self.text, key)
            if token and token not in self.tokenizer.ids:
                raise SpecError(f"spec.yaml: `input.text.{key}` {token!r} is not in the "
                                "tokenizer's vocabulary")
        try:
            self.embedding = self.model.get_submodule(self.text.embedding_layer)
        except AttributeError as e:
            raise SpecError(f"spec.yaml: `input.text.embedding_layer` "
                            f"{self.text.embedding_layer!r} is not a module of the model") from e
        self.stop_id = (self.tokenizer.convert_tokens_to_ids(self.text.stop_token)
                        if self.text.stop_token else None)
        self.fuse = fuse    # False: each request generates alone (the model's generate)

    # ---- the batch

    def run(self, requests: Sequence[Request | ExplainError],
            on_part: OnPart | None = None) -> list[Outcome]:
        """One outcome per request, in order; never raises. A request with ``stream_tokens``
        hands its partial responses to ``on_part(position, response)`` first (without
        ``on_part``, such a request is refused: this caller cannot stream). With ``fuse``
        (the default) the batch's generations run together; without, each request runs
        ``answer`` alone (the model's own ``generate``, then a pass scoring its tokens)."""
        outcomes: list[Outcome | None] = [None] * len(requests)
        prepared: list[_Prepared] = []
        for pos, req in enumerate(requests):
            if isinstance(req, ExplainError):
                outcomes[pos] = req
                continue
            sink = None
            if on_part is not None and req.stream_tokens:
                def sink(resp: Response, pos: int = pos) -> None:
                    assert on_part is not None
                    on_part(pos, resp)
            try:
                if not self.fuse:
                    outcomes[pos] = self.answer(req, sink)
                    continue
                prepared.append(self._prepare(pos, req, sink))
            except Exception as e:
                outcomes[pos] = unexpected(e, req, "text")
        t0 = time.perf_counter()
        generations = greedy_isolated(
            self.model, [Row(p.prompt_ids[0], p.n_new, expires_at(p.req, self.limits))
                         for p in prepared], self.stop_id) if prepared else []
        took = ms(t0)
        for p, generation in zip(prepared, generations):
            try:
                if isinstance(generation, Exception):
                    raise generation
                p.timings.predict_ms = took
                outcomes[p.pos] = self._respond(p, generation.tokens, self._scored(generation))
            except Exception as e:
                outcomes[p.pos] = unexpected(e, p.req, "text")
        assert all(o is not None for o in outcomes)
        return [o for o in outcomes if o is not None]

    def answer(self, req: Request, on_part: PartSink | None = None) -> Response:
        """One request alone: the model's own ``generate``, a forward pass scoring its tokens,
        then the explanation (the path of ``fuse=False``)."""
        p = self._prepare(0, req, on_part)
        t0 = time.perf_counter()
        with self._deadline(req):
            generated = self.generate(p.prompt_ids, p.n_new)                # (n_generated,)
            prediction = self._prediction(p.prompt_ids, generated)
        p.timings.predict_ms = ms(t0)
        return self._respond(p, generated, prediction)

    def _prepare(self, pos: int, req: Request, sink: PartSink | None) -> _Prepared:
        """Everything before generation: deadline, streaming, prompt, limits, algorithm and
        target (an ExplainError naming the field for a bad request)."""
        t_start = time.perf_counter()
        timings = Timings()
        check_deadline(req, self.limits)
        self._check_streaming(req, sink)
        prompt = self.prompt(req)
        prompt_ids = self.tokenizer.encode(prompt.text, return_tensors="pt").to(self.device)
        n_prompt = prompt_ids.size(1)
        self._check_prompt_length(prompt, n_prompt)
        entry, params = (self._algorithm(req) if req.explain else (None, {}))
        target_ids = self._target(req, prompt, n_prompt) if req.explain else None
        n_new = self._n_new(req, prompt, n_prompt)
        timings.preprocess_ms = ms(t_start)
        return _Prepared(pos, req, sink, prompt, prompt_ids, n_new, entry, params, target_ids,
                         timings, t_start)

    def _respond(self, p: _Prepared, generated: Tensor, prediction: Prediction) -> Response:
        """The answer to a prepared request, given its generation ``(n_generated,)``."""
        req, timings = p.req, p.timings
        response = Response(model=self.spec.name, model_version=self.spec.version,
                            request_id=req.request_id, algorithm="", prediction=prediction,
                            timings=timings)
        if req.explain:
            entry = p.entry
            assert isinstance(entry, TextAlgorithm)
            target = generated if p.target_ids is None else p.target_ids
            if target.numel() == 0:
                raise InvalidInput("max_new_tokens", "the model generated no token to explain "
                                   "(the context is full); give target_text")
            t0 = time.perf_counter()
            response.algorithm = entry.name
            response.text, response.part_index = self._explain(
                req, p.prompt, entry, p.params, target, response, p.sink)
            timings.explain_ms = ms(t0)
            timings.fused_group_size = 1
        timings.total_ms = ms(p.t_start)
        return response

    # ---- validation

    def _check_streaming(self, req: Request, on_part: PartSink | None) -> None:
        """``stream_tokens`` / ``stream_part_tokens`` make sense together, on an explanation,
        from a caller that can stream."""
        if req.stream_part_tokens and not req.stream_tokens:
            raise InvalidInput("stream_part_tokens", "needs stream_tokens: true")
        if not req.stream_tokens:
            return
        if not req.explain:
            raise InvalidInput("stream_tokens", "streams an explanation's token rows; a "
                               "prediction has none (use /explanations or ExplainStream)")
        if not req.outputs.attributions:
            raise InvalidInput("stream_tokens", "streams token_attr rows, which "
                               "outputs.attributions: false leaves out")
        if on_part is None:
            raise InvalidInput("stream_tokens", "this call cannot stream: use ExplainStream "
                               "(gRPC) or POST /explanations (REST)")

    def _part_size(self, req: Request, n_out: int, perturbations: int | None) -> int:
        """Answer tokens per part: ``stream_part_tokens``, or (0) the fewest that keep the
        parts within ``max_stream_parts`` and, for a perturbation method (``perturbations``
        perturbed prompts per part), the total within ``max_perturbations``."""
        cap = self.limits.max_stream_parts
        if perturbations:
            cap = max(1, min(cap, self.limits.max_perturbations // perturbations))
        if not req.stream_part_tokens:
            return max(1, math.ceil(n_out / cap))
        size = req.stream_part_tokens
        parts = math.ceil(n_out / size)
        if parts > self.limits.max_stream_parts:
            raise LimitExceeded("stream_part_tokens", f"{size} tokens per part gives {parts} "
                                f"parts for an answer of {n_out} tokens, above the limit "
                                f"{self.limits.max_stream_parts} (max_stream_parts)")
        if perturbations and parts * perturbations > self.limits.max_perturbations:
            raise LimitExceeded("stream_part_tokens", f"{parts} parts x {perturbations} "
                                "perturbed prompts (each part re-runs them) is above the limit "
                                f"{self.limits.max_perturbations} (max_perturbations)")
        return size

    def prompt(self, req: Request) -> Prompt:
        """The request's prompt, validated (errors name ``inputs.text`` / ``inputs.template``)."""
        return parse_prompt(req.inputs, self.spec.name)

    def _check_prompt_length(self, prompt: Prompt, n_tokens: int) -> None:
        """The prompt (and, for a template, the prompt with every slot at the longer of its
        value and its baseline) within ``max_prompt_tokens`` and the model's context."""
        longest = n_tokens
        if prompt.template is not None:
            t = prompt.template
            widest = {k: max(v, t.baselines.get(k, ""), key=lambda s: len(s.split()))
                      for k, v in t.values.items()}
            longest = max(n_tokens, len(self.tokenizer.encode(t.template.format(**widest))))
        if longest > self.limits.max_prompt_tokens:
            raise LimitExceeded(prompt.field, f"{longest} tokens is above the limit "
                                f"{self.limits.max_prompt_tokens} (max_prompt_tokens)")
        if longest >= self.text.context_length:
            raise LimitExceeded(prompt.field, f"{longest} tokens leave no room for an answer in "
                                f"the model's context of {self.text.context_length} tokens")

    def _algorithm(self, req: Request) -> tuple[TextAlgorithm, dict[str, Any]]:
        if req.target.kind not in (TargetKind.DEFAULT, TargetKind.PREDICTED):
            raise InvalidInput("target", "a text model explains an answer: give target_text "
                               "(or nothing, for the model's own generation)")
        if req.baseline.kind is not BaselineKind.DEFAULT:
            raise InvalidInput("baseline", "a text model takes baselines per template slot "
                               "(inputs.template.baselines); a removed word of inputs.text "
                               f"becomes {self.text.baseline_token!r}")
        name = req.algorithm or self.spec.default_algorithm
        entry = self.table.lookup(name, self.spec.algorithms)
        assert isinstance(entry, TextAlgorithm)
        defaults = entry.defaults(self.spec.input_kind.value,
                                  self.spec.default_params.get(name, {}))
        return entry, entry.resolve_params(req.params, defaults, self.limits)

    def _target(self, req: Request, prompt: Prompt, n_prompt: int) -> Tensor | None:
        """``target_text``'s token ids ``(n_target,)``, or None (explain the generation)."""
        if not req.target_text:
            return None
        ids = self.tokenizer.encode(req.target_text, add_special_tokens=False)
        if not ids:
            raise InvalidInput("target_text", "has no tokens")
        if len(ids) > self.limits.max_target_tokens:
            raise LimitExceeded("target_text", f"{len(ids)} tokens is above the limit "
                                f"{self.limits.max_target_tokens} (max_target_tokens)")
        if n_prompt + len(ids) > self.text.context_length:
            raise LimitExceeded("target_text", f"the prompt's {n_prompt} and the answer's "
                                f"{len(ids)} tokens exceed the model's context of "
                                f"{self.text.context_length}")
        return torch.tensor(ids, dtype=torch.long, device=self.device)

    def _n_new(self, req: Request, prompt: Prompt, n_prompt: int) -> int:
        """Tokens to generate: ``max_new_tokens`` (0: the limit), within the context."""
        cap = self.limits.max_new_tokens
        if req.max_new_tokens > cap:
            raise LimitExceeded("max_new_tokens", f"{req.max_new_tokens} is above the limit "
                                f"{cap} (max_new_tokens)")
        return min(req.max_new_tokens or cap, self.text.context_length - n_prompt)

    # ---- the model

    @torch.no_grad()
    def generate(self, prompt_ids: Tensor, n_new: int) -> Tensor:
        """Greedy continuation ``(n_generated,)`` of ``prompt_ids`` ``(1, n_prompt)``,
        stopping after the stop token."""
        generate: Any = self.model.generate     # Hugging Face's convention (duck-typed)
        out = generate(prompt_ids, max_new_tokens=n_new, eos_token_id=self.stop_id,
                       do_sample=False)
        return out[0, prompt_ids.size(1):]

    def _scored(self, generation: Continuation) -> Prediction:
        """A generation and its tokens' log-probabilities as a prediction: ``label`` its text,
        ``probability`` the product of its tokens' probabilities, ``output`` their
        log-probabilities ``(n_generated,)`` (the fused steps give them; ``_prediction``
        scores the model's own ``generate`` in one more pass)."""
        token_lp = generation.log_probs                                     # (n_generated,)
        return Prediction(index=0, label=self.tokenizer.decode(generation.tokens),
                          probability=math.exp(float(token_lp.sum())), top=[],
                          output=token_lp.cpu().numpy())

    @torch.no_grad()
    def _prediction(self, prompt_ids: Tensor, generated: Tensor) -> Prediction:
        """The model's own generation, scored in one forward pass, as a prediction."""
        ids = torch.cat([prompt_ids[0], generated])[None]                   # (1, n_all)
        logits = self.model(input_ids=ids).logits[0]                        # (n_all, vocab)
        n = prompt_ids.size(1)
        log_probs = torch.log_softmax(logits[n - 1:-1].double(), dim=-1)    # (n_generated, V)
        token_lp = log_probs.gather(1, generated[:, None]).reshape(-1)
        return self._scored(Continuation(generated, token_lp))

    @contextlib.contextmanager
    def _deadline(self, req: Request) -> Iterator[None]:
        """Before every forward pass inside the block: DeadlineExceeded once the request's
        deadline has passed."""
        until = expires_at(req, self.limits)

        def check(module: nn.Module, args: object) -> None:
            if time.monotonic() > until:
                raise _Expired()

        handle = self.model.register_forward_pre_hook(check)
        try:
            yield
        except _Expired:
            raise DeadlineExceeded("deadline_ms", "passed while computing") from None
        finally:
            handle.remove()

    # ---- the explanation

    def interpretable_input(self, prompt: Prompt, entry: TextAlgorithm) -> A.InterpretableInput:
        """Template slots for a perturbation method given a template, else the prompt's words
        (removed words become the spec's baseline token; the skip tokens are not features)."""
        if entry.text_family is TextFamily.PERTURBATION and prompt.template is not None:
            t = prompt.template
            return A.TextTemplateInput(t.template, values=dict(t.values),
                                       baselines={k: t.baselines.get(k, "") for k in t.values})
        return A.TextTokenInput(prompt.text, self.tokenizer, baselines=self.text.baseline_token,
                                skip_tokens=list(self.text.skip_tokens) or None)

    def _explain(self, req: Request, prompt: Prompt, entry: TextAlgorithm,
                 params: dict[str, Any], target: Tensor, response: Response,
                 on_part: PartSink | None) -> tuple[TextExplanation, int]:
        """The explanation and the number of partial responses handed to ``on_part`` before it
        (``response`` gives the partials their model, id, algorithm and prediction)."""
        inp = self.interpretable_input(prompt, entry)
        method_params = {k: v for k, v in params.items() if k != "seed"}
        count = None
        if entry.text_family is TextFamily.PERTURBATION:
            assert entry.perturbations is not None and entry.engine is not None
            count = entry.perturbations(inp.n_itp_features, params)
            if count > self.limits.max_perturbations:
                where = "params.n_samples" if "n_samples" in params else prompt.field
                raise LimitExceeded(where, f"{count} perturbed prompts is above the limit "
                                    f"{self.limits.max_perturbations} (max_perturbations)")
            llm: Any = A.LLMAttribution(entry.engine(self.model), self.tokenizer)
            kwargs = {**method_params, "perturbations_per_eval": PER_EVAL,
                      "forward_in_tokens": False, "use_cached_outputs": True}
            if not llm.include_per_token_attr:
                count = None   # one part: Lime and KernelShap have no token rows
        else:
            assert entry.engine is not None
            llm = A.LLMGradientAttribution(entry.engine(self.model, self.embedding),
                                           self.tokenizer)
            kwargs = dict(method_params)
            if entry.name == "LayerGradientShap":   # the all-baseline-token prompt
                kwargs["baselines"] = torch.zeros_like(inp.to_tensor(), dtype=torch.float32)
        part_size = (self._part_size(req, target.numel(), count) if on_part is not None
                     else None)
        sent = 0
        result = None
        try:
            with self._deadline(req), seeded(params.get("seed") if entry.stochastic else None,
                                            self.device):
                for part in llm.attribute_parts(inp, target=target, part_size=part_size,
                                                **kwargs):
                    if part.final:
                        result = part.result
                        break
                    assert on_part is not None and part.token_attr is not None
                    rows = self._finite(part.token_attr)          # (n_rows, n_features)
                    check_deadline(req, self.limits)
                    on_part(self._partial(response, target, part.output_tokens,
                                          [str(v) for v in inp.values], rows, part.start, sent))
                    sent += 1
        except ValueError as e:
            if isinstance(e, ExplainError):
                raise
            raise InvalidInput("params", f"{entry.name} refused these parameters: {e}") from e
        assert result is not None
        seq = self._finite(result.seq_attr)                                # (n_features,)
        tok = (self._finite(result.token_attr)                             # (n_out, n_features)
               if result.token_attr is not None else None)
        if tok is not None and tok.shape != (target.numel(), seq.shape[0]):
            raise ModelError("algorithm", f"{entry.name} returned token attributions of shape "
                             f"{tok.shape}")
        png = (heatmap_png(tok if tok is not None else seq[None]) if req.outputs.heatmap
               else None)
        return TextExplanation(
            generated=self.tokenizer.decode(target), output_tokens=list(result.output_tokens),
            input_features=[str(v) for v in result.input_tokens], seq_attr=seq,
            token_attr=tok if req.outputs.attributions else None, heatmap_png=png), sent

    @staticmethod
    def _finite(t: Tensor) -> np.ndarray:
        a = t.detach().double().cpu().numpy()
        if not np.isfinite(a).all():
            raise InvalidInput("inputs", "the attributions are not finite numbers")
        return a

    def _partial(self, response: Response, target: Tensor, output_tokens: list[str],
                 features: list[str], rows: np.ndarray, start: int, index: int) -> Response:
        """Part ``index`` of a streamed answer: rows ``start ..`` of token_attr."""
        text = TextExplanation(generated=self.tokenizer.decode(target),
                               output_tokens=list(output_tokens), input_features=features,
                               seq_attr=np.zeros(0), token_attr=rows, token_row_offset=start)
        return Response(model=response.model, model_version=response.model_version,
                        request_id=response.request_id, algorithm=response.algorithm,
                        prediction=response.prediction, text=text, partial=True,
                        part_index=index)


__all__ = ["TextExecutor", "template_slots"]
