"""Limits: the typed, frozen request limits, from the runtime defaults, the model spec's
``limits:`` overrides and the environment (``EXPLAIN_LIMIT_<NAME>``, e.g.
``EXPLAIN_LIMIT_MAX_N_STEPS=512``), in that order of precedence (last wins)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace

from .spec import ModelSpec

ENV_PREFIX = "EXPLAIN_LIMIT_"


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 8 * 1024 * 1024  # every body: JSON, image bytes, serialized protobuf
    max_image_pixels: int = 4096 * 4096  # width x height, read from the image header
    max_tensor_elements: int = 4 * 1024 * 1024  # elements of one inputs/baseline tensor
    max_json_depth: int = 32  # nesting of objects and lists in a JSON body
    max_n_steps: int = 256
    max_n_samples: int = 256
    max_nt_samples: int = 64
    max_metric_samples: int = 16  # perturbations per metric (outputs.metric_samples)
    max_top_k: int = 10
    max_top_features: int = 100
    max_reference_rows: int = 1024
    max_blur_sigma: int = 64  # pixels
    max_features: int = 4096  # features (patches) one perturbation explanation ablates
    max_deadline_ms: int = 60_000  # also the deadline of requests that give none
    max_batch_rows: int = 512  # rows per engine pass: the memory budget of one chunk
    max_pass_bytes: int = 1024 * 1024 * 1024  # saved activations of one engine pass
    # text models (service.runtime.text)
    max_prompt_tokens: int = 512  # tokens of inputs.text / the filled inputs.template
    max_new_tokens: int = 32  # tokens generated when targetText is "" (also maxNewTokens' cap)
    max_target_tokens: int = 64  # tokens of targetText
    max_perturbations: int = 4096  # perturbed prompts one perturbation explanation runs
    max_stream_parts: int = 16  # parts a streamed text answer is sent in (streamTokens)

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    def with_overrides(self, overrides: Mapping[str, int], source: str) -> Limits:
        unknown = sorted(set(overrides) - set(self.names()))
        if unknown:
            raise ValueError(f"{source}: unknown limit(s) {', '.join(unknown)}; "
                             f"known: {', '.join(self.names())}")
        bad = [k for k, v in overrides.items() if int(v) < 1]
        if bad:
            raise ValueError(f"{source}: limit(s) {', '.join(bad)} must be >= 1")
        return replace(self, **{k: int(v) for k, v in overrides.items()})

    @classmethod
    def build(cls, spec: ModelSpec | None = None,
              env: Mapping[str, str] | None = None) -> Limits:
        limits = cls()
        if spec is not None and spec.limits:
            limits = limits.with_overrides(spec.limits, "spec.yaml limits")
        env = os.environ if env is None else env
        from_env = {k[len(ENV_PREFIX):].lower(): v for k, v in env.items()
                    if k.startswith(ENV_PREFIX)}
        if from_env:
            try:
                parsed = {k: int(v) for k, v in from_env.items()}
            except ValueError as e:
                raise ValueError(f"{ENV_PREFIX}* values must be integers: {e}") from e
            limits = limits.with_overrides(parsed, "environment")
        return limits
