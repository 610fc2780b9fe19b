"""The text family: attribution of a causal LM's answer to its prompt (service.runtime.text).

The perturbation methods run under ``LLMAttribution`` over the prompt's template slots or words;
the layer-gradient methods under ``LLMGradientAttribution`` on the spec's embedding layer, over
the prompt's words. An entry's ``engine`` is the wrapped Captum method, so the table checks its
parameter names against that method's ``attribute``. ``perturbations(n_features, params)`` is
the number of perturbed prompts a perturbation method runs (capped by ``max_perturbations``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from service import attribution as A

from .entry import AlgorithmEntry, Param


class TextFamily(str, Enum):
    PERTURBATION = "perturbation"   # LLMAttribution(method(model), tokenizer)
    GRADIENT = "gradient"           # LLMGradientAttribution(method(model, embedding), tokenizer)


Count = Callable[[int, Mapping[str, Any]], int]


@dataclass(frozen=True)
class TextAlgorithm(AlgorithmEntry):
    text_family: TextFamily = TextFamily.PERTURBATION  # (AlgorithmEntry.family: the input family)
    perturbations: Count | None = None
    per_token: bool = True   # gives token_attr (Lime and KernelShap: the whole answer only)


def _n_samples(default: int) -> Param:
    return Param("n_samples", int, default, minimum=1, limit="max_n_samples")


ENTRIES = (
    TextAlgorithm(name="FeatureAblation", engine=A.FeatureAblation,
                  perturbations=lambda n, p: n + 1),
    TextAlgorithm(name="ShapleyValueSampling", engine=A.ShapleyValueSampling,
                  params=(_n_samples(8),), stochastic=True,
                  perturbations=lambda n, p: p["n_samples"] * n + 1),
    TextAlgorithm(name="Lime", engine=A.Lime, params=(_n_samples(32),), stochastic=True,
                  perturbations=lambda n, p: p["n_samples"], per_token=False),
    TextAlgorithm(name="KernelShap", engine=A.KernelShap, params=(_n_samples(32),),
                  stochastic=True, perturbations=lambda n, p: p["n_samples"], per_token=False),
    TextAlgorithm(name="LayerIntegratedGradients", engine=A.LayerIntegratedGradients,
                  text_family=TextFamily.GRADIENT,
                  params=(Param("n_steps", int, 32, minimum=1, limit="max_n_steps"),
                          Param("method", str, "gausslegendre",
                                choices=("gausslegendre", "riemann_left", "riemann_right",
                                         "riemann_middle", "riemann_trapezoid")))),
    TextAlgorithm(name="LayerGradientXActivation", engine=A.LayerGradientXActivation,
                  text_family=TextFamily.GRADIENT),
    TextAlgorithm(name="LayerGradientShap", engine=A.LayerGradientShap,
                  text_family=TextFamily.GRADIENT, stochastic=True,
                  params=(_n_samples(8), Param("stdevs", float, 0.0, minimum=0.0,
                                               maximum=10.0))),
)
