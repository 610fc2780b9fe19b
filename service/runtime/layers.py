"""The layers a model serves to layer, neuron and CAM methods: the spec's friendly names
resolved to modules and measured once at load (per-example output and input shapes, by a
forward hook on one example), and a request's ``layer`` selector checked against them."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .algorithms import AlgorithmEntry, Family
from .errors import InvalidInput
from .request import LayerSelector
from .spec import ModelSpec, SpecError


@dataclass(frozen=True)
class LayerInfo:
    name: str                      # the friendly name requests use
    module: str                    # its module path in the model
    output_shape: tuple[int, ...]  # per-example shape of the module's output
    input_shape: tuple[int, ...]   # per-example shape of its (first) input

    def shape(self, to_input: bool) -> tuple[int, ...]:
        return self.input_shape if to_input else self.output_shape


@dataclass(frozen=True)
class LayerChoice:
    """A request's resolved layer: hashable, so that it is part of the fused-group key."""

    info: LayerInfo
    to_input: bool = False
    neuron: tuple[int, ...] | None = None

    @property
    def attributed_to(self) -> str:
        return "layer_input" if self.to_input else "layer_output"

    @property
    def shape(self) -> tuple[int, ...]:
        return self.info.shape(self.to_input)


def _first_tensor(value: object) -> Tensor | None:
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (tuple, list)) and value and isinstance(value[0], Tensor):
        return value[0]
    return None


def measure(model: nn.Module, spec: ModelSpec, device: torch.device,
            dtype: torch.dtype) -> dict[str, LayerInfo]:
    """Every layer of the spec, by friendly name, with its shapes measured by one forward of a
    zero example; SpecError naming the key for a module path the model does not have or a
    layer that gives no tensor."""
    if not spec.layers:
        return {}
    modules = {}
    for name, path in spec.layers.items():
        try:
            modules[name] = model.get_submodule(path)
        except AttributeError:
            raise SpecError(f"spec.yaml: `explain.layers.{name}`: the model has no module "
                            f"{path!r}") from None
    seen: dict[str, tuple[Tensor | None, Tensor | None]] = {}

    def hook(name: str):
        def record(module: nn.Module, args: tuple, out: object) -> None:
            seen.setdefault(name, (_first_tensor(args), _first_tensor(out)))
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    try:
        with torch.no_grad():
            model(torch.zeros((1, *spec.input_shape), device=device, dtype=dtype))
    finally:
        for h in handles:
            h.remove()
    out = {}
    for name, path in spec.layers.items():
        inp, res = seen.get(name, (None, None))
        if inp is None or res is None:
            raise SpecError(f"spec.yaml: `explain.layers.{name}`: module {path!r} "
                            "takes or gives no tensor in the model's forward")
        out[name] = LayerInfo(name, path, tuple(res.shape[1:]), tuple(inp.shape[1:]))
    return out


def resolve(selector: LayerSelector, entry: AlgorithmEntry, spec: ModelSpec,
            layers: dict[str, LayerInfo], heatmap: bool = False) -> LayerChoice | None:
    """The request's layer for ``entry``, or None for methods that run on no layer (which
    refuse a selector); errors name ``layer.name`` / ``layer.neuron`` (and
    ``outputs.heatmap``: a layer method's heatmap is its (C, H, W) map, channels summed)."""
    if not entry.needs_layer:
        if selector.given:
            raise InvalidInput("layer", f"{entry.name} attributes to the input and runs on no "
                               "layer; `layer` is for the layer, neuron and CAM methods")
        return None
    name = selector.name or spec.default_layer or ""
    info = layers.get(name)
    if info is None:
        raise InvalidInput("layer.name", f"{name!r} is not a layer of this model", list(layers))
    choice = LayerChoice(info, selector.attribute_to_layer_input)
    shape = choice.shape
    where = f"layer {name}'s {'input' if choice.to_input else 'output'}"
    if entry.family is not Family.NEURON:
        if selector.neuron:
            raise InvalidInput("layer.neuron", f"{entry.name} attributes to a whole layer; a "
                               "neuron is for the neuron methods")
        if entry.family is Family.CAM and (len(shape) != 3 or len(spec.input_shape) != 3):
            raise InvalidInput("layer.name", f"{entry.name} is served for image-shaped inputs "
                               f"with a convolutional layer (a (C, H, W) map); {where} has "
                               f"shape {list(shape)}", [n for n, i in layers.items()
                                                        if len(i.output_shape) == 3])
        if heatmap and entry.family is Family.LAYER and len(shape) != 3:
            raise InvalidInput("outputs.heatmap", f"{where} has shape {list(shape)}: a layer "
                               "heatmap is drawn for (C, H, W) layers only")
        return choice
    neuron = tuple(selector.neuron)
    if not neuron:
        raise InvalidInput("layer.neuron", f"{entry.name} needs the index of a neuron in "
                           f"{where}, of shape {list(shape)}")
    if len(neuron) != len(shape) or not all(0 <= n < d for n, d in zip(neuron, shape)):
        raise InvalidInput("layer.neuron", f"{list(neuron)} is not an index into {where}, of "
                           f"shape {list(shape)} (one index per dimension, each in [0, size))")
    return LayerChoice(info, choice.to_input, neuron)


def unit_names(choice: LayerChoice) -> list[str]:
    """The names of the units top features cite: ``conv2[c=3]`` per channel of a layer of two
    or more dims (its first per-example dim, summed over the others), ``hidden1[7]`` per
    element of a flat layer."""
    shape, name = choice.shape, choice.info.name
    if len(shape) >= 2:
        return [f"{name}[c={c}]" for c in range(shape[0])]
    return [f"{name}[{i}]" for i in range(math.prod(shape))]


def per_unit(a: Tensor | None, shape: tuple[int, ...]) -> Tensor | None:
    """(units,) sums of a ``(*shape)`` layer tensor over each unit (see ``unit_names``)."""
    if a is None:
        return None
    a = a.reshape(shape)
    return a.reshape(shape[0], -1).sum(1) if len(shape) >= 2 else a.reshape(-1)
