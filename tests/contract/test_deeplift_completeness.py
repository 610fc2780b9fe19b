"""Completeness (summation to delta) of every DeepLift-family row of the contract table, in
float64: the attributions of example ``i`` sum to ``F(x_i) - F(x'_i)`` (mean over the
baselines of a distribution) within 1e-6 of ``|F(x_i) - F(x'_i)|``. ``F`` is the targeted
output, or the selected neuron for neuron rows; rows with ``multiply_by_inputs=False`` are
multiplied by ``x - x'`` (at the input or at the layer) first. The expected value is computed
by plain forward passes of the model, one (example, baseline) pair at a time.

Rows on "mlp" attribute through its Softmax: DeepLift's Softmax rule (Captum's, which we
reproduce per example) is not exact, so the target's completeness is not asserted there; the
neuron rows on "mlp" (below the Softmax) are.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor

from .models import MODELS
from .rows import ROWS
from .table import Case, one_or_tuple, split

BATCH = [0, 1, 2, 3]
REL = 1e-6
FAMILY = ("DeepLift", "DeepLiftShap", "LayerDeepLift", "LayerDeepLiftShap", "NeuronDeepLift",
          "NeuronDeepLiftShap")
THROUGH_SOFTMAX = "mlp"


def _family(case: Case) -> bool:
    return case.name.split("-")[0] in FAMILY


def _checked(case: Case) -> bool:
    return _family(case) and (case.model != THROUGH_SOFTMAX or case.name.startswith("Neuron"))


def _examples(t: Any, n: int) -> list[Any]:
    """Per-example slices of a tensor with ``n`` rows; anything else as it is."""
    if isinstance(t, Tensor) and t.dim() > 0 and t.shape[0] == n:
        return [t[i:i + 1] for i in range(n)]
    return [t] * n


class _Capture:
    """Records a layer's output (or input) during one forward."""

    def __init__(self, layer: torch.nn.Module, to_input: bool) -> None:
        self.value: Any = None
        self.layer, self.to_input = layer, to_input

    def __enter__(self) -> _Capture:
        if self.to_input:
            self.handle = self.layer.register_forward_pre_hook(
                lambda m, a: setattr(self, "value", a[0]))
        else:
            self.handle = self.layer.register_forward_hook(
                lambda m, a, out: setattr(self, "value", out))
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def _neuron(value: Any, selector: Any) -> Tensor:
    if callable(selector):
        return selector(value)
    index = (selector,) if isinstance(selector, int) else tuple(selector)
    return value[(slice(None), *index)]


@pytest.mark.parametrize("case", [c for c in ROWS if _checked(c)], ids=lambda c: c.id)
def test_deeplift_family_completeness(case: Case) -> None:
    spec = MODELS[case.model]
    model = spec.build()
    xs = spec.inputs(BATCH)
    kwargs = case.kwargs(spec, BATCH)
    obj = case.ours(model)
    result = obj.attribute(one_or_tuple(xs), **kwargs)
    attrs, _ = split(result, bool(kwargs.get("return_convergence_delta")))

    layer = getattr(obj, "layer", None)
    neuron_sel = kwargs.get("neuron_selector")
    to_input = bool(kwargs.get("attribute_to_layer_input") or
                    kwargs.get("attribute_to_neuron_input"))
    base = kwargs["baselines"]
    bases = base if isinstance(base, tuple) else (base,)
    args = kwargs.get("additional_forward_args")
    args_t = args if isinstance(args, tuple) else (() if args is None else (args,))
    n = len(BATCH)
    targets = kwargs.get("target")
    shap = case.name.split("-")[0].endswith("Shap")
    n_base = bases[0].shape[0] if shap else None

    def value(inputs: tuple[Tensor, ...], i: int) -> tuple[Tensor, Any]:
        """(F, the layer's tensor) for one example's inputs with example i's extra args."""
        extra = tuple(_examples(a, n)[i] for a in args_t)
        if layer is None:
            with torch.no_grad():
                out = model(*inputs, *extra)
            captured = None
        else:
            with torch.no_grad(), _Capture(layer, to_input) as cap:
                out = model(*inputs, *extra)
            captured = cap.value
        if neuron_sel is not None:
            return _neuron(captured, neuron_sel)[0], captured
        t = targets[i] if isinstance(targets, list) else targets
        return (out[0] if t is None else out[0, t]), captured

    multiplies = getattr(obj, "multiplies_by_inputs", True)
    for i in range(n):
        x_i = tuple(x[i:i + 1] for x in xs)
        f_x, h_x = value(x_i, i)
        pairs = range(n_base) if shap else [i]
        expected = []
        for j in pairs:
            b_j = tuple(b[j:j + 1] if isinstance(b, Tensor) and b.dim() > 0 and b.shape[0] > 1
                        else b for b in bases)
            b_j = tuple(b.expand_as(x) if isinstance(b, Tensor) else torch.full_like(x, b)
                        for b, x in zip(b_j, x_i))
            f_b, h_b = value(b_j, i)
            expected.append((f_x - f_b).item())
            if not multiplies:  # attrs are multipliers: times the difference they multiply
                if layer is None:
                    diffs = [x - b for x, b in zip(x_i, b_j)]
                else:
                    diffs = [h_x - h_b]
        total_expected = sum(expected) / len(expected)
        if multiplies:
            got = sum(a[i].sum().item() for a in attrs)
        else:
            got = sum((a[i] * d[0]).sum().item() for a, d in zip(attrs, diffs))
        assert abs(got - total_expected) <= REL * abs(total_expected) + 1e-12, (
            f"{case.id} example {i}: attributions sum to {got}, F(x) - F(x') = {total_expected}")
