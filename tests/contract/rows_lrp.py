"""Contract rows for LRP and LayerLRP: each rule against captum on an MLP, a CNN with
BatchNorm, MaxPool, AvgPool and AdaptiveAvgPool, a two-input model with a residual
Addition_Module, and the shared "cnn", "pool", "linear" and "two_input" models. Rules are set
the Captum way, ``module.rule = ...``, with our classes on our side and captum's on captum's."""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

import captum.attr as ca
import captum.attr._utils.lrp_rules as captum_rules

import service.attribution as sa

from . import models_lrp  # noqa: F401  (registers the LRP models)
from .table import Case, extra, per_example_target

# name -> {module path: (rule class name, keyword arguments)}
RuleSpec = dict[str, tuple[str, dict]]

RULES: dict[str, RuleSpec] = {
    "default": {},
    "epsilon": {"lin1": ("EpsilonRule", {"epsilon": 0.1}), "lin2": ("EpsilonRule", {"epsilon": 1e-3})},
    "gamma": {"lin1": ("GammaRule", {"gamma": 0.5}),
              "lin2": ("GammaRule", {"set_bias_to_zero": True})},
    "alpha_beta": {"lin1": ("Alpha1_Beta0_Rule", {}),
                   "lin2": ("Alpha1_Beta0_Rule", {"set_bias_to_zero": True})},
    "identity": {"lin2": ("IdentityRule", {})},
    "cnn_mixed": {"conv1": ("GammaRule", {"gamma": 0.25}), "bn": ("IdentityRule", {}),
                  "conv2": ("Alpha1_Beta0_Rule", {}), "fc": ("EpsilonRule", {"epsilon": 0.01})},
    "cnn_gamma": {"conv1": ("GammaRule", {}), "conv2": ("GammaRule", {"gamma": 1.0}),
                  "fc": ("GammaRule", {"set_bias_to_zero": True}), "bn": ("GammaRule", {})},
    "skip_rules": {"a": ("GammaRule", {}), "b": ("Alpha1_Beta0_Rule", {}),
                   "add": ("EpsilonRule", {"epsilon": 0.05})},
}


def _module(model, path: str):
    for part in path.split("."):
        model = getattr(model, part)
    return model


def _ruled(make: Callable, family: ModuleType, spec: RuleSpec, *layers: str) -> Callable:
    """A builder that sets ``spec``'s rules (classes from ``family``) on the model, then makes
    the attribution object (with the named layers, for LayerLRP)."""

    def build(model):
        for path, (cls, kw) in spec.items():
            _module(model, path).rule = getattr(family, cls)(**kw)
        picked = [_module(model, p) for p in layers]
        if not layers:
            return make(model)
        return make(model, picked if len(picked) > 1 else picked[0])

    return build


def _kw(**more) -> Callable:
    def kwargs(spec, rows):
        return {"target": per_example_target(spec, rows), **extra(spec, rows), **more}

    return kwargs


def lrp_case(model: str, rules: str, **opts) -> Case:
    spec = RULES[rules]
    return Case(f"LRP-{rules}", model, _ruled(sa.LRP, sa, spec),
                _ruled(ca.LRP, captum_rules, spec),
                _kw(return_convergence_delta=True), **opts)


def layer_case(model: str, rules: str, layers: tuple[str, ...], to_input: bool = False,
               **opts) -> Case:
    spec = RULES[rules]
    side = "in" if to_input else "out"
    return Case(f"LayerLRP-{rules}-{'+'.join(layers)}-{side}", model,
                _ruled(sa.LayerLRP, sa, spec, *layers),
                _ruled(ca.LayerLRP, captum_rules, spec, *layers),
                _kw(return_convergence_delta=True, attribute_to_layer_input=to_input), **opts)


TOL = {"atol": 1e-10, "rtol": 1e-8}

ROWS = [
    *(lrp_case("lrp_mlp", r, **TOL) for r in ("default", "epsilon", "gamma", "alpha_beta",
                                               "identity")),
    # epsilon 1e-9 absorbs ~1e-9 of the relevance; tests/unit/test_lrp.py checks conservation
    # with epsilon -> 0
    lrp_case("lrp_mlp_nobias", "default", completeness=1e-7, **TOL),
    *(lrp_case("lrp_cnn", r, **TOL) for r in ("default", "cnn_mixed", "cnn_gamma")),
    *(lrp_case("lrp_skip", r, **TOL) for r in ("default", "skip_rules")),
    *(lrp_case(m, "default", **TOL) for m in ("cnn", "pool", "linear", "two_input")),
    layer_case("lrp_mlp", "gamma", ("lin2",), **TOL),
    layer_case("lrp_mlp", "alpha_beta", ("lin2",), to_input=True, **TOL),
    layer_case("lrp_mlp", "epsilon", ("lin1", "lin3"), to_input=True, **TOL),
    layer_case("lrp_cnn", "cnn_mixed", ("conv2",), **TOL),
    layer_case("lrp_cnn", "default", ("conv1", "fc"), to_input=True, **TOL),
    layer_case("lrp_skip", "skip_rules", ("add",), **TOL),
    # The inputs of the two-input "add" layer: captum lists their relevances in the order its
    # backward hooks fire, not the argument order (tests/unit/test_lrp.py checks them).
]
