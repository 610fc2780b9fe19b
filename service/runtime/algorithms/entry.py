"""The entry machinery of the algorithm table: one ``AlgorithmEntry`` per servable algorithm says
how to build its engine object, which parameters a request may set (types, bounds, the limit that
caps them), what baselines it takes, and whether requests can be fused into one engine call."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from torch import Tensor, nn

from ..errors import InvalidInput, LimitExceeded, shown
from ..limits import Limits


class Family(str, Enum):
    """What an entry's attributions index, and whether it runs on a layer."""

    INPUT = "input"    # the input's elements
    CAM = "cam"        # a layer's map, answered in the input's shape (LayerGradCam upsampled)
    LAYER = "layer"    # the units of a layer (its output, or its input): the layer's shape
    NEURON = "neuron"  # the input's elements, explaining one neuron of a layer


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

    @property
    def where(self) -> str:
        """The request field this parameter is (for errors)."""
        return f"params.{self.name}"

    def coerce(self, value: Any, limits: Limits) -> Any:
        v = value
        if self.type is bool:
            if not isinstance(v, bool):
                raise InvalidInput(self.where, f"must be a boolean, got {shown(value)}")
        elif self.type is int:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or (
                    isinstance(v, float) and (not math.isfinite(v) or v != int(v))):
                raise InvalidInput(self.where, f"must be an integer, got {shown(value)}")
            v = int(v)
        elif self.type is float:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise InvalidInput(self.where, f"must be a finite number, got {shown(value)}")
            v = float(v)
        elif self.type is str:
            if not isinstance(v, str):
                raise InvalidInput(self.where, f"must be a string, got {shown(value)}")
        elif self.type is tuple:
            if not isinstance(v, (list, tuple)) or not all(
                    isinstance(e, (int, float)) and not isinstance(e, bool)
                    and math.isfinite(e) and e == int(e) for e in v) or len(v) > 16:
                raise InvalidInput(self.where, f"must be a list of integers, got {shown(value)}")
            v = tuple(int(e) for e in v)
        if self.choices and v not in self.choices:
            raise InvalidInput(self.where, f"{shown(v)} is not supported", self.choices)
        if self.minimum is not None and isinstance(v, (int, float)) and v < self.minimum:
            raise InvalidInput(self.where, f"must be >= {self.minimum:g}, got {v}")
        if self.maximum is not None and isinstance(v, (int, float)) and v > self.maximum:
            raise InvalidInput(self.where, f"must be <= {self.maximum:g}, got {v}")
        if self.limit is not None:
            cap = getattr(limits, self.limit)
            if v > cap:
                raise LimitExceeded(self.where, f"{v} is above the limit {cap} ({self.limit})")
        return v


SEED = Param("seed", int, 0, minimum=0, maximum=2**32 - 1)


@dataclass(frozen=True)
class BuildContext:
    """What an entry may need to build its engine object: the model and, for entries of the
    layer families, the layer the request chose, whether to attribute to its input, and the
    neuron (an index into the layer's per-example tensor) of neuron methods."""

    model: nn.Module
    layer: nn.Module | None = None
    layer_input: bool = False
    neuron: tuple[int, ...] | None = None
    layer_shape: tuple[int, ...] = ()  # per-example shape of the layer tensor attributed to

    def the_layer(self, name: str) -> nn.Module:
        """The layer an entry with ``needs_layer`` runs on (the executor resolves it first)."""
        if self.layer is None:
            raise InvalidInput("algorithm", f"{name} needs a layer; this model has none")
        return self.layer


@dataclass(frozen=True)
class OnLayer:
    """An engine of the layer families bound to the request's layer choice: ``kwargs`` are the
    engine's layer keywords (``attribute_to_layer_input``, or ``neuron_selector`` and
    ``attribute_to_neuron_input``), ``shape`` the layer tensor's per-example shape."""

    engine: Any
    kwargs: Mapping[str, Any]
    shape: tuple[int, ...] = ()


def layer_keywords(family: Family) -> tuple[str, ...]:
    """The ``attribute`` keywords an engine of ``family`` receives from the layer choice."""
    if family is Family.NEURON:
        return ("neuron_selector", "attribute_to_neuron_input")
    if family is Family.INPUT:
        return ()
    return ("attribute_to_layer_input",)


# run(engine, inputs, baselines, targets, params, chunk_rows) -> attributions (rows, *shape)
RunFn = Callable[[Any, Tensor, "Tensor | None", list[int], dict[str, Any], int], Tensor]
BuildFn = Callable[[BuildContext, Mapping[str, Any]], Any]


def _default_run(chunk_param: str | None, targeted: bool = True) -> RunFn:
    def run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
            params: dict[str, Any], chunk_rows: int) -> Tensor:
        kwargs = dict(params)
        if baselines is not None:
            kwargs["baselines"] = baselines
        if chunk_param is not None:
            kwargs[chunk_param] = chunk_rows
        if targeted:
            kwargs["target"] = targets
        if isinstance(engine, OnLayer):
            kwargs.update(engine.kwargs)
            engine = engine.engine
        return engine.attribute(inputs, **kwargs)
    return run


@dataclass(frozen=True)
class AlgorithmEntry:
    """One servable algorithm. ``engine`` is the engine class (built as ``engine(model)`` unless
    ``build`` says otherwise); with the default ``run``, every parameter is passed to its
    ``attribute`` under its own name, which the table checks once when it is built."""

    name: str
    engine: type | None = None
    build: BuildFn | None = None
    params: tuple[Param, ...] = ()
    baselines: BaselineMode = BaselineMode.NONE
    completeness: bool = False   # attributions sum to f(x) - f(baseline): report the error
    fusable: bool = True         # requests with equal params may share one engine call
    stochastic: bool = False     # draws random numbers: gets a `seed` param, runs seeded
    family: Family = Family.INPUT
    targeted: bool = True        # its attribute() takes a target (most neuron methods do not)
    min_reference_rows: int = 1
    chunk_param: str | None = None  # engine kwarg that receives the rows-per-pass budget
    run: RunFn | None = field(default=None)
    # For wrappers whose baseline needs depend on a param (NoiseTunnel's `base`).
    baselines_of: Callable[[Mapping[str, Any]], BaselineMode] | None = None
    # Parameter defaults by input kind (InputKind value), over ``params``' own defaults.
    kind_defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def needs_layer(self) -> bool:
        """Runs on a layer of the model (the request's, or the spec's default layer)."""
        return self.family is not Family.INPUT

    def param(self, name: str) -> Param | None:
        return next((p for p in self.all_params() if p.name == name), None)

    def all_params(self) -> tuple[Param, ...]:
        return (*self.params, SEED) if self.stochastic else self.params

    @functools.cached_property
    def params_by_name(self) -> dict[str, Param]:
        """``all_params()`` by name (built once: every request resolves its params)."""
        return {p.name: p for p in self.all_params()}

    def defaults(self, input_kind: str, spec_defaults: Mapping[str, Any] = {}) -> dict[str, Any]:
        """Every parameter's default for a model: the entry's, the input kind's, the spec's."""
        out = {p.name: p.default for p in self.all_params()}
        out.update(self.kind_defaults.get(input_kind, {}))
        out.update(spec_defaults)
        return out

    def baseline_mode(self, params: Mapping[str, Any]) -> BaselineMode:
        return self.baselines_of(params) if self.baselines_of is not None else self.baselines

    def make(self, ctx: BuildContext, params: Mapping[str, Any]) -> Any:
        """The engine object for one call."""
        if self.build is not None:
            return self.build(ctx, params)
        assert self.engine is not None  # the table refuses entries with neither
        if not self.needs_layer:
            return self.engine(ctx.model)
        flags: dict[str, Any] = dict(zip(layer_keywords(self.family),
                                         (ctx.layer_input,) if self.family is not Family.NEURON
                                         else (ctx.neuron, ctx.layer_input)))
        return OnLayer(self.engine(ctx.model, ctx.the_layer(self.name)), flags, ctx.layer_shape)

    def execute(self, engine: Any, inputs: Tensor, baselines: Tensor | None,
                targets: list[int], params: dict[str, Any], chunk_rows: int) -> Tensor:
        engine_params = {k: v for k, v in params.items() if k != "seed"}
        run = self.run or _default_run(self.chunk_param, self.targeted)
        return run(engine, inputs, baselines, targets, engine_params, chunk_rows)

    def resolve_params(self, given: Mapping[str, Any], defaults: Mapping[str, Any],
                       limits: Limits) -> dict[str, Any]:
        """Validated parameters: request values over ``defaults`` (``self.defaults(...)``, or
        the spec's alone) over the entry's."""
        known = self.params_by_name
        for source, values in (("params", given), ("spec default_params", defaults)):
            if values.keys() <= known.keys():
                continue
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
