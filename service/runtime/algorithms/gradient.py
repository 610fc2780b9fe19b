"""The gradient family: IntegratedGradients, Saliency, the DeepLift and SHAP variants, the
backprop rules, and NoiseTunnel over one of them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import Tensor

from service import attribution as A

from . import tunnel
from .entry import AlgorithmEntry, BaselineMode, BuildContext, Param

_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
            "riemann_middle")

INTEGRATED_GRADIENTS = AlgorithmEntry(
    name="IntegratedGradients", engine=A.IntegratedGradients,
    params=(Param("n_steps", int, 50, minimum=1, limit="max_n_steps"),
            Param("method", str, "gausslegendre", choices=_METHODS)),
    baselines=BaselineMode.PER_EXAMPLE, completeness=True, chunk_param="internal_batch_size")

SALIENCY = AlgorithmEntry(name="Saliency", engine=A.Saliency, params=(Param("abs", bool, True),))
INPUT_X_GRADIENT = AlgorithmEntry(name="InputXGradient", engine=A.InputXGradient)
GUIDED_BACKPROP = AlgorithmEntry(name="GuidedBackprop", engine=A.GuidedBackprop)
DECONVOLUTION = AlgorithmEntry(name="Deconvolution", engine=A.Deconvolution)
DEEP_LIFT = AlgorithmEntry(name="DeepLift", engine=A.DeepLift,
                           baselines=BaselineMode.PER_EXAMPLE, completeness=True)
DEEP_LIFT_SHAP = AlgorithmEntry(
    name="DeepLiftShap", engine=A.DeepLiftShap,
    baselines=BaselineMode.REFERENCE_SET, completeness=True, min_reference_rows=2)
GRADIENT_SHAP = AlgorithmEntry(
    name="GradientShap", engine=A.GradientShap,
    params=(Param("n_samples", int, 5, minimum=1, limit="max_n_samples"),
            Param("stdevs", float, 0.0, minimum=0.0)),
    baselines=BaselineMode.REFERENCE_SET, completeness=True, stochastic=True, fusable=False)
INPUT_BASELINE_X_GRADIENT = AlgorithmEntry(
    name="InputBaselineXGradient", engine=A.InputBaselineXGradient,
    baselines=BaselineMode.PER_EXAMPLE, stochastic=True, fusable=False)

# The methods NoiseTunnel may wrap (its `base` parameter).
NT_BASES: dict[str, AlgorithmEntry] = {e.name: e for e in (
    INTEGRATED_GRADIENTS, SALIENCY, INPUT_X_GRADIENT, GUIDED_BACKPROP, DECONVOLUTION, DEEP_LIFT)}


def _nt_build(ctx: BuildContext, params: Mapping[str, Any]) -> Any:
    return NT_BASES[params["base"]].make(ctx, {})  # the inner engine; _nt_run tunnels it


def _nt_run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
            params: dict[str, Any], chunk_rows: int) -> Tensor:
    """The base method with its defaults (IntegratedGradients: ``base_n_steps`` steps) through
    the one noise-tunnel mechanism that the request option ``noise_tunnel`` uses too."""
    base = NT_BASES[params["base"]]
    base_params = base.defaults("")
    base_params.pop("seed", None)
    if "n_steps" in base_params:
        base_params["n_steps"] = params["base_n_steps"]
    options = tunnel.NoiseOptions(type=params["nt_type"], samples=params["nt_samples"],
                                  stdevs=params["stdevs"])
    return tunnel.execute(base, engine, options, inputs, baselines, targets, base_params,
                          chunk_rows)


NOISE_TUNNEL = AlgorithmEntry(
    name="NoiseTunnel", build=_nt_build,
    params=(Param("base", str, "Saliency", choices=tuple(NT_BASES)),
            Param("nt_type", str, "smoothgrad", choices=tunnel.NT_TYPES),
            Param("nt_samples", int, 5, minimum=1, limit="max_nt_samples"),
            Param("stdevs", float, 1.0, minimum=0.0),
            Param("base_n_steps", int, 16, minimum=1, limit="max_n_steps")),
    stochastic=True, fusable=False, run=_nt_run,
    baselines_of=lambda p: NT_BASES[p["base"]].baselines)

ENTRIES = (INTEGRATED_GRADIENTS, SALIENCY, INPUT_X_GRADIENT, GUIDED_BACKPROP, DECONVOLUTION,
           DEEP_LIFT, DEEP_LIFT_SHAP, GRADIENT_SHAP, NOISE_TUNNEL, INPUT_BASELINE_X_GRADIENT)
