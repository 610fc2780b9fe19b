"""Contract rows for the layer and neuron families: every class against captum on an MLP, a CNN
with a conv layer and MaxPool, and the embedding + pooling text classifier (on token ids when
the method attributes to a layer, through its interpretable embedding layer when the method
needs a path or gradients in input space), plus a layer whose output is a tuple."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import captum.attr as ca
import torch

import service.attribution as sa

from . import models_layer
from .models import MODELS, ModelSpec
from .table import Case, distribution, extra, per_example_baselines, per_example_target

# Where each model is looked into: the layer, a neuron of it, and a layer for input-side rows.
LAYER = {"mlp": "lin2", "cnn": "conv2", "text": "embedding", "text_emb": "fc1",
         "tuple_layer": "split"}
NEURON: dict[str, Any] = {"mlp": 3, "cnn": (1, 2, 2), "text_emb": 2,
                          "tuple_layer": lambda outs: outs[0][:, 1]}


def _layer(model, name: str):
    for part in name.split("."):
        model = getattr(model, part)
    return model


def _target(spec: ModelSpec, rows: list[int], **more) -> dict:
    return {"target": per_example_target(spec, rows), **extra(spec, rows), **more}


def _bl(spec: ModelSpec, rows: list[int], **more) -> dict:
    if spec is MODELS["text"]:
        ref = sa.TokenReferenceBase(0).generate_reference(models_layer.SEQ, "cpu").unsqueeze(0)
        return _target(spec, rows, baselines=ref, **more)
    return _target(spec, rows, baselines=per_example_baselines(spec, rows), **more)


def _distrib(spec: ModelSpec, rows: list[int], **more) -> dict:
    if spec is MODELS["text"]:
        g = torch.Generator().manual_seed(3)
        toks = torch.randint(0, models_layer.VOCAB, (4, models_layer.SEQ), generator=g)
        toks[:, ::2] = 0
        return _target(spec, rows, baselines=toks, **more)
    return _target(spec, rows, baselines=distribution(spec), **more)


def layer_case(name: str, model: str, ours: Callable, theirs: Callable | None, kwargs,
               layer: str | list[str] | None = None, ours_kw: dict | None = None, **opts) -> Case:
    names = layer or LAYER[model]

    def pick(m):
        return [_layer(m, n) for n in names] if isinstance(names, list) else _layer(m, names)

    ok = ours_kw or {}
    return Case(name, model, lambda m: ours(m, pick(m), **ok),
                None if theirs is None else (lambda m: theirs(m, pick(m), **ok)), kwargs, **opts)


def neuron_kwargs(model: str, base: Callable, selector: Any = None, **more) -> Callable:
    sel = NEURON[model] if selector is None else selector

    def kwargs(spec: ModelSpec, rows: list[int]) -> dict:
        kw = base(spec, rows, **more)
        kw.pop("target", None)
        return {"neuron_selector": sel, **kw}

    return kwargs


class _PerPairShap:
    """The DeepLiftShap-style mean of a single-baseline captum method over (example, baseline)
    pairs taken one at a time: the oracle where captum's batched Softmax rule mixes the pairs."""

    def __init__(self, single, model, layer):
        self.obj = single(model, layer)

    def attribute(self, inputs, baselines, target=None, neuron_selector=None):
        baselines = baselines[0] if isinstance(baselines, tuple) else baselines
        out = []
        for i in range(inputs.shape[0]):
            kw = {} if neuron_selector is None else {"neuron_selector": neuron_selector}
            if target is not None:
                kw["target"] = target[i]
            per = [self.obj.attribute(inputs[i:i + 1], baselines=baselines[j:j + 1], **kw)
                   for j in range(baselines.shape[0])]
            out.append(torch.cat(per).mean(0, keepdim=True))
        return torch.cat(out)


def _with_target(spec, rows, **more):
    return _target(spec, rows, **more)


def _layer_rows(model: str) -> list[Case]:
    softmax = model == "mlp"  # captum's DeepLift Softmax rule mixes the batch
    # captum's LayerDeepLiftShap asks for gradients on the token ids ("text"): compared pairwise
    per_pair = softmax or model == "text"
    rows = [
        layer_case("LayerActivation", model, sa.LayerActivation, ca.LayerActivation,
                   lambda s, r: extra(s, r)),
        layer_case("LayerGradientXActivation", model, sa.LayerGradientXActivation,
                   ca.LayerGradientXActivation, _target),
        layer_case("LayerGradientXActivation-nomul", model, sa.LayerGradientXActivation,
                   ca.LayerGradientXActivation, _target, ours_kw={"multiply_by_inputs": False}),
        layer_case("LayerIntegratedGradients", model, sa.LayerIntegratedGradients,
                   ca.LayerIntegratedGradients,
                   lambda s, r: _bl(s, r, return_convergence_delta=True, n_steps=64),
                   completeness=5e-3),
        layer_case("LayerIntegratedGradients-trapezoid-ibs", model, sa.LayerIntegratedGradients,
                   ca.LayerIntegratedGradients,
                   lambda s, r: _bl(s, r, method="riemann_trapezoid", n_steps=20,
                                    internal_batch_size=7)),
        layer_case("LayerGradCam", model, sa.LayerGradCam, ca.LayerGradCam, _target),
        layer_case("LayerGradCam-relu-nosum", model, sa.LayerGradCam, ca.LayerGradCam,
                   lambda s, r: _target(s, r, relu_attributions=True, attr_dim_summation=False)),
        layer_case("LayerDeepLift", model, sa.LayerDeepLift, ca.LayerDeepLift,
                   lambda s, r: _bl(s, r, return_convergence_delta=True),
                   completeness=None if softmax else 1e-8, captum_per_example=softmax),
        layer_case("LayerDeepLiftShap", model, sa.LayerDeepLiftShap,
                   (lambda m, lay: _PerPairShap(ca.LayerDeepLift, m, lay)) if per_pair
                   else ca.LayerDeepLiftShap, lambda s, r: _distrib(s, r)),
    ]
    if model != "text":  # paths in input space need floating-point inputs
        rows += [
            layer_case("LayerConductance", model, sa.LayerConductance, ca.LayerConductance,
                       lambda s, r: _bl(s, r, return_convergence_delta=True)),
            layer_case("LayerConductance-trapezoid", model, sa.LayerConductance,
                       ca.LayerConductance,
                       lambda s, r: _bl(s, r, return_convergence_delta=True,
                                        method="riemann_trapezoid", n_steps=100,
                                        internal_batch_size=13), completeness=1e-3),
            layer_case("InternalInfluence", model, sa.InternalInfluence, ca.InternalInfluence,
                       lambda s, r: _bl(s, r, n_steps=20)),
            layer_case("LayerGradientShap", model, sa.LayerGradientShap, ca.LayerGradientShap,
                       lambda s, r: _distrib(s, r, n_samples=6, stdevs=0.05,
                                             return_convergence_delta=True), sampled=True),
        ]
    return rows


def _neuron_rows(model: str) -> list[Case]:
    dl_oracle = model != "cnn"  # captum 0.9.0's DeepLift is wrong next to MaxPool (models.CNN)
    softmax = model == "mlp"
    return [
        layer_case("NeuronGradient", model, sa.NeuronGradient, ca.NeuronGradient,
                   neuron_kwargs(model, _with_target)),
        layer_case("NeuronIntegratedGradients", model, sa.NeuronIntegratedGradients,
                   ca.NeuronIntegratedGradients, neuron_kwargs(model, _bl, n_steps=30)),
        layer_case("NeuronConductance", model, sa.NeuronConductance, ca.NeuronConductance,
                   lambda s, r: {"neuron_selector": NEURON[model], **_bl(s, r, n_steps=30)}),
        layer_case("NeuronConductance-gl-ibs", model, sa.NeuronConductance, ca.NeuronConductance,
                   lambda s, r: {"neuron_selector": NEURON[model],
                                 **_bl(s, r, n_steps=12, method="gausslegendre",
                                       internal_batch_size=9)}),
        layer_case("NeuronGradientShap", model, sa.NeuronGradientShap, ca.NeuronGradientShap,
                   neuron_kwargs(model, _distrib, n_samples=6, stdevs=0.05), sampled=True),
        layer_case("NeuronDeepLift", model, sa.NeuronDeepLift,
                   ca.NeuronDeepLift if dl_oracle else None, neuron_kwargs(model, _bl),
                   captum_per_example=softmax),
        layer_case("NeuronDeepLiftShap", model, sa.NeuronDeepLiftShap,
                   ((lambda m, lay: _PerPairShap(ca.NeuronDeepLift, m, lay)) if softmax
                    else ca.NeuronDeepLiftShap) if dl_oracle else None,
                   neuron_kwargs(model, _distrib)),
        layer_case("NeuronGuidedBackprop", model, sa.NeuronGuidedBackprop,
                   ca.NeuronGuidedBackprop, neuron_kwargs(model, _with_target)),
        layer_case("NeuronDeconvolution", model, sa.NeuronDeconvolution, ca.NeuronDeconvolution,
                   neuron_kwargs(model, _with_target)),
    ]


ROWS: list[Case] = []
for _model in ("mlp", "cnn", "text", "text_emb"):
    ROWS += _layer_rows(_model)
for _model in ("mlp", "cnn", "text_emb"):
    ROWS += _neuron_rows(_model)



def _text_token_mask(spec, rows, **more):
    """Ablate whole tokens of the embedding output: one feature per position."""
    pos = torch.arange(models_layer.SEQ).view(1, -1, 1).expand(1, -1, models_layer.DIM)
    return _target(spec, rows, layer_mask=pos.clone(), **more)


def _channel_mask(spec, rows, **more):
    """Group the CNN's conv2 output by channel (6 features). One target for all examples:
    captum 0.9.0 does not expand a per-example target when perturbations_per_eval > 1."""
    return {"target": 1, "layer_mask": torch.arange(6).view(1, 6, 1, 1).expand(1, 6, 4, 4)
            .clone(), "layer_baselines": 0.1, "perturbations_per_eval": 4, **more}


def _patch_mask(spec, rows, **more):
    """2x2 patches of the 10x10 image (25 features)."""
    idx = torch.arange(10) // 2
    return {**more, "feature_mask": (idx.view(-1, 1) * 5 + idx.view(1, -1)).view(1, 1, 10, 10),
            "perturbations_per_eval": 3}


for _model in ("mlp", "cnn", "text", "tuple_layer"):
    ROWS.append(layer_case("LayerFeatureAblation", _model, sa.LayerFeatureAblation,
                           ca.LayerFeatureAblation, _target))
ROWS += [
    layer_case("LayerFeatureAblation-tokens", "text", sa.LayerFeatureAblation,
               ca.LayerFeatureAblation, _text_token_mask),
    layer_case("LayerFeatureAblation-channels", "cnn", sa.LayerFeatureAblation,
               ca.LayerFeatureAblation, _channel_mask),
]
for _model in ("mlp", "cnn", "text_emb"):
    ROWS.append(layer_case("NeuronFeatureAblation", _model, sa.NeuronFeatureAblation,
                           ca.NeuronFeatureAblation, neuron_kwargs(_model, _bl)))
ROWS.append(layer_case("NeuronFeatureAblation-patches", "cnn", sa.NeuronFeatureAblation,
                       ca.NeuronFeatureAblation,
                       lambda s, r: {"neuron_selector": NEURON["cnn"], **_patch_mask(s, r)}))

# Options Captum supports: layer inputs, lists of layers, slice and callable neuron selectors,
# tuple-output layers, Guided Grad-CAM on the CNN.
ROWS += [
    layer_case("LayerIntegratedGradients-two-layers", "tuple_layer", sa.LayerIntegratedGradients,
               ca.LayerIntegratedGradients,
               lambda s, r: _bl(s, r, return_convergence_delta=True),
               layer=["split.a", "split.b"], completeness=5e-3),
    layer_case("LayerIntegratedGradients-layer-input", "mlp", sa.LayerIntegratedGradients,
               ca.LayerIntegratedGradients,
               lambda s, r: _bl(s, r, attribute_to_layer_input=True)),
    layer_case("LayerActivation-two-layers", "cnn", sa.LayerActivation, ca.LayerActivation,
               lambda s, r: {}, layer=["conv1", "conv2"]),
    layer_case("LayerGradientXActivation-layer-input", "cnn", sa.LayerGradientXActivation,
               ca.LayerGradientXActivation,
               lambda s, r: _target(s, r, attribute_to_layer_input=True)),
    layer_case("LayerConductance-layer-input", "mlp", sa.LayerConductance, ca.LayerConductance,
               lambda s, r: _bl(s, r, attribute_to_layer_input=True, n_steps=20)),
    layer_case("LayerDeepLift-layer-input", "text_emb", sa.LayerDeepLift, ca.LayerDeepLift,
               lambda s, r: _bl(s, r, attribute_to_layer_input=True)),
    layer_case("LayerGradCam-layer-input", "cnn", sa.LayerGradCam, ca.LayerGradCam,
               lambda s, r: _target(s, r, attribute_to_layer_input=True)),
    layer_case("GuidedGradCam", "cnn", sa.GuidedGradCam, ca.GuidedGradCam, _target,
               layer="conv2"),
    layer_case("GuidedGradCam-bilinear", "cnn", sa.GuidedGradCam, ca.GuidedGradCam,
               lambda s, r: _target(s, r, interpolate_mode="bilinear"), layer="conv1"),
    layer_case("NeuronGradient-slices", "cnn", sa.NeuronGradient, ca.NeuronGradient,
               neuron_kwargs("cnn", _with_target, selector=(slice(0, 2), 1, slice(1, 3)))),
    layer_case("NeuronIntegratedGradients-neuron-input", "mlp", sa.NeuronIntegratedGradients,
               ca.NeuronIntegratedGradients,
               neuron_kwargs("mlp", _bl, selector=5, attribute_to_neuron_input=True)),
    layer_case("NeuronConductance-callable", "cnn", sa.NeuronConductance, ca.NeuronConductance,
               lambda s, r: {"neuron_selector": lambda y: y[:, 2, 1, 3],
                             **_bl(s, r, n_steps=10)}),
]
for _name, _ours, _theirs, _kw in (
    ("LayerActivation", sa.LayerActivation, ca.LayerActivation, lambda s, r: {}),
    ("LayerGradientXActivation", sa.LayerGradientXActivation, ca.LayerGradientXActivation,
     _target),
    ("LayerIntegratedGradients", sa.LayerIntegratedGradients, ca.LayerIntegratedGradients,
     lambda s, r: _bl(s, r, return_convergence_delta=True)),
    ("LayerConductance", sa.LayerConductance, ca.LayerConductance,
     lambda s, r: _bl(s, r, return_convergence_delta=True)),
    ("InternalInfluence", sa.InternalInfluence, ca.InternalInfluence, _bl),
    ("LayerGradCam", sa.LayerGradCam, ca.LayerGradCam, _target),
    ("NeuronGradient", sa.NeuronGradient, ca.NeuronGradient,
     neuron_kwargs("tuple_layer", _with_target)),
    ("NeuronConductance", sa.NeuronConductance, ca.NeuronConductance,
     lambda s, r: {"neuron_selector": NEURON["tuple_layer"], **_bl(s, r, n_steps=10)}),
):
    ROWS.append(layer_case(f"{_name}-tuple-output", "tuple_layer", _ours, _theirs, _kw))

# Captum 0.9.0's options for the gradient machinery: grad_kwargs (passed to torch.autograd.grad),
# LayerGradientXActivation's memory_efficient, and callable selectors giving one number for the
# whole batch (gradient-only neuron methods; Captum differentiates the sum either way).
_MATERIALIZE = {"grad_kwargs": {"materialize_grads": True}}
ROWS += [
    layer_case("LayerConductance-grad-kwargs", "mlp", sa.LayerConductance, ca.LayerConductance,
               lambda s, r: _bl(s, r, n_steps=20, **_MATERIALIZE)),
    layer_case("InternalInfluence-grad-kwargs", "cnn", sa.InternalInfluence, ca.InternalInfluence,
               lambda s, r: _bl(s, r, n_steps=10, **_MATERIALIZE)),
    layer_case("LayerGradCam-grad-kwargs", "cnn", sa.LayerGradCam, ca.LayerGradCam,
               lambda s, r: _target(s, r, **_MATERIALIZE)),
    layer_case("LayerIntegratedGradients-grad-kwargs", "text", sa.LayerIntegratedGradients,
               ca.LayerIntegratedGradients, lambda s, r: _bl(s, r, n_steps=10, **_MATERIALIZE)),
    layer_case("LayerGradientXActivation-grad-kwargs", "mlp", sa.LayerGradientXActivation,
               ca.LayerGradientXActivation, lambda s, r: _target(s, r, **_MATERIALIZE)),
    layer_case("LayerGradientXActivation-memory-efficient", "cnn", sa.LayerGradientXActivation,
               ca.LayerGradientXActivation, _target, ours_kw={"memory_efficient": True}),
    layer_case("NeuronConductance-grad-kwargs", "mlp", sa.NeuronConductance,
               ca.NeuronConductance,
               lambda s, r: {"neuron_selector": NEURON["mlp"],
                             **_bl(s, r, n_steps=10, **_MATERIALIZE)}),
    layer_case("NeuronGradient-batch-total", "cnn", sa.NeuronGradient, ca.NeuronGradient,
               neuron_kwargs("cnn", _with_target, selector=lambda y: y[:, 1, 2:].sum())),
    layer_case("NeuronIntegratedGradients-batch-total", "mlp", sa.NeuronIntegratedGradients,
               ca.NeuronIntegratedGradients,
               neuron_kwargs("mlp", _bl, selector=lambda y: y[:, 1:3].sum(), n_steps=20)),
    layer_case("NeuronGuidedBackprop-batch-total", "cnn", sa.NeuronGuidedBackprop,
               ca.NeuronGuidedBackprop,
               neuron_kwargs("cnn", _with_target, selector=lambda y: y.sum())),
]
