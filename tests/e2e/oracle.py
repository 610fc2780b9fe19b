"""The in-process oracle of tests/e2e/test_served_equals_engine.py: what a served answer must be,
computed from the model archive's own files by calling the engine classes of
``service.attribution`` directly, one (input, target) row per call.

Nothing here goes through the serving runtime's executor, validator, baseline resolver or
algorithm table: the model is loaded with ``service.runtime.loader`` (the archive's class and
weights), and everything else is re-derived from the archive's spec.yaml and the request:
the model-space input (``decode``), the baseline (``Archive.baseline``), the feature mask and
occlusion window (``patches``, ``window``), the random state of a seeded request (``seeded``)
and, per algorithm, the engine call (``METHODS``).

The cases come from the served model's own spec (tests/e2e/cases.py), so an algorithm a
spec enables later is a case without editing either file, and fails loudly until ``METHODS``
knows how to compute it (or ``NOT_COMPARED`` says why it cannot be compared).
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import math
import pathlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import Tensor, nn

from service import attribution as A
from service import metrics as M
from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.executor import prefers_channels_last
from service.runtime.loader import load_model
from service.runtime.spec import parse_spec

# Algorithms a spec may enable that the oracle cannot compare, with the reason. Empty: every
# servable algorithm has an oracle in METHODS.
NOT_COMPARED: dict[str, str] = {}


# -- tolerances ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tol:
    """``|served - engine| <= atol * max(1, max|engine|) + rtol * |engine|`` elementwise (the
    absolute part scales with the map's magnitude, so that maps of large values, e.g. vargrad,
    are held to the same relative precision); scalars (outputs, approximation errors) within
    ``rtol * scale + atol``."""

    rtol: float = 1e-4
    atol: float = 1e-5
    reason: str = "float32, the same engine call in another process (another thread count, " \
                  "other batch sizes inside the engine: BLAS reductions in another order)"


FLOAT32 = Tol()


# -- the request's JSON pieces ------------------------------------------------------------------

def tensor_json(a: np.ndarray) -> dict[str, Any]:
    """explain.v1.Tensor in protobuf JSON: float32, little-endian bytes in base64."""
    a = np.ascontiguousarray(a, dtype="<f4")
    return {"shape": list(a.shape), "dtype": "FLOAT32",
            "data": base64.b64encode(a.tobytes()).decode()}


_DTYPES = {"FLOAT32": "<f4", "DTYPE_UNSPECIFIED": "<f4", "FLOAT64": "<f8", "FLOAT16": "<f2",
           "INT64": "<i8", "INT32": "<i4", "UINT8": "u1"}


def tensor_from_json(t: Mapping[str, Any]) -> np.ndarray:
    dtype = _DTYPES[t.get("dtype", "FLOAT32")]
    shape = [int(s) for s in t.get("shape", [])]
    return np.frombuffer(base64.b64decode(t.get("data", "")), dtype).reshape(shape)


def png_json(pixels: np.ndarray) -> dict[str, Any]:
    """An ``inputs`` of PNG bytes: ``pixels`` (H, W) or (H, W, 3) uint8."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buf, format="PNG")
    return {"image": base64.b64encode(buf.getvalue()).decode()}


@dataclass(frozen=True)
class Case:
    """One request: its JSON fields, and the id its failures are reported under."""

    name: str
    model: str
    algorithm: str
    params: Mapping[str, Any]            # every parameter of the algorithm, as sent
    inputs: Mapping[str, Any]            # ExplainRequest.inputs JSON (tensor, image or tabular)
    target: Mapping[str, Any] = field(default_factory=dict)   # {} = the model's default
    baseline: Mapping[str, Any] | None = None                 # None = the model's default
    extra: Mapping[str, Any] = field(default_factory=dict)    # further request fields

    def body(self) -> dict[str, Any]:
        """The REST body (protobuf JSON of ExplainRequest)."""
        b: dict[str, Any] = {"inputs": dict(self.inputs), "algorithm": self.algorithm,
                             "params": {k: list(v) if isinstance(v, tuple) else v
                                        for k, v in self.params.items()},
                             "requestId": self.name}
        if self.target:
            b["target"] = dict(self.target)
        if self.baseline is not None:
            b["baseline"] = dict(self.baseline)
        b.update(self.extra)
        return b

    def proto(self) -> pb.ExplainRequest:
        """The same request as a protobuf message (gRPC)."""
        from google.protobuf import json_format

        return json_format.ParseDict({**self.body(), "model": self.model}, pb.ExplainRequest())


# -- answers --------------------------------------------------------------------------------------

@dataclass
class TargetAnswer:
    target: int
    attributions: np.ndarray          # (*shape)
    instance_output: float
    baseline_output: float
    approximation_error: float | None
    metrics: dict[str, float] = field(default_factory=dict)   # outputs.metrics, by name


@dataclass
class Answer:
    index: int                        # the predicted class
    output: np.ndarray                # (n_outputs,) the model's output
    explanations: list[TargetAnswer]
    algorithm: str = ""
    fused_group_size: int = 0


def answer_from_json(d: Mapping[str, Any]) -> Answer:
    """A REST answer, read with this module's own decoder."""
    p = d["prediction"]
    out = [TargetAnswer(int(e.get("target", 0)), tensor_from_json(e["attributions"]),
                        float(e.get("instanceOutput", 0.0)), float(e.get("baselineOutput", 0.0)),
                        (float(e["approximationError"]) if "approximationError" in e else None),
                        {k: float(v) for k, v in e.get("metrics", {}).items()})
           for e in d.get("explanations", [])]
    return Answer(int(p.get("index", 0)), tensor_from_json(p["output"]).reshape(-1), out,
                  d.get("algorithm", ""), int(d.get("timings", {}).get("fusedGroupSize", 0)))


def answer_from_client(e: Any) -> Answer:
    """A gRPC answer as service.client gives it (an ``Explanation``)."""
    return Answer(e.prediction.index, np.asarray(e.prediction.output).reshape(-1),
                  [TargetAnswer(t.target, np.asarray(t.attributions), t.instance_output,
                                t.baseline_output, t.approximation_error)
                   for t in e.explanations],
                  e.algorithm, int(e.timings.get("fused_group_size", 0)))


# -- the archive, re-read -------------------------------------------------------------------------

@contextlib.contextmanager
def seeded(seed: int | None) -> Iterator[None]:
    """The random state of a request with ``params.seed``: torch's and numpy's global
    generators seeded with it (restored afterwards)."""
    if seed is None:
        yield
        return
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def blur(x: Tensor, sigma: float) -> Tensor:
    """A Gaussian blur of (1, C, H, W) over H and W: each output pixel is the normalised
    Gaussian (radius max(1, ceil(3 sigma))) average of the input with the image's edge pixels
    repeated outward. Written as one dense (H, H) and one (W, W) matrix of weights."""
    radius = max(1, math.ceil(3 * sigma))
    offsets = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (offsets / sigma) ** 2)
    w = w / w.sum()

    def matrix(n: int) -> Tensor:
        m = np.zeros((n, n))
        for i in range(n):
            for o, wo in zip(offsets, w):
                m[i, min(max(i + o, 0), n - 1)] += wo
        return torch.from_numpy(m)

    h, wd = x.shape[-2:]
    y = matrix(h) @ x.double() @ matrix(wd).T
    return y.to(x.dtype)


def _spec_layers(explain: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
    """``explain.layers`` (friendly name -> module path) and the default layer's name, as the
    spec documents them: ``explain.default_layer``, else the layer ``explain.cam_layer`` names
    (a friendly name or a listed module path), else the first listed; a ``cam_layer`` without
    ``layers`` is the one layer, named by its path."""
    layers = dict(explain.get("layers") or {})
    cam = explain.get("cam_layer")
    if cam and not layers:
        layers = {cam: cam}
    default = explain.get("default_layer")
    if default is None and cam:
        default = cam if cam in layers else next(n for n, m in layers.items() if m == cam)
    if default is None and layers:
        default = next(iter(layers))
    return layers, default


class Archive:
    """A model directory (model_store/build/<model>/, or a test fixture's) read in process."""

    def __init__(self, name: str, directory: pathlib.Path) -> None:
        self.name, self.dir = name, pathlib.Path(directory)
        self.raw = yaml.safe_load((self.dir / "spec.yaml").read_text())
        spec = parse_spec(self.raw)
        self.model = load_model(spec, self.dir)
        # the served model's memory layout (the executor's choice): served == engine on the
        # same model; the layouts' own agreement is tests/unit/test_channels_last.py's
        if prefers_channels_last(self.model, spec):
            self.model.to(memory_format=torch.channels_last)
        self.shape = tuple(int(s) for s in self.raw["input"]["shape"])
        bl = self.raw.get("baselines") or {}
        self.definitions: dict[str, dict[str, Any]] = {"zeros": {"kind": "zeros"},
                                                       **(bl.get("definitions") or {})}
        self.default_baseline = bl.get("default", "zeros")
        self.class_names = list((self.raw.get("output") or {}).get("class_names", []))
        explain = self.raw.get("explain") or {}
        self.cam_layer = explain.get("cam_layer")
        self.layers, self.default_layer = _spec_layers(explain)
        self.default_target = str(explain.get("default_target", "predicted"))
        self.examples = (json.loads((self.dir / "examples.json").read_text())["examples"]
                         if (self.dir / "examples.json").is_file() else [])

    def layer_module(self, extra: Mapping[str, Any]) -> nn.Module | None:
        """The module a request's ``layer`` (``extra["layer"]``) names: ``layer.name``, else
        the spec's default layer."""
        name = (extra.get("layer") or {}).get("name") or self.default_layer
        return self.model.get_submodule(self.layers[name]) if name else None

    # inputs -------------------------------------------------------------------------------

    def decode(self, inputs: Mapping[str, Any]) -> Tensor:
        """The (1, *shape) float32 model input for an ``inputs`` JSON, as the spec says it is
        decoded: a tensor as given; an image converted to the spec's mode and size, divided by
        ``scale``, inverted if asked, then (x - mean) / std per channel; named features placed
        in ``feature_names`` order (missing ones at the scaler's mean), then scaled."""
        inp = self.raw["input"]
        if "tensor" in inputs:
            a = tensor_from_json(inputs["tensor"]).astype(np.float32).reshape(self.shape)
        elif "image" in inputs:
            from PIL import Image

            im = inp["image"]
            img = Image.open(io.BytesIO(base64.b64decode(inputs["image"]))).convert(im["mode"])
            size = tuple(im.get("size", (self.shape[2], self.shape[1])))
            if img.size != size:
                img = img.resize(size, Image.Resampling.BILINEAR)
            a = np.asarray(img, dtype=np.float32) / np.float32(im.get("scale", 255.0))
            if im.get("invert"):
                a = 1.0 - a
            a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
            mean = np.asarray(im.get("mean", [0.0]), np.float32).reshape(-1, 1, 1)
            std = np.asarray(im.get("std", [1.0]), np.float32).reshape(-1, 1, 1)
            a = (a - mean) / std
        else:
            names = list(inp["feature_names"])
            scaler = inp.get("scaler")
            raw = np.asarray(scaler["mean"], np.float64) if scaler else np.zeros(len(names))
            for n, v in inputs["tabular"]["features"].items():
                raw[names.index(n)] = v
            a = (raw - np.asarray(scaler["mean"])) / np.asarray(scaler["std"]) if scaler else raw
            a = a.reshape(self.shape)
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None]

    @torch.no_grad()
    def outputs(self, x: Tensor) -> Tensor:
        """(rows, n_outputs)."""
        out = self.model(x)
        return out.reshape(out.shape[0], -1)

    # baselines ----------------------------------------------------------------------------

    def definition(self, name: str) -> Tensor:
        """A baseline the spec defines, (rows, *shape): zeros, a constant, or a file's tensor
        (one row or a reference set of K)."""
        d = self.definitions[name]
        if d["kind"] == "zeros":
            return torch.zeros(1, *self.shape)
        if d["kind"] == "constant":
            return torch.full((1, *self.shape), float(d.get("value", 0.0)))
        t = torch.load(self.dir / d["file"], weights_only=True).float()
        return t.reshape(-1, *self.shape)

    def named_of_kind(self, *kinds: str) -> list[str]:
        return [n for n, d in self.definitions.items() if d["kind"] in kinds]

    def baseline(self, b: Mapping[str, Any] | None, takes: str, x: Tensor) -> Tensor | None:
        """The baseline a method taking ``takes`` (none | per_example | reference_set) gets
        for the request's ``baseline`` JSON (None: the model's default, which for a reference
        set method is the spec's first reference set)."""
        if takes == "none":
            return None
        if b is None:
            refs = self.named_of_kind("reference_set")
            return self.definition(refs[0] if takes == "reference_set" and refs
                                   else self.default_baseline)
        ((kind, v),) = b.items()
        if kind == "named":
            return self.definition(v)
        if kind == "zeros":
            return torch.zeros(1, *self.shape)
        if kind == "constant":
            return torch.full((1, *self.shape), float(v))
        if kind == "uniform":  # float64 draws of a generator seeded with `seed`, in [low, high)
            low, high = float(v.get("low", 0.0)), float(v.get("high", 0.0))
            low, high = (0.0, 1.0) if (low, high) == (0.0, 0.0) else (low, high)
            g = torch.Generator().manual_seed(int(v.get("seed", 0)))
            u = torch.rand((1, *self.shape), generator=g, dtype=torch.float64)
            return (low + (high - low) * u).float()
        if kind == "blur":
            sigma = float(v.get("sigma", 0.0)) or max(self.shape[-2:]) / 8.0
            return blur(x, sigma)
        if kind == "datasetMean":
            return self.definition(next(n for n in ("mean", "dataset_mean")
                                        if self.definitions.get(n, {}).get("kind") == "tensor"))
        if kind == "referenceSet":
            return self.definition(v or self.named_of_kind("reference_set")[0])
        if kind == "tensor":
            return torch.from_numpy(tensor_from_json(v).astype(np.float32).copy()).reshape(
                -1, *self.shape)
        raise AssertionError(f"the oracle knows no baseline kind {kind!r}")

    # targets ------------------------------------------------------------------------------

    def targets(self, t: Mapping[str, Any], logits: Tensor) -> list[int]:
        """The class indices a request's ``target`` names, given the (n_outputs,) logits."""
        if "index" in t:
            return [int(t["index"])]
        if "label" in t:
            return [self.class_names.index(t["label"])]
        if "topK" in t:
            return logits.topk(int(t["topK"])).indices.tolist()
        d = self.default_target
        if d.lstrip("-").isdigit():
            return [int(d)]
        if d in self.class_names:
            return [self.class_names.index(d)]
        return [int(logits.argmax())]


# -- the engine calls -----------------------------------------------------------------------------

def patches(shape: tuple[int, ...], superpixel: int) -> Tensor:
    """(1, *shape) feature ids: square ``superpixel`` patches over the last two dims of an
    image-shaped input, numbered row by row and shared across channels; one feature per
    element for flat inputs (or superpixel 1)."""
    if len(shape) < 2 or superpixel <= 1:
        return torch.arange(math.prod(shape)).reshape(1, *shape)
    h, w = shape[-2:]
    per_row = -(-w // superpixel)
    ids = np.array([[(r // superpixel) * per_row + c // superpixel for c in range(w)]
                    for r in range(h)])
    return torch.from_numpy(np.broadcast_to(ids, shape).copy())[None]


def window(shape: tuple[int, ...], size: int, stride: int) -> tuple[tuple[int, ...], tuple]:
    """Occlusion's sliding window and strides: ``size`` x ``size`` over every channel of an
    image-shaped input (clipped to the image), ``size`` elements of a flat one."""
    if len(shape) < 2:
        return (min(size, shape[0]),), (stride,)
    lead = tuple(shape[:-2])
    return ((*lead, min(size, shape[-2]), min(size, shape[-1])),
            (*(1,) * len(lead), stride, stride))


@dataclass(frozen=True)
class Call:
    """One engine call: one input row and one target."""

    model: nn.Module
    layer: nn.Module | None
    x: Tensor                 # (1, *shape)
    baseline: Tensor | None   # (1, *shape) per example, (K, *shape) a reference set
    target: int
    params: Mapping[str, Any]
    extra: Mapping[str, Any]  # the request's further fields (layer, noiseTunnel, ...)


@dataclass(frozen=True)
class Method:
    """How the oracle computes one algorithm: ``make`` builds the engine object,
    ``kwargs`` gives its ``attribute()`` arguments besides the input and the target (the
    baseline included), ``post`` turns the engine's (1, ...) answer into the served one.
    ``takes(params)`` is the baseline it gets (none | per_example | reference_set);
    ``sum_rule`` its sum rule, if any: ``complete`` (the attributions sum to f(x) - f(x')),
    ``groups`` (they do so counting each feature group once)."""

    make: Callable[[Call], Any]
    kwargs: Callable[[Call], dict[str, Any]] = lambda c: {}
    takes: Callable[[Mapping[str, Any]], str] = lambda p: "none"
    sum_rule: str | None = None
    post: Callable[[Call, Tensor], Tensor] = lambda c, a: a
    targeted: bool = True     # attribute() takes the target (most neuron methods do not)

    def run(self, c: Call) -> Tensor:
        """The engine's (1, ...) answer; with the request's ``noiseTunnel``, the engine object
        inside ``A.NoiseTunnel`` (a reference-set method drawing one reference per noisy copy;
        the inner method's own ``stdevs`` stays 0)."""
        kw = self.kwargs(c)
        if self.targeted:
            kw["target"] = c.target
        engine = self.make(c)
        nt = c.extra.get("noiseTunnel")
        if nt is None:
            return self.post(c, engine.attribute(c.x, **kw))
        assert not kw.pop("stdevs", 0.0)
        return self.post(c, A.NoiseTunnel(engine).attribute(
            c.x, nt_type=nt.get("type") or "smoothgrad", nt_samples=nt.get("samples") or 5,
            stdevs=nt.get("stdevs", 1.0),
            draw_baseline_from_distrib=self.takes(c.params) == "reference_set", **kw))


def _per_example(p: Mapping[str, Any]) -> str:
    return "per_example"


def _reference_set(p: Mapping[str, Any]) -> str:
    return "reference_set"


def _on_model(engine: type) -> Callable[[Call], Any]:
    return lambda c: engine(c.model)


def _on_layer(engine: type) -> Callable[[Call], Any]:
    return lambda c: engine(c.model, c.layer)


def _baselines(c: Call, **more: Any) -> dict[str, Any]:
    return {"baselines": c.baseline, **more}


def _params(*names: str) -> Callable[[Call], dict[str, Any]]:
    """The baseline (when the method takes one) and the named params, under their names."""
    def kwargs(c: Call) -> dict[str, Any]:
        kw = {n: c.params[n] for n in names}
        return _baselines(c, **kw) if c.baseline is not None else kw
    return kwargs


# Bases of NoiseTunnel that take a baseline.
_NT_WITH_BASELINE = ("IntegratedGradients", "DeepLift")


def _nt_kwargs(c: Call) -> dict[str, Any]:
    kw: dict[str, Any] = {"nt_type": c.params["nt_type"], "nt_samples": c.params["nt_samples"],
                          "stdevs": c.params["stdevs"]}
    if c.params["base"] == "IntegratedGradients":
        kw["n_steps"] = c.params["base_n_steps"]
    return _baselines(c, **kw) if c.baseline is not None else kw


def _upsampled(c: Call, cam: Tensor) -> Tensor:
    """Grad-CAM's (1, 1, h, w) layer map, bilinearly resized to the input's H x W and
    repeated over its channels."""
    up = F.interpolate(cam, size=tuple(c.x.shape[2:]), mode="bilinear", align_corners=False)
    return up.expand(-1, c.x.shape[1], -1, -1)


def _masked(sampled: bool) -> Callable[[Call], dict[str, Any]]:
    def kwargs(c: Call) -> dict[str, Any]:
        kw = {"n_samples": c.params["n_samples"]} if sampled else {}
        return _baselines(c, feature_mask=patches(tuple(c.x.shape[1:]), c.params["superpixel"]),
                          perturbations_per_eval=c.params["perturbations_per_eval"], **kw)
    return kwargs


def _occlusion(c: Call) -> dict[str, Any]:
    shapes, strides = window(tuple(c.x.shape[1:]), c.params["window"], c.params["stride"])
    return _baselines(c, sliding_window_shapes=shapes, strides=strides,
                      perturbations_per_eval=c.params["perturbations_per_eval"])


def _to_input(c: Call) -> bool:
    return bool((c.extra.get("layer") or {}).get("attributeToLayerInput", False))


def _layer(*names: str) -> Callable[[Call], dict[str, Any]]:
    """A layer method's kwargs: the named params, the baseline, ``attribute_to_layer_input``."""
    inner = _params(*names)
    return lambda c: {**inner(c), "attribute_to_layer_input": _to_input(c)}


def _neuron(*names: str, masked: bool = False) -> Callable[[Call], dict[str, Any]]:
    """A neuron method's kwargs: the request's neuron (an index into the layer's per-example
    output, or input), the named params, the baseline; with ``masked`` FeatureAblation's
    superpixel mask and perturbations per eval."""
    inner = _params(*names)

    def kwargs(c: Call) -> dict[str, Any]:
        kw = {**inner(c), "neuron_selector": tuple(c.extra["layer"]["neuron"]),
              "attribute_to_neuron_input": _to_input(c)}
        if masked:
            kw.update(feature_mask=patches(tuple(c.x.shape[1:]), c.params["superpixel"]),
                      perturbations_per_eval=c.params["perturbations_per_eval"])
        return kw
    return kwargs


def layer_shape(c: Call) -> tuple[int, ...]:
    """The per-example shape of the layer tensor attributed to (its output, or its first
    input), seen by a forward hook on the request's input."""
    seen: list[Tensor] = []

    def hook(m: nn.Module, args: tuple, out: Any) -> None:
        t = args[0] if _to_input(c) else out
        seen.append(t[0] if isinstance(t, (tuple, list)) else t)

    assert c.layer is not None
    h = c.layer.register_forward_hook(hook)
    try:
        with torch.no_grad():
            c.model(c.x)
    finally:
        h.remove()
    return tuple(seen[0].shape[1:])


def units(shape: tuple[int, ...]) -> Tensor:
    """(1, *shape) ids of a layer's units: one per channel (the first per-example dim,
    shared over the rest) when the layer has two or more per-example dims, one per element
    of a flat layer."""
    if len(shape) >= 2:
        ids = torch.arange(shape[0]).reshape(shape[0], *[1] * (len(shape) - 1))
        return ids.expand(shape).clone()[None]
    return torch.arange(math.prod(shape)).reshape(1, *shape)


def _layer_ablation(c: Call) -> dict[str, Any]:
    return {"layer_mask": units(layer_shape(c)), "attribute_to_layer_input": _to_input(c),
            "perturbations_per_eval": c.params["perturbations_per_eval"]}


def _neuron_method(engine: type, kwargs: Callable[[Call], dict[str, Any]],
                   takes: Callable[[Mapping[str, Any]], str] = lambda p: "none",
                   targeted: bool = False) -> Method:
    return Method(_on_layer(engine), kwargs, takes, targeted=targeted)


METHODS: dict[str, Method] = {
    "IntegratedGradients": Method(_on_model(A.IntegratedGradients),
                                  _params("n_steps", "method"), _per_example, "complete"),
    "Saliency": Method(_on_model(A.Saliency), _params("abs")),
    "InputXGradient": Method(_on_model(A.InputXGradient)),
    "GuidedBackprop": Method(_on_model(A.GuidedBackprop)),
    "Deconvolution": Method(_on_model(A.Deconvolution)),
    "DeepLift": Method(_on_model(A.DeepLift), _params(), _per_example, "complete"),
    "DeepLiftShap": Method(_on_model(A.DeepLiftShap), _params(), _reference_set, "complete"),
    "GradientShap": Method(_on_model(A.GradientShap), _params("n_samples", "stdevs"),
                           _reference_set, "complete"),
    "InputBaselineXGradient": Method(_on_model(A.InputBaselineXGradient), _params(),
                                     _per_example),
    "NoiseTunnel": Method(lambda c: A.NoiseTunnel(getattr(A, c.params["base"])(c.model)),
                          _nt_kwargs,
                          lambda p: "per_example" if p["base"] in _NT_WITH_BASELINE else "none"),
    "LayerGradCam": Method(_on_layer(A.LayerGradCam), _params("relu_attributions"),
                           post=_upsampled),
    "GuidedGradCam": Method(_on_layer(A.GuidedGradCam)),
    "FeatureAblation": Method(_on_model(A.FeatureAblation), _masked(False), _per_example),
    "Occlusion": Method(_on_model(A.Occlusion), _occlusion, _per_example),
    "ShapleyValueSampling": Method(_on_model(A.ShapleyValueSampling), _masked(True),
                                   _per_example, "groups"),
    "KernelShap": Method(_on_model(A.KernelShap), _masked(True), _per_example, "groups"),
    "Lime": Method(_on_model(A.Lime), _masked(True), _per_example),
    # layer methods: attributions in the layer's per-example shape
    "LayerIntegratedGradients": Method(_on_layer(A.LayerIntegratedGradients),
                                       _layer("n_steps", "method"), _per_example, "complete"),
    "LayerConductance": Method(_on_layer(A.LayerConductance), _layer("n_steps", "method"),
                               _per_example, "complete"),
    "InternalInfluence": Method(_on_layer(A.InternalInfluence), _layer("n_steps", "method"),
                                _per_example),
    "LayerGradientXActivation": Method(_on_layer(A.LayerGradientXActivation), _layer()),
    "LayerActivation": Method(_on_layer(A.LayerActivation), _layer(), targeted=False),
    "LayerDeepLift": Method(_on_layer(A.LayerDeepLift), _layer(), _per_example, "complete"),
    "LayerDeepLiftShap": Method(_on_layer(A.LayerDeepLiftShap), _layer(), _reference_set,
                                "complete"),
    "LayerGradientShap": Method(_on_layer(A.LayerGradientShap), _layer("n_samples", "stdevs"),
                                _reference_set, "complete"),
    "LayerFeatureAblation": Method(_on_layer(A.LayerFeatureAblation), _layer_ablation),
    # neuron methods: attributions in the input's shape, of one neuron; no sum rule
    "NeuronGradient": _neuron_method(A.NeuronGradient, _neuron()),
    "NeuronIntegratedGradients": _neuron_method(A.NeuronIntegratedGradients,
                                                _neuron("n_steps", "method"), _per_example),
    "NeuronConductance": _neuron_method(A.NeuronConductance, _neuron("n_steps", "method"),
                                        _per_example, targeted=True),
    "NeuronDeepLift": _neuron_method(A.NeuronDeepLift, _neuron(), _per_example),
    "NeuronDeepLiftShap": _neuron_method(A.NeuronDeepLiftShap, _neuron(), _reference_set),
    "NeuronGradientShap": _neuron_method(A.NeuronGradientShap, _neuron("n_samples", "stdevs"),
                                         _reference_set),
    "NeuronGuidedBackprop": _neuron_method(A.NeuronGuidedBackprop, _neuron()),
    "NeuronDeconvolution": _neuron_method(A.NeuronDeconvolution, _neuron()),
    "NeuronFeatureAblation": _neuron_method(A.NeuronFeatureAblation,
                                            _neuron(masked=True), _per_example),
}


def expected(archive: Archive, case: Case, served_targets: list[int] | None = None) -> Answer:
    """The engine's answer to ``case``, in process: the prediction, then one engine call per
    target (``served_targets`` when given: the targets the server chose, once checked
    against the oracle's own, so that a near tie of two logits does not fail every row), each
    in the request's random state when it has a ``seed``."""
    method = METHODS.get(case.algorithm)
    if method is None:
        raise AssertionError(f"no oracle for {case.algorithm}: add a Method to METHODS in "
                             "tests/e2e/oracle.py, or list it in NOT_COMPARED with the reason")
    x = archive.decode(case.inputs)
    logits = archive.outputs(x)[0]
    targets = served_targets if served_targets is not None else archive.targets(case.target,
                                                                              logits)
    b = archive.baseline(case.baseline, method.takes(case.params), x)
    base_out = archive.outputs(b) if b is not None else None
    layer = archive.layer_module(case.extra)
    tunnel = "noiseTunnel" in case.extra  # seeded by params.seed, default 0; no sum rule
    seed = case.params.get("seed", 0 if tunnel else None)
    out = []
    for t in targets:
        with seeded(seed):
            a = method.run(Call(archive.model, layer, x, b, t, case.params, case.extra))
        a = a.detach()[0]
        inst = float(logits[t])
        base = float(base_out[:, t].double().mean()) if base_out is not None else 0.0
        err = None
        if b is not None and not tunnel and method.sum_rule == "complete":
            err = float(a.double().sum()) - (inst - base)
        elif b is not None and not tunnel and method.sum_rule == "groups":
            ids = patches(tuple(x.shape[1:]), case.params["superpixel"]).reshape(-1)
            sizes = torch.bincount(ids)[ids].double()
            err = float((a.double().reshape(-1) / sizes).sum()) - (inst - base)
        names = (case.extra.get("outputs") or {}).get("metrics", [])
        n = int((case.extra.get("outputs") or {}).get("metricSamples") or 8)
        measured = {name: measure(name, archive, method, Call(archive.model, layer, x, b, t,
                                                               case.params, case.extra),
                                  a[None], n, seed or 0) for name in names}
        out.append(TargetAnswer(t, a.numpy(), inst, base, err, measured))
    return Answer(int(logits.argmax()), logits.numpy(), out, case.algorithm)


def measure(name: str, archive: Archive, method: Method, c: Call, attr: Tensor, n: int,
            seed: int) -> float:
    """One target's ``outputs.metrics`` value as the proto documents it, from ``seed``. ``s``
    is the standard deviation of the input's elements (1 when 0). infidelity: perturbations
    I ~ N(0, (0.1 s)^2) per element, drawn by torch, perturbed inputs x - I. sensitivity:
    the method (with the request's params, baseline and noise tunnel) re-run on the input
    plus uniform noise of radius 0.02 s (sensitivity_max's own perturbation)."""
    s = float(c.x.double().std())
    s = s if math.isfinite(s) and s > 0 else 1.0

    def perturb(inputs: Tensor) -> tuple[Tensor, Tensor]:
        noise = 0.1 * s * torch.randn(inputs.shape, dtype=inputs.dtype)
        return noise, inputs - noise

    def explain(inputs: Tensor | tuple[Tensor, ...], target: list[int]) -> Tensor:
        xs = inputs[0] if isinstance(inputs, tuple) else inputs        # (rows, *shape)
        b = c.baseline
        if b is not None and method.takes(c.params) == "per_example":
            b = b.expand(xs.shape[0], *b.shape[1:])
        rows = Call(c.model, c.layer, xs, b, target, c.params, c.extra)  # type: ignore[arg-type]
        return method.run(rows)

    with seeded(seed):
        if name == "infidelity":
            v = M.infidelity(archive.outputs, perturb, c.x, attr, target=[c.target],
                             n_perturb_samples=n)
        else:
            v = M.sensitivity_max(explain, c.x, perturb_radius=0.02 * s, n_perturb_samples=n,
                                  target=[c.target])
    return float(v.reshape(-1)[0])


# -- comparing ------------------------------------------------------------------------------------

def compare(served: Answer, want: Answer, tol: Tol, logits_tol: float = 1e-4) -> list[str]:
    """What differs, as readable lines (empty: equal within ``tol``)."""
    bad: list[str] = []
    top = float(want.output.max())
    if want.output[served.index] < top - logits_tol * max(1.0, abs(top)):
        bad.append(f"predicted {served.index}, the engine's argmax is {want.index}")
    if not np.allclose(served.output, want.output, rtol=tol.rtol,
                       atol=tol.atol * max(1.0, float(np.abs(want.output).max()))):
        bad.append(f"prediction output differs by {np.abs(served.output - want.output).max():.3g}")
    if [e.target for e in served.explanations] != [e.target for e in want.explanations]:
        return [*bad, f"targets {[e.target for e in served.explanations]} != "
                      f"{[e.target for e in want.explanations]}"]
    for s, w in zip(served.explanations, want.explanations):
        where = f"target {w.target}"
        if s.attributions.shape != w.attributions.shape:
            bad.append(f"{where}: attribution shape {s.attributions.shape} != "
                       f"{w.attributions.shape}")
            continue
        scale = max(1.0, float(np.abs(w.attributions).max()))
        diff = np.abs(s.attributions.astype(np.float64) - w.attributions)
        allowed = tol.atol * scale + tol.rtol * np.abs(w.attributions)
        if not (diff <= allowed).all():
            i = np.unravel_index(int(np.argmax(diff - allowed)), diff.shape)
            bad.append(f"{where}: attributions differ at {tuple(int(k) for k in i)}: served "
                       f"{s.attributions[i]:.6g}, engine {w.attributions[i]:.6g} "
                       f"(max |diff| {diff.max():.3g}, max |engine| {np.abs(w.attributions).max():.3g})")
        for name, sv, wv in (("instance_output", s.instance_output, w.instance_output),
                             ("baseline_output", s.baseline_output, w.baseline_output)):
            if abs(sv - wv) > tol.rtol * max(1.0, abs(wv)) + tol.atol:
                bad.append(f"{where}: {name} served {sv:.7g}, engine {wv:.7g}")
        if (s.approximation_error is None) != (w.approximation_error is None):
            bad.append(f"{where}: approximation_error served {s.approximation_error}, the "
                       f"oracle's sum rule gives {w.approximation_error}")
        elif w.approximation_error is not None:
            assert s.approximation_error is not None
            scale = float(np.abs(w.attributions).sum()) + abs(w.instance_output) + abs(
                w.baseline_output)
            if abs(s.approximation_error - w.approximation_error) > tol.rtol * scale + tol.atol:
                bad.append(f"{where}: approximation_error served {s.approximation_error:.6g}, "
                           f"engine {w.approximation_error:.6g}")
        if set(s.metrics) != set(w.metrics):
            bad.append(f"{where}: metrics {sorted(s.metrics)} != {sorted(w.metrics)}")
        for name, wv in w.metrics.items():
            sv = s.metrics.get(name)
            if sv is None:
                continue
            if name == "infidelity":  # a mean squared residual of outputs: its root, in outputs
                ok = abs(math.sqrt(max(sv, 0.0)) - math.sqrt(max(wv, 0.0))) <= (
                    tol.atol * max(1.0, abs(w.instance_output)) + 10 * tol.rtol * math.sqrt(wv))
            else:                     # a ratio of norms of attribution maps
                ok = abs(sv - wv) <= 20 * tol.rtol * abs(wv) + tol.atol
            if not ok:
                bad.append(f"{where}: {name} served {sv:.7g}, engine {wv:.7g}")
    return bad
