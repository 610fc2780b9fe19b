"""The cases of tests/e2e/test_served_equals_engine.py, derived from a served model's own spec
(GetModelSpec): every case family of ``FAMILIES`` yields requests from the spec's algorithms,
their parameters (defaults, choices, bounds), the archive's baselines, classes and examples.
The oracle that answers them is tests/e2e/oracle.py."""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service._proto.explain.v1 import explain_pb2 as pb
from tests.e2e.oracle import Archive, Case, png_json, tensor_json


def param_value(p: pb.ParamInfo) -> Any:
    """A ParamInfo's default, in its type."""
    v = p.default_value
    if p.type == "int":
        return int(float(v))
    if p.type == "float":
        return float(v)
    if p.type == "bool":
        return v == "True"
    if p.type == "tuple":
        return tuple(ast.literal_eval(v))
    return v


def param_choices(p: pb.ParamInfo) -> list[Any]:
    """The values a parameter offers besides its default: its choices, or the other boolean."""
    if p.type == "bool":
        return [not param_value(p)]
    default = param_value(p)
    return [c for c in p.choices if c != default]


@dataclass(frozen=True)
class Context:
    """What the case generators read: the served spec, the archive, the inputs to send and
    the model's budget (parameter values that keep an expensive model's cases cheap)."""

    spec: pb.ModelSpec
    archive: Archive
    inputs: tuple[np.ndarray, ...]                 # model-space (*shape) float32 inputs
    cheap: Mapping[str, Any] = field(default_factory=dict)   # parameter name -> value
    expensive: bool = False                        # one case per variant kind, not per method
    # the baseline sent to reference-set methods instead of the spec's reference set
    reference_baseline: Mapping[str, Any] | None = None

    def params(self, algo: pb.AlgorithmInfo, **override: Any) -> dict[str, Any]:
        """Every parameter at the served default, lowered by the budget, then ``override``."""
        out = {}
        for p in algo.params:
            v = self.cheap.get(p.name, param_value(p))
            if p.maximum:
                v = min(v, type(v)(p.maximum))
            out[p.name] = v
        out.update(override)
        return out

    def case(self, algo: pb.AlgorithmInfo, variant: str, *, x: int = 0,
             inputs: Mapping[str, Any] | None = None, **kw: Any) -> Case:
        """One case of ``algo``; a neuron method without a ``layer`` in ``extra`` gets the
        middle neuron of the default layer's output (it is served only with a neuron)."""
        params = kw.pop("params", None) or self.params(algo)
        if kw.get("baseline") is None and algo.baselines == "reference_set":
            kw["baseline"] = self.reference_baseline
        if is_neuron(algo.name) and "layer" not in kw.get("extra", {}):
            kw["extra"] = {**kw.get("extra", {}), "layer": {"neuron": self.neuron()}}
        return Case(name=f"{self.spec.name}/{algo.name}/{variant}", model=self.spec.name,
                    algorithm=algo.name, params=params,
                    inputs=inputs or {"tensor": tensor_json(self.inputs[x])}, **kw)

    def neuron(self, layer: str | None = None, to_input: bool = False) -> list[int]:
        """The middle neuron of a layer's per-example output (or input), as GetModelSpec
        gives its shape (the default layer, listed first, when ``layer`` is None)."""
        info = next(li for li in self.spec.layers if layer in (None, li.name))
        return [int(d) // 2 for d in (info.input_shape if to_input else info.output_shape)]

    def by_takes(self, takes: str) -> list[pb.AlgorithmInfo]:
        return [a for a in self.spec.algorithms if a.baselines == takes]

    def stochastic(self) -> list[pb.AlgorithmInfo]:
        return [a for a in self.spec.algorithms if any(p.name == "seed" for p in a.params)]


CaseGen = Callable[[Context], Iterator[Case]]

# The layer methods (attributions to a layer's units) and the neuron methods (of one neuron of
# a layer, to the input); the CAM methods run on the default layer in every family.
LAYER_METHODS = ("LayerIntegratedGradients", "LayerConductance", "InternalInfluence",
                 "LayerGradientXActivation", "LayerActivation", "LayerDeepLift",
                 "LayerDeepLiftShap", "LayerGradientShap", "LayerFeatureAblation")


def is_neuron(algorithm: str) -> bool:
    return algorithm.startswith("Neuron")


def on_layer(algorithm: str) -> bool:
    return algorithm in LAYER_METHODS or is_neuron(algorithm)


def each_algorithm(ctx: Context) -> Iterator[Case]:
    """Every algorithm the spec enables, at its served defaults (within the budget)."""
    for a in ctx.spec.algorithms:
        yield ctx.case(a, "defaults")


def each_choice(ctx: Context) -> Iterator[Case]:
    """Every other value of every parameter with a closed set of values (choices, booleans),
    one at a time; on an expensive model none."""
    if ctx.expensive:
        return
    for a in ctx.spec.algorithms:
        for p in a.params:
            for v in param_choices(p):
                yield ctx.case(a, f"{p.name}={v}", x=1, params=ctx.params(a, **{p.name: v}))


def each_baseline(ctx: Context) -> Iterator[Case]:
    """The spec's other named baselines on every method taking one per example, every
    request-level baseline kind on the first, and the spec's reference sets and an explicit
    one on every reference-set method. On an expensive model: the other named baselines on
    the first per-example method only."""
    arch = ctx.archive
    per_example = ctx.by_takes("per_example")
    one_row = [n for n in arch.named_of_kind("zeros", "constant", "tensor")
               if n != arch.default_baseline and arch.definition(n).shape[0] == 1]
    for a in per_example[:1] if ctx.expensive else per_example:
        for n in one_row:
            yield ctx.case(a, f"named={n}", baseline={"named": n})
    if per_example:
        a = per_example[0]
        kinds: list[tuple[str, dict[str, Any]]] = []
        if not ctx.expensive:
            kinds += [("zeros", {"zeros": True}), ("constant", {"constant": 0.25}),
                      ("uniform", {"uniform": {"low": -1.0, "high": 1.0, "seed": 5}}),
                      ("tensor", {"tensor": tensor_json(ctx.inputs[1] * 0.5)})]
            if any(d["kind"] == "tensor" for n, d in arch.definitions.items()
                   if n in ("mean", "dataset_mean")):
                kinds.append(("datasetMean", {"datasetMean": True}))
            if len(arch.shape) == 3:  # the default sigma, and a kernel wider than the image
                wide = min(max(arch.shape[-2:]) / 2, ctx.spec.limits["max_blur_sigma"])
                kinds += [("blur", {"blur": {"sigma": 0}}),
                          ("blur_wide", {"blur": {"sigma": wide}})]
        for label, b in kinds:
            yield ctx.case(a, f"baseline={label}", baseline=b)
    if ctx.expensive:  # its reference-set methods get ctx.reference_baseline anyway
        return
    for a in ctx.by_takes("reference_set"):
        for n in arch.named_of_kind("reference_set"):
            yield ctx.case(a, f"referenceSet={n}", baseline={"referenceSet": n})
        rows = np.stack([ctx.inputs[1] * 0.5, ctx.inputs[2] * 0.25, ctx.inputs[0] * 0.0])
        yield ctx.case(a, "baseline=tensor3", baseline={"tensor": tensor_json(rows)})


def each_target(ctx: Context) -> Iterator[Case]:
    """topK on the default algorithm and on the first seeded one (another seed than the
    default); a class index and a class label on the default algorithm. On an expensive
    model: topK 2 on the first seeded algorithm (else the default one) only."""
    n = len(ctx.spec.class_names)
    default = next(a for a in ctx.spec.algorithms if a.name == ctx.spec.default_algorithm)
    k = min(2 if ctx.expensive else 3, n)
    if not ctx.expensive or not ctx.stochastic():
        yield ctx.case(default, f"topK={k}", x=2, target={"topK": k})
    for a in ctx.stochastic()[:1]:
        yield ctx.case(a, f"topK={k},seed=7", x=2, target={"topK": k},
                       params=ctx.params(a, seed=7))
    if n > 1 and not ctx.expensive:
        yield ctx.case(default, f"index={n - 1}", target={"index": n - 1})
        yield ctx.case(default, "label", x=1, target={"label": ctx.spec.class_names[1]})


def each_input(ctx: Context) -> Iterator[Case]:
    """The input kinds other than a tensor, on the default algorithm: the archive's first
    bundled example (a PNG or named features), else a generated one."""
    default = next(a for a in ctx.spec.algorithms if a.name == ctx.spec.default_algorithm)
    arch = ctx.archive
    if arch.examples:
        yield ctx.case(default, "example", inputs=arch.examples[0]["inputs"])
    elif arch.raw["input"]["kind"] == "image":
        g = np.random.default_rng(3)
        c, h, w = arch.shape
        pixels = g.integers(0, 256, (h, w) if c == 1 else (h, w, c))
        yield ctx.case(default, "png", inputs=png_json(pixels))
    elif arch.raw["input"]["kind"] == "tabular":
        names = arch.raw["input"]["feature_names"]
        yield ctx.case(default, "features",
                       inputs={"tabular": {"features": {names[0]: 1.0, names[-1]: 35.0}}})


def each_layer(ctx: Context) -> Iterator[Case]:
    """Every layer and neuron method on every layer the spec lists, by name (a neuron method
    on the middle neuron of the layer's output); the first layer method, and the first neuron
    method, attributing to the default layer's input. On an expensive model only the latter
    two (its default layer gets every method in each_algorithm)."""
    algos = [a for a in ctx.spec.algorithms if on_layer(a.name)]
    if not ctx.expensive:
        for li in ctx.spec.layers:
            for a in algos:
                sel: dict[str, Any] = {"name": li.name}
                if is_neuron(a.name):
                    sel["neuron"] = ctx.neuron(li.name)
                yield ctx.case(a, f"layer={li.name}", x=3, extra={"layer": sel})
    layer = next((a for a in algos if not is_neuron(a.name)), None)
    neuron = next((a for a in algos if is_neuron(a.name)), None)
    if layer is not None:
        yield ctx.case(layer, "layerInput", x=4,
                       extra={"layer": {"attributeToLayerInput": True}})
    if neuron is not None:
        yield ctx.case(neuron, "layerInput", x=4,
                       extra={"layer": {"attributeToLayerInput": True,
                                        "neuron": ctx.neuron(to_input=True)}})


PERTURBATION_METHODS = ("FeatureAblation", "Occlusion", "ShapleyValueSampling", "KernelShap",
                        "Lime")


def each_noise_tunnel(ctx: Context) -> Iterator[Case]:
    """A request-level ``noiseTunnel`` (2 noisy copies, smoothgrad and vargrad) around the
    default algorithm, the first perturbation method and the first layer method the spec
    enables (from the default seed 0); smoothgrad around the default algorithm with
    ``params.seed`` 3 and two targets; vargrad around the first seeded reference-set method.
    On an expensive model smoothgrad around the default algorithm and vargrad around the
    layer method only."""
    by_name = {a.name: a for a in ctx.spec.algorithms}
    picks = [by_name[ctx.spec.default_algorithm]]
    picks += [by_name[n] for n in PERTURBATION_METHODS if n in by_name][:1]
    picks += [a for a in ctx.spec.algorithms if a.name in LAYER_METHODS][:1]
    for k, a in enumerate(picks):
        for kind in ("smoothgrad", "vargrad"):
            if ctx.expensive and (k == 1 or (k == 0) != (kind == "smoothgrad")):
                continue
            nt = {"type": kind, "samples": 2, "stdevs": 0.1}
            yield ctx.case(a, f"nt={kind}", x=5, extra={"noiseTunnel": nt})
    if ctx.expensive:
        return
    # params.seed (which every algorithm takes under a tunnel) and one call per target
    yield ctx.case(picks[0], "nt=smoothgrad,seed=3,topK=2", x=6,
                   params={**ctx.params(picks[0]), "seed": 3}, target={"topK": 2},
                   extra={"noiseTunnel": {"type": "smoothgrad", "samples": 3, "stdevs": 0.2}})
    # a seeded reference-set method: one reference drawn per noisy copy
    for a in [a for a in ctx.stochastic() if a.baselines == "reference_set"][:1]:
        yield ctx.case(a, "nt=vargrad,seed=4", x=6, params=ctx.params(a, seed=4),
                       extra={"noiseTunnel": {"type": "vargrad", "samples": 2, "stdevs": 0.1}})


def each_metrics(ctx: Context) -> Iterator[Case]:
    """``outputs.metrics`` (infidelity and sensitivity, 4 samples) on the default algorithm;
    on an expensive model none."""
    if ctx.expensive:
        return
    default = next(a for a in ctx.spec.algorithms if a.name == ctx.spec.default_algorithm)
    yield ctx.case(default, "metrics", x=7,
                   extra={"outputs": {"metrics": ["infidelity", "sensitivity"],
                                      "metricSamples": 4}})


# The case families: each a function of the Context that yields cases. A new family (the
# layer and neuron methods with the request's `layer`, the request's `noiseTunnel`, ...) is one
# more function here, whose cases carry the new request fields in `Case.extra` (sent as they
# are, and handed to the oracle as `Call.extra`), plus its Methods in METHODS.
FAMILIES: tuple[CaseGen, ...] = (each_algorithm, each_choice, each_baseline, each_target,
                                 each_input, each_layer, each_noise_tunnel, each_metrics)


def cases(ctx: Context) -> list[Case]:
    out = [c for family in FAMILIES for c in family(ctx)]
    names = [c.name for c in out]
    assert len(set(names)) == len(names), f"case names repeat: {names}"
    return out
