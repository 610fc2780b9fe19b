"""The algorithm registry: for each servable algorithm, how to build its engine object, which
parameters a request may set (types, bounds, the limit that caps them), what baselines it takes,
and whether requests can be fused into one engine call.

Adding a servable algorithm is adding an ``AlgorithmEntry`` with ``register``; the executor
reads only these entries.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from torch import Tensor, nn

from service import attribution as A

from .errors import InvalidInput, LimitExceeded, UnknownAlgorithm, shown
from .limits import Limits


class BaselineMode(str, Enum):
    NONE = "none"                 # the method takes no baseline
    PER_EXAMPLE = "per_example"   # one baseline row per input row (fusable across requests)
    REFERENCE_SET = "reference_set"  # a distribution of K references shared by the call


@dataclass(frozen=True)
class Param:
    name: str
    type: type  # int | float | str | bool | tuple (of ints)
    default: Any
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    limit: str | None = None  # a Limits field capping the value

    def coerce(self, value: Any, limits: Limits) -> Any:
        field_name = f"params.{self.name}"
        v = value
        if self.type is bool:
            if not isinstance(v, bool):
                raise InvalidInput(field_name, f"must be a boolean, got {shown(value)}")
        elif self.type is int:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                    isinstance(v, float) and (not math.isfinite(v) or v != int(v))):
                raise InvalidInput(field_name, f"must be an integer, got {shown(value)}")
            v = int(v)
        elif self.type is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidInput(field_name, f"must be a finite number, got {shown(value)}")
            v = float(v)
        elif self.type is str:
            if not isinstance(v, str):
                raise InvalidInput(field_name, f"must be a string, got {shown(value)}")
        elif self.type is tuple:
            if not isinstance(v, (list, tuple)) or not all(
                    isinstance(e, (int, float)) and not isinstance(e, bool)
                    and math.isfinite(e) and e == int(e) for e in v) or len(v) > 16:
                raise InvalidInput(field_name, f"must be a list of integers, got {shown(value)}")
            v = tuple(int(e) for e in v)
        if self.choices and v not in self.choices:
            raise InvalidInput(field_name, f"{shown(v)} is not supported", self.choices)
        if self.minimum is not None and isinstance(v, (int, float)) and v < self.minimum:
            raise InvalidInput(field_name, f"must be >= {self.minimum:g}, got {v}")
        if self.maximum is not None and isinstance(v, (int, float)) and v > self.maximum:
            raise InvalidInput(field_name, f"must be <= {self.maximum:g}, got {v}")
        if self.limit is not None:
            cap = getattr(limits, self.limit)
            if v > cap:
                raise LimitExceeded(field_name, f"{v} is above the limit {cap} ({self.limit})")
        return v


@dataclass(frozen=True)
class BuildContext:
    """What an entry may need to build its engine object."""

    model: nn.Module
    layer: nn.Module | None = None


# run(engine, inputs, baselines, targets, params, chunk_rows) -> attributions (rows, *shape)
RunFn = Callable[[Any, Tensor, "Tensor | None", list[int], dict[str, Any], int], Tensor]


def _default_run(chunk_param: str | None) -> RunFn:
    def run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
            params: dict[str, Any], chunk_rows: int) -> Tensor:
        kwargs = dict(params)
        if baselines is not None:
            kwargs["baselines"] = baselines
        if chunk_param is not None:
            kwargs[chunk_param] = chunk_rows
        return engine.attribute(inputs, target=targets, **kwargs)
    return run


@dataclass(frozen=True)
class AlgorithmEntry:
    name: str
    build: Callable[[BuildContext, Mapping[str, Any]], Any]
    params: tuple[Param, ...] = ()
    baselines: BaselineMode = BaselineMode.NONE
    completeness: bool = False   # attributions sum to f(x) - f(baseline): report the error
    fusable: bool = True         # requests with equal params may share one engine call
    stochastic: bool = False     # draws random numbers: gets a `seed` param, runs seeded
    needs_layer: bool = False    # uses the spec's cam_layer
    min_reference_rows: int = 1
    chunk_param: str | None = None  # engine kwarg that receives the rows-per-pass budget
    run: RunFn | None = field(default=None)
    # For wrappers whose baseline needs depend on a param (NoiseTunnel's `base`).
    baselines_of: Callable[[Mapping[str, Any]], BaselineMode] | None = None

    def param(self, name: str) -> Param | None:
        return next((p for p in self.all_params() if p.name == name), None)

    def all_params(self) -> tuple[Param, ...]:
        if self.stochastic:
            return (*self.params, Param("seed", int, 0, minimum=0, maximum=2**32 - 1))
        return self.params

    def baseline_mode(self, params: Mapping[str, Any]) -> BaselineMode:
        return self.baselines_of(params) if self.baselines_of is not None else self.baselines

    def execute(self, engine: Any, inputs: Tensor, baselines: Tensor | None,
                targets: list[int], params: dict[str, Any], chunk_rows: int) -> Tensor:
        engine_params = {k: v for k, v in params.items() if k != "seed"}
        run = self.run or _default_run(self.chunk_param)
        return run(engine, inputs, baselines, targets, engine_params, chunk_rows)

    def resolve_params(self, given: Mapping[str, Any], defaults: Mapping[str, Any],
                       limits: Limits) -> dict[str, Any]:
        """Validated parameters: request values over the spec's defaults over the entry's."""
        known = {p.name: p for p in self.all_params()}
        for source, values in (("params", given), ("spec default_params", defaults)):
            unknown = sorted(set(values) - set(known))
            if unknown:
                raise InvalidInput(f"params.{unknown[0]}" if source == "params" else source,
                                   f"{self.name} has no parameter {shown(unknown[0])}",
                                   sorted(known))
        out = {}
        for name, p in known.items():
            value = given[name] if name in given else defaults.get(name, p.default)
            out[name] = p.coerce(value, limits)
        return out


REGISTRY: dict[str, AlgorithmEntry] = {}


def register(entry: AlgorithmEntry) -> AlgorithmEntry:
    if entry.name in REGISTRY:
        raise ValueError(f"algorithm {entry.name!r} is already registered")
    REGISTRY[entry.name] = entry
    return entry


def lookup(name: str, enabled: tuple[str, ...]) -> AlgorithmEntry:
    """The entry for ``name`` if it is registered and enabled for the model."""
    allowed = [a for a in enabled if a in REGISTRY]
    if name not in allowed:
        raise UnknownAlgorithm("algorithm", f"{shown(name)} is not available for this model", allowed)
    return REGISTRY[name]


# --- the gradient family --------------------------------------------------------------------

_METHODS = ("gausslegendre", "riemann_trapezoid", "riemann_left", "riemann_right",
            "riemann_middle")

register(AlgorithmEntry(
    name="IntegratedGradients",
    build=lambda ctx, p: A.IntegratedGradients(ctx.model),
    params=(Param("n_steps", int, 50, minimum=1, limit="max_n_steps"),
            Param("method", str, "gausslegendre", choices=_METHODS)),
    baselines=BaselineMode.PER_EXAMPLE, completeness=True, chunk_param="internal_batch_size"))

register(AlgorithmEntry(
    name="Saliency", build=lambda ctx, p: A.Saliency(ctx.model),
    params=(Param("abs", bool, True),)))

register(AlgorithmEntry(name="InputXGradient", build=lambda ctx, p: A.InputXGradient(ctx.model)))

register(AlgorithmEntry(name="GuidedBackprop", build=lambda ctx, p: A.GuidedBackprop(ctx.model)))

register(AlgorithmEntry(name="Deconvolution", build=lambda ctx, p: A.Deconvolution(ctx.model)))

register(AlgorithmEntry(
    name="DeepLift", build=lambda ctx, p: A.DeepLift(ctx.model),
    baselines=BaselineMode.PER_EXAMPLE, completeness=True))

register(AlgorithmEntry(
    name="DeepLiftShap", build=lambda ctx, p: A.DeepLiftShap(ctx.model),
    baselines=BaselineMode.REFERENCE_SET, completeness=True, min_reference_rows=2))

register(AlgorithmEntry(
    name="GradientShap", build=lambda ctx, p: A.GradientShap(ctx.model),
    params=(Param("n_samples", int, 5, minimum=1, limit="max_n_samples"),
            Param("stdevs", float, 0.0, minimum=0.0)),
    baselines=BaselineMode.REFERENCE_SET, completeness=True, stochastic=True, fusable=False))

_NT_BASES = ("IntegratedGradients", "Saliency", "InputXGradient", "GuidedBackprop",
             "Deconvolution", "DeepLift")


def _nt_build(ctx: BuildContext, params: Mapping[str, Any]) -> Any:
    base = REGISTRY[params["base"]]
    return A.NoiseTunnel(base.build(ctx, {}))


def _nt_run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
            params: dict[str, Any], chunk_rows: int) -> Tensor:
    base = REGISTRY[params["base"]]
    base_defaults = {p.name: p.default for p in base.params}
    kwargs = {k: v for k, v in params.items() if k not in ("base",) and not k.startswith("base_")}
    if base.name == "IntegratedGradients":
        kwargs["n_steps"] = params.get("base_n_steps", base_defaults["n_steps"])
    if baselines is not None:
        kwargs["baselines"] = baselines
    kwargs["nt_samples_batch_size"] = max(1, chunk_rows // max(1, inputs.shape[0]))
    return engine.attribute(inputs, target=targets, **kwargs)


register(AlgorithmEntry(
    name="NoiseTunnel", build=_nt_build,
    params=(Param("base", str, "Saliency", choices=_NT_BASES),
            Param("nt_type", str, "smoothgrad", choices=("smoothgrad", "smoothgrad_sq", "vargrad")),
            Param("nt_samples", int, 5, minimum=1, limit="max_nt_samples"),
            Param("stdevs", float, 1.0, minimum=0.0),
            Param("base_n_steps", int, 16, minimum=1, limit="max_n_steps")),
    stochastic=True, fusable=False, run=_nt_run,
    baselines_of=lambda p: REGISTRY[p["base"]].baselines))

register(AlgorithmEntry(
    name="InputBaselineXGradient", build=lambda ctx, p: A.InputBaselineXGradient(ctx.model),
    baselines=BaselineMode.PER_EXAMPLE, stochastic=True, fusable=False))
