"""ModelSpec: the typed, frozen description of a served model, parsed from the archive's
spec.yaml (see serving-contract.md). Parsing errors name the yaml path."""

from __future__ import annotations

import pathlib
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import yaml


class SpecError(ValueError):
    """spec.yaml is malformed; the message names the key."""


class InputKind(str, Enum):
    IMAGE = "image"
    TENSOR = "tensor"
    TABULAR = "tabular"
    TEXT = "text"  # a causal LM: prompts in, generated text out (service.runtime.text)


@dataclass(frozen=True)
class ImageSpec:
    mode: str = "L"
    size: tuple[int, int] = (28, 28)  # (width, height) as PIL takes it
    scale: float = 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    invert: bool = False


@dataclass(frozen=True)
class Scaler:
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class ReasonRule:
    prefix: str
    template: str


@dataclass(frozen=True)
class BaselineDef:
    kind: str  # zeros | constant | blur | tensor | reference_set | uniform
    file: str | None = None
    value: float = 0.0


@dataclass(frozen=True)
class TextSpec:
    """A text model's tokens: the tokenizer's vocabulary file (service.nets.WordTokenizer's
    JSON), the embedding layer the gradient methods attribute through, the word generation
    stops after, the token a removed word becomes (gradient methods), and tokens that are never
    features (the BOS token). ``context_length`` is ``input.shape[0]``."""

    tokenizer: str
    embedding_layer: str
    stop_token: str
    baseline_token: str
    skip_tokens: tuple[str, ...]
    context_length: int


@dataclass(frozen=True)
class BatchSpec:
    """How TorchServe registers the model: its batching and its workers (the launcher's
    ``--workers`` overrides ``workers`` for every model)."""

    batch_size: int = 1
    max_batch_delay_ms: int = 10
    workers: int = 1


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: str
    description: str
    purpose: str
    model_file: str
    model_class: str
    weights: str
    input_kind: InputKind
    input_shape: tuple[int, ...]
    image: ImageSpec | None
    feature_names: tuple[str, ...]
    scaler: Scaler | None
    output_kind: str
    class_names: tuple[str, ...]
    algorithms: tuple[str, ...]
    default_algorithm: str
    default_params: dict[str, dict[str, Any]] = field(hash=False, compare=False)
    cam_layer: str | None   # the module path of the default layer (of CAM and every layer method)
    default_target: str
    top_k_features: int
    reasons: tuple[ReasonRule, ...]
    baselines: dict[str, BaselineDef] = field(hash=False, compare=False)
    default_baseline: str
    limits: dict[str, int] = field(hash=False, compare=False)
    batch: BatchSpec
    # The layers a request may name: friendly name -> module path (``explain.layers``), in
    # the spec's order; ``default_layer`` is the friendly name of ``cam_layer``'s module.
    layers: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    default_layer: str | None = None
    text: TextSpec | None = None

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def class_index(self, label: str) -> int | None:
        try:
            return self.class_names.index(label)
        except ValueError:
            return None


def _get(d: dict, key: str, path: str, default: Any = ..., kind: type | tuple = object) -> Any:
    if not isinstance(d, dict):
        raise SpecError(f"spec.yaml: `{path}` must be a mapping")
    if key not in d or d[key] is None:
        if default is ...:
            raise SpecError(f"spec.yaml: `{f'{path}.{key}'.lstrip('.')}` is required")
        return default
    value = d[key]
    if not isinstance(value, kind):
        where = f"{path}.{key}".lstrip(".")
        raise SpecError(f"spec.yaml: `{where}` has type {type(value).__name__}")
    return value


def _layers(exp: dict) -> tuple[dict[str, str], str | None]:
    """``explain.layers`` (friendly name -> module path) and the default layer's name:
    ``explain.default_layer``, else the layer ``explain.cam_layer`` names (a friendly name or a
    listed module path), else the first listed. A ``cam_layer`` without ``layers`` is the one
    layer, named by its module path."""
    raw = _get(exp, "layers", "explain", default={}, kind=dict)
    layers: dict[str, str] = {}
    for name, module in raw.items():
        if not isinstance(name, str) or not name or not isinstance(module, str) or not module:
            raise SpecError(f"spec.yaml: `explain.layers.{name}` must map a name to a module "
                            "path (a non-empty string such as `conv2` or `net.1`)")
        layers[name] = module
    cam = _get(exp, "cam_layer", "explain", default=None, kind=str)
    if cam is not None and not layers:
        layers = {cam: cam}
    default = _get(exp, "default_layer", "explain", default=None, kind=str)
    if default is None and cam is not None:
        default = cam if cam in layers else next(
            (n for n, m in layers.items() if m == cam), None)
        if default is None:
            raise SpecError(f"spec.yaml: `explain.cam_layer` {cam!r} is not one of "
                            f"`explain.layers` ({', '.join(layers)})")
    if default is None and layers:
        default = next(iter(layers))
    if default is not None and default not in layers:
        raise SpecError(f"spec.yaml: `explain.default_layer` {default!r} is not one of "
                        f"`explain.layers` ({', '.join(layers)})")
    return layers, default


def parse_spec(data: dict) -> ModelSpec:
    """Build a ModelSpec from the parsed yaml mapping."""
    if not isinstance(data, dict):
        raise SpecError("spec.yaml must hold a mapping")
    model = _get(data, "model", "", kind=dict)
    inp = _get(data, "input", "", kind=dict)
    out = _get(data, "output", "", default={}, kind=dict)
    exp = _get(data, "explain", "", default={}, kind=dict)
    bl = _get(data, "baselines", "", default={}, kind=dict)
    try:
        kind = InputKind(_get(inp, "kind", "input", kind=str))
    except ValueError as e:
        raise SpecError(f"spec.yaml: `input.kind` must be one of "
                        f"{', '.join(k.value for k in InputKind)}") from e
    shape = tuple(int(s) for s in _get(inp, "shape", "input", kind=list))
    image = None
    if kind is InputKind.IMAGE:
        im = _get(inp, "image", "input", default={}, kind=dict)
        default_size = (shape[2], shape[1]) if len(shape) == 3 else (28, 28)
        size = tuple(int(s) for s in im.get("size", default_size))
        image = ImageSpec(mode=str(im.get("mode", "L")), size=(size[0], size[1]),
                          scale=float(im.get("scale", 255.0)),
                          mean=tuple(float(v) for v in im.get("mean", [0.0])),
                          std=tuple(float(v) for v in im.get("std", [1.0])),
                          invert=bool(im.get("invert", False)))
    names = tuple(str(n) for n in _get(inp, "feature_names", "input", default=[], kind=list))
    if kind is InputKind.TABULAR:
        width = int(shape[-1]) if shape else 0
        if len(names) != width:
            raise SpecError(f"spec.yaml: `input.feature_names` has {len(names)} names for "
                            f"input.shape {list(shape)}")
    scaler = None
    if inp.get("scaler"):
        sc = inp["scaler"]
        scaler = Scaler(mean=tuple(float(v) for v in sc["mean"]),
                        std=tuple(float(v) for v in sc["std"]))
    text = _text_spec(inp, shape) if kind is InputKind.TEXT else None
    classes = tuple(str(c) for c in _get(out, "class_names", "output", default=[], kind=list))
    algorithms = tuple(str(a) for a in _get(exp, "algorithms", "explain",
                                             default=["IntegratedGradients"], kind=list))
    default_algorithm = str(_get(exp, "default_algorithm", "explain", default=algorithms[0]))
    if default_algorithm not in algorithms:
        raise SpecError("spec.yaml: `explain.default_algorithm` is not in `explain.algorithms`")
    defs = {"zeros": BaselineDef("zeros")}
    for name, d in (_get(bl, "definitions", "baselines", default={}, kind=dict)).items():
        if not isinstance(d, dict) or "kind" not in d:
            raise SpecError(f"spec.yaml: `baselines.definitions.{name}` needs a `kind`")
        defs[str(name)] = BaselineDef(kind=str(d["kind"]), file=d.get("file"),
                                      value=float(d.get("value", 0.0)))
    default_baseline = str(_get(bl, "default", "baselines", default="zeros"))
    if default_baseline not in defs:
        raise SpecError(f"spec.yaml: `baselines.default` {default_baseline!r} is not defined")
    reasons = tuple(ReasonRule(prefix=str(r["prefix"]), template=str(r["template"]))
                    for r in _get(exp, "reasons", "explain", default=[], kind=list))
    batch = _get(data, "batch", "", default={}, kind=dict)
    layers, default_layer = _layers(exp)
    return ModelSpec(
        name=str(_get(data, "name", "", kind=str)),
        version=str(_get(data, "version", "", default="1.0")),
        description=str(_get(data, "description", "", default="")),
        purpose=str(_get(data, "purpose", "", default="production")),
        model_file=str(_get(model, "file", "model")),
        model_class=str(_get(model, "class", "model")),
        weights=str(_get(model, "weights", "model", default="weights.pt")),
        input_kind=kind,
        input_shape=shape,
        image=image,
        feature_names=names,
        scaler=scaler,
        output_kind=str(_get(out, "kind", "output", default="classification", kind=str)),
        class_names=classes,
        algorithms=algorithms,
        default_algorithm=default_algorithm,
        default_params={str(k): dict(v) for k, v in
                        (_get(exp, "default_params", "explain", default={}, kind=dict)).items()},
        cam_layer=layers[default_layer] if default_layer is not None else None,
        default_target=str(_get(exp, "default_target", "explain", default="predicted")),
        top_k_features=int(_get(exp, "top_k_features", "explain", default=5, kind=int)),
        reasons=reasons,
        baselines=defs,
        default_baseline=default_baseline,
        limits={str(k): int(v) for k, v in
                (_get(data, "limits", "", default={}, kind=dict)).items()},
        batch=_batch(batch),
        layers=layers,
        default_layer=default_layer,
        text=text,
    )


def _batch(batch: dict) -> BatchSpec:
    spec = BatchSpec(batch_size=int(batch.get("batch_size", 1)),
                     max_batch_delay_ms=int(batch.get("max_batch_delay_ms", 10)),
                     workers=int(batch.get("workers", 1)))
    for key in ("batch_size", "workers"):
        if getattr(spec, key) < 1:
            raise SpecError(f"spec.yaml: `batch.{key}` must be at least 1")
    return spec


def _text_spec(inp: dict, shape: tuple[int, ...]) -> TextSpec:
    t = _get(inp, "text", "input", kind=dict)
    if len(shape) != 1 or shape[0] < 2:
        raise SpecError("spec.yaml: `input.shape` of a text model is [context_length]")
    return TextSpec(
        tokenizer=str(_get(t, "tokenizer", "input.text", kind=str)),
        embedding_layer=str(_get(t, "embedding_layer", "input.text", kind=str)),
        stop_token=str(_get(t, "stop_token", "input.text", default="", kind=str)),
        baseline_token=str(_get(t, "baseline_token", "input.text", kind=str)),
        skip_tokens=tuple(str(x) for x in _get(t, "skip_tokens", "input.text", default=[],
                                                kind=list)),
        context_length=int(shape[0]))


def load_spec(path: str | pathlib.Path) -> ModelSpec:
    with open(path) as f:
        return parse_spec(yaml.safe_load(f))
