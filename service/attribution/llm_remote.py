"""Attribution of a remotely hosted LM's answer (Captum 0.9's ``RemoteLLMAttribution``).

The model runs elsewhere (a vLLM server, say) and is reached through a ``RemoteLLMProvider``
that answers two questions: "what do you generate for this prompt?" and "what are the
log-probabilities of these answer tokens after this prompt?". ``RemoteLLMAttribution`` is
``LLMAttribution`` with its forward function replaced by one provider call per perturbed prompt,
so every perturbation method ``LLMAttribution`` wraps works unchanged. Only the text of a prompt
crosses the wire, so the answer is scored as one continuation of the prompt (the provider's
``prompt + answer``), never by forced decoding token by token.

``VLLMProvider`` talks to vLLM's OpenAI-compatible completions endpoint through the ``openai``
client package, imported when a provider is made (``pip install openai``); nothing else here
needs it.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from ._base import PerturbationAttribution
from ._common import AttributionInputError
from .interpretable_input import InterpretableInput, TextTemplateInput, TextTokenInput, TokenizerLike
from .llm_attr import DEFAULT_GEN_ARGS, InspectForward, LLMAttribution

log = logging.getLogger(__name__)


class RemoteLLMProvider(ABC):
    """A language model behind an API that reports log-probabilities."""

    api_url: str

    @abstractmethod
    def generate(self, prompt: str, **gen_args: Any) -> str:
        """The model's continuation of ``prompt``."""

    @abstractmethod
    def get_logprobs(self, input_prompt: str, target_str: str,
                     tokenizer: TokenizerLike | None = None) -> list[float]:
        """One log-probability per token of ``target_str`` (as ``tokenizer`` splits it without
        special tokens), each given the prompt and the answer tokens before it."""


class _PlaceholderModel:
    """Stands in for the model that the wrapped perturbation method is built on: the method
    never calls it, because ``RemoteLLMAttribution`` swaps in its own forward function."""

    def __init__(self) -> None:
        self.device: torch.device | str = torch.device("cpu")

    def __call__(self, *args: Any, **kwargs: Any) -> int:
        return 0


class RemoteLLMAttribution(LLMAttribution):
    """``LLMAttribution`` for a model reached through a ``RemoteLLMProvider``.

    Build the perturbation method on ``RemoteLLMAttribution.placeholder_model`` (its ``device``
    says where attribution tensors live), e.g. ``FeatureAblation(RemoteLLMAttribution
    .placeholder_model)``. Inputs are ``TextTemplateInput`` or ``TextTokenInput``; each perturbed
    prompt costs one ``provider.get_logprobs`` call.
    """

    placeholder_model = _PlaceholderModel()
    SUPPORTED_INPUTS: tuple[type, ...] = (TextTemplateInput, TextTokenInput)

    def __init__(self, attr_method: PerturbationAttribution, tokenizer: TokenizerLike,
                 provider: RemoteLLMProvider, attr_target: str = "log_prob") -> None:
        super().__init__(attr_method, tokenizer, attr_target)
        if not isinstance(provider, RemoteLLMProvider):
            raise AttributionInputError(
                f"provider must be a RemoteLLMProvider, got {type(provider).__name__}")
        self.provider = provider
        self.attr_method.forward_func = self._remote_forward_func

    def _prompt_text(self, model_input: str | Tensor | Mapping) -> str:
        """The prompt as text: token ids (``TextTokenInput``) are decoded."""
        if isinstance(model_input, Tensor):
            return self.tokenizer.decode(model_input.reshape(-1))
        if isinstance(model_input, str):
            return model_input
        raise AttributionInputError(
            "RemoteLLMAttribution sends text prompts; inp.to_model_input() gave "
            f"{type(model_input).__name__}")

    def _get_target_tokens(self, inp: InterpretableInput, target: str | Tensor | None = None,
                           gen_args: dict[str, Any] | None = None,
                           skip_tokens: list[int] | list[str] | None = None) -> Tensor:
        if target is None:   # the provider generates the answer; we tokenize it here
            if not isinstance(inp, self.SUPPORTED_INPUTS):
                names = ", ".join(c.__name__ for c in self.SUPPORTED_INPUTS)
                raise AttributionInputError(
                    f"RemoteLLMAttribution does not support inp of type "
                    f"{type(inp).__name__}; supported: {names}")
            answer = self.provider.generate(self._prompt_text(inp.to_model_input()),
                                            **dict(gen_args or DEFAULT_GEN_ARGS))
            target = torch.as_tensor(self.tokenizer.encode(answer, add_special_tokens=False))
        return super()._get_target_tokens(inp, target, None, skip_tokens)

    def _remote_forward_func(self, perturbed_tensor: Tensor | None, inp: InterpretableInput,
                             target_tokens: Tensor | Sequence[int],
                             use_cached_outputs: bool = False,
                             _inspect_forward: InspectForward | None = None,
                             forward_in_tokens: bool = False, prefix: Any = None,
                             first_row: int = 0, with_total: bool = True) -> Tensor:
        """Scores of the answer for each perturbed prompt, as ``LLMAttribution``'s forward
        function gives them: ``perturbed_tensor`` ``(k, n_itp)`` (or None: the unperturbed
        prompt) -> ``(k, 1 + n_target - first_row)`` for the per-token methods (without the
        sequence score unless ``with_total``; see ``LLMAttribution._forward_func``), else
        ``(k,)``.
        ``use_cached_outputs``, ``forward_in_tokens`` and ``prefix`` (a shared prompt prefix's
        cache, always None here: the placeholder offers no cache) have no meaning for a remote
        model and are accepted for the shared signature."""
        target_tokens = torch.as_tensor(target_tokens, dtype=torch.long)
        answer = self.tokenizer.decode(target_tokens)
        rows: list[Tensor | None] = ([None] if perturbed_tensor is None
                                     else list(perturbed_tensor.split(1)))
        scores = []
        for row in rows:
            prompt = self._prompt_text(inp.to_model_input(row))
            log_probs = self.provider.get_logprobs(input_prompt=prompt, target_str=answer,
                                                   tokenizer=self.tokenizer)
            if len(log_probs) != target_tokens.numel():
                raise ValueError(
                    f"the provider returned {len(log_probs)} log-probabilities for an answer "
                    f"of {target_tokens.numel()} tokens")
            token_lp = torch.tensor([float(v) for v in log_probs],
                                    dtype=torch.float64)                  # (n_target,)
            if not self.include_per_token_attr:
                scores.append(token_lp.sum())
            elif with_total:
                scores.append(torch.cat([token_lp.sum()[None], token_lp[first_row:]]))
            else:
                scores.append(token_lp[first_row:])
            if _inspect_forward is not None:
                probs = scores[-1].exp()
                _inspect_forward(prompt, answer, probs.reshape(-1).tolist())
        out = torch.stack(scores).to(self.device)   # (k, 1 + n_target) | (k,)
        return out.exp() if self.attr_target == "prob" else out


# --------------------------------------------------------------------------- vLLM

def _logprob_of(entry: Any) -> float:
    """The log-probability in one of vLLM's ``prompt_logprobs`` entries: a mapping from the
    token that is there to ``{"logprob": ...}`` (a dict or an object)."""
    if not entry:
        raise ValueError("Empty probability data in the vLLM answer: a token has no logprob")
    if len(entry) != 1:
        raise ValueError(f"vLLM gave {len(entry)} candidates for one prompt token; expected "
                         "only the token itself (prompt_logprobs=0)")
    info = next(iter(entry.values()))
    return float(info["logprob"] if isinstance(info, Mapping) else info.logprob)


class VLLMProvider(RemoteLLMProvider):
    """A model served by vLLM's OpenAI-compatible API at ``api_url``; ``model_name`` None takes
    the first model the server lists. The API key is ``$OPENAI_API_KEY`` ("EMPTY" if unset)."""

    model_name: str

    def __init__(self, api_url: str, model_name: str | None = None) -> None:
        try:
            from openai import OpenAI
        except ImportError as e:
            raise ImportError("VLLMProvider needs the 'openai' client package: "
                              "pip install openai") from e
        if not api_url or not api_url.strip():
            raise ValueError("VLLMProvider: API URL is required")
        self.api_url = api_url
        try:
            self.client = OpenAI(base_url=api_url, api_key=os.getenv("OPENAI_API_KEY", "EMPTY"))
            if model_name is None:
                models = self.client.models.list().data
                if not models:
                    raise ValueError(f"No models available from the vLLM API at {api_url}")
                model_name = str(models[0].id)
                log.info("VLLMProvider: no model_name given; using %s", model_name)
        except ValueError:
            raise
        except ConnectionError as e:
            raise ConnectionError(f"Failed to connect to vLLM API at {api_url}: {e}") from e
        self.model_name = model_name

    def _complete(self, what: str, **kwargs: Any) -> Any:
        """One completions call; its answer's first choice."""
        try:
            response = self.client.completions.create(model=self.model_name, **kwargs)
        except ConnectionError as e:
            raise ConnectionError(f"Failed to connect to vLLM API when {what}: {e}") from e
        choices = getattr(response, "choices", None)
        if not choices:
            raise KeyError(f"API response missing expected 'choices' data ({what})")
        return choices[0]

    def generate(self, prompt: str, **gen_args: Any) -> str:
        """Greedy or sampled continuation; ``max_new_tokens`` is read as OpenAI's
        ``max_tokens`` (25 by default) and ``do_sample`` is dropped (the API has no such
        switch: ``temperature`` decides)."""
        args = dict(gen_args)
        max_new = args.pop("max_new_tokens", 25)
        args.setdefault("max_tokens", max_new)
        args.pop("do_sample", None)
        return str(self._complete("generating text", prompt=prompt, **args).text)

    def get_logprobs(self, input_prompt: str, target_str: str,
                     tokenizer: TokenizerLike | None = None) -> list[float]:
        """Log-probabilities of ``target_str``'s tokens after ``input_prompt``: vLLM scores
        the prompt ``input_prompt + target_str`` (``prompt_logprobs=0``, one token generated)
        and the last ``len(tokenizer.encode(target_str))`` entries are the answer's."""
        if tokenizer is None:
            raise ValueError("VLLMProvider.get_logprobs: Tokenizer is required to count the "
                             "answer's tokens")
        if not target_str:
            raise ValueError("VLLMProvider.get_logprobs: Target string cannot be empty")
        n_target = len(tokenizer.encode(target_str, add_special_tokens=False))
        choice = self._complete("getting logprobs", prompt=input_prompt + target_str,
                                temperature=0.0, max_tokens=1,
                                extra_body={"prompt_logprobs": 0})
        entries = getattr(choice, "prompt_logprobs", None)
        if not entries:
            raise KeyError("API response missing 'prompt_logprobs' data")
        try:
            out = [_logprob_of(e) for e in entries[-n_target:]]
        except (KeyError, IndexError, AttributeError) as e:
            raise IndexError(f"Unexpected format in log probability data: {e!r}") from e
        if len(out) != n_target:
            raise ValueError(f"Not enough logprobs received: the answer has {n_target} "
                             f"tokens, vLLM scored {len(out)}")
        return out
