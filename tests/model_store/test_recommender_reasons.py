"""Reasons the served recommender gives are true (service.runtime on the archived model): for
every algorithm and every named baseline of its spec, each reason cites a feature that is in the
user's input, above the baseline the attribution was measured from, and with a positive
attribution; the planted cause is among the reasons of its probes; unsigned methods give none."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service.runtime.algorithms import BaselineMode, default_table
from service.runtime.executor import Executor
from service.runtime.loader import load_model
from service.runtime.request import (
    BaselineKind,
    BaselineSpec,
    Request,
    Response,
    TabularPayload,
)
from service.runtime.spec import load_spec

from .test_recommender import served  # noqa: F401  (the module fixture)

REGISTRY = default_table()  # the server's table, built once

pytestmark = pytest.mark.slow

# Methods whose attributions say in which direction a feature moved the score.
SIGNED = ["IntegratedGradients", "InputXGradient", "DeepLift", "DeepLiftShap", "GradientShap",
          "InputBaselineXGradient", "GuidedBackprop", "Deconvolution", "FeatureAblation",
          "Occlusion", "ShapleyValueSampling", "KernelShap", "Lime"]


@pytest.fixture(scope="module")
def executor(served):  # noqa: F811
    _, _, files, planted = served
    d = files["spec.yaml"].parent
    spec = load_spec(d / "spec.yaml")
    return Executor(load_model(spec, d), spec, d), spec, d, planted


def _template_of(spec, feature: str) -> str:
    rule = next(r for r in spec.reasons if feature.startswith(r.prefix))
    return rule.template.format(name=feature[len(rule.prefix):])


def _reference(spec, d, name: str | None) -> np.ndarray:
    """The baseline row the method compared with, in model space (no scaler here): a reference
    set's mean; zeros for methods without a baseline."""
    n = len(spec.feature_names)
    if name is None or spec.baselines[name].kind == "zeros":
        return np.zeros(n)
    t = torch.load(d / spec.baselines[name].file, weights_only=True)  # (K, n)
    return t.double().reshape(t.shape[0], -1).mean(0).numpy()


def _compatible(algorithm: str, params: dict, spec) -> list[str | None]:
    mode = REGISTRY[algorithm].baseline_mode(params)
    if mode is BaselineMode.NONE:
        return [None]
    want_set = mode is BaselineMode.REFERENCE_SET
    return [n for n, b in spec.baselines.items() if (b.kind == "reference_set") == want_set
            or (want_set and REGISTRY[algorithm].min_reference_rows == 1)]


def _run(ex, planted, algorithm, params, baseline):
    b = BaselineSpec(BaselineKind.NAMED, name=baseline) if baseline else BaselineSpec()
    reqs = [Request(inputs=TabularPayload(p["features"]), explain=True, algorithm=algorithm,
                    params=dict(params), baseline=b) for p in planted["probes"]]
    outs = ex.run(reqs)
    for o in outs:
        assert isinstance(o, Response), (algorithm, baseline, o)
    return outs


def test_the_spec_offers_the_baselines_this_test_walks(executor):
    _, spec, _, _ = executor
    assert {"zeros", "mean", "reference"} <= set(spec.baselines)
    assert set(SIGNED) | {"Saliency", "NoiseTunnel"} <= set(spec.algorithms)


@pytest.mark.parametrize("algorithm", SIGNED)
def test_every_reason_is_present_above_its_baseline_and_positive(executor, algorithm):
    ex, spec, d, planted = executor
    features = spec.feature_names
    checked = 0
    for baseline in _compatible(algorithm, {}, spec):
        ref = _reference(spec, d, baseline)
        for probe, out in zip(planted["probes"], _run(ex, planted, algorithm, {}, baseline)):
            e = out.explanations[0]
            assert e.target == out.prediction.index and e.reasons_note == ""
            x = np.asarray(probe["input"], dtype=np.float64)                # (n_features,)
            attr = e.attributions.astype(np.float64).reshape(-1)            # (n_features,)
            for text in e.reasons:
                behind = [i for i, f in enumerate(features) if _template_of(spec, f) == text]
                true = [i for i in behind if x[i] != 0 and x[i] > ref[i] and attr[i] > 0]
                assert true, (algorithm, baseline, probe["cause"], text,
                              [(features[i], x[i], ref[i], attr[i]) for i in behind])
                checked += 1
            # The planted cause is present and above every baseline here, and it drives the
            # recommendation: it is among the reasons.
            assert out.prediction.label == probe["expected_recommendation"]
            assert probe["expected_reason"] in e.reasons, (algorithm, baseline, probe["cause"],
                                                           e.reasons)
    assert checked >= len(planted["probes"])


def test_a_feature_below_the_mean_baseline_gives_no_reason(executor):
    """The bug this rule fixes: against the training mean, a genre the user barely likes gets a
    positive attribution from its *absence*; it is not a reason."""
    ex, spec, d, planted = executor
    mean = _reference(spec, d, "mean")
    features = spec.feature_names
    suppressed = 0
    # Count the features with attribution > 0 that lie below the mean: there must be some (so
    # the rule is exercised), and none of them may be cited unless another feature with the
    # same reason text qualifies.
    for probe, out in zip(planted["probes"], _run(ex, planted, "IntegratedGradients", {}, "mean")):
        x = np.asarray(probe["input"], dtype=np.float64)
        attr = out.explanations[0].attributions.astype(np.float64).reshape(-1)
        for i, f in enumerate(features):
            if attr[i] > 0 and 0 < x[i] < mean[i]:
                suppressed += 1
                text = _template_of(spec, f)
                others = [j for j, g in enumerate(features) if j != i
                          and _template_of(spec, g) == text and x[j] > mean[j] and attr[j] > 0]
                if not others:
                    assert text not in out.explanations[0].reasons, (probe["cause"], f)
    assert suppressed > 0


@pytest.mark.parametrize("params", [
    {},                # |gradient|
    {"abs": False},    # a signed gradient is a sensitivity, not a contribution
])
def test_saliency_gives_no_reasons_and_says_why(executor, params):
    ex, _, _, planted = executor
    for out in _run(ex, planted, "Saliency", params, None):
        e = out.explanations[0]
        assert e.reasons == [] and "unsigned" in e.reasons_note and "Saliency" in e.reasons_note


@pytest.mark.parametrize("nt_type", ["smoothgrad_sq", "vargrad"])
def test_noise_tunnel_squared_or_variance_gives_no_reasons(executor, nt_type):
    ex, _, _, planted = executor
    outs = _run(ex, planted, "NoiseTunnel",
                {"base": "IntegratedGradients", "nt_type": nt_type, "stdevs": 0.05}, "zeros")
    for out in outs:
        e = out.explanations[0]
        assert e.reasons == [] and "NoiseTunnel" in e.reasons_note


def test_noise_tunnel_smoothgrad_over_a_signed_method_gives_true_reasons(executor):
    ex, spec, _, planted = executor
    outs = _run(ex, planted, "NoiseTunnel",
                {"base": "IntegratedGradients", "nt_type": "smoothgrad", "stdevs": 0.05}, "zeros")
    for probe, out in zip(planted["probes"], outs):
        e = out.explanations[0]
        assert e.reasons_note == "" and probe["expected_reason"] in e.reasons, probe["cause"]
