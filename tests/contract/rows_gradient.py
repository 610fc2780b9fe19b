"""Contract rows for the gradient family."""

from __future__ import annotations

import captum.attr as ca
import torch

import service.attribution as sa

from .table import Case, distribution, extra, per_example_baselines, per_example_target

MODELS_ALL = ("linear", "mlp", "cnn", "pool", "two_input")


def _target(spec, rows):
    return {"target": per_example_target(spec, rows), **extra(spec, rows)}


def _target_bl(spec, rows, **more):
    return {"target": per_example_target(spec, rows),
            "baselines": per_example_baselines(spec, rows), **extra(spec, rows), **more}


class _CaptumDeepLiftShapPerPair:
    """DeepLiftShap as the mean of captum DeepLift over (example, baseline) pairs taken one at a
    time: the oracle where captum's batched Softmax rule would mix the pairs."""

    def __init__(self, model):
        self.model = model

    def attribute(self, inputs, baselines, target=None, return_convergence_delta=False):
        attrs, deltas = [], []
        for i in range(inputs.shape[0]):
            per_base = [ca.DeepLift(self.model).attribute(
                inputs[i:i + 1], baselines[0][j:j + 1], target=target[i],
                return_convergence_delta=True) for j in range(baselines[0].shape[0])]
            attrs.append(torch.cat([a for a, _ in per_base]).mean(0, keepdim=True))
            deltas.extend(d for _, d in per_base)
        return torch.cat(attrs), torch.cat(deltas)


def _rows_for(model: str) -> list[Case]:
    # Captum's Softmax rule for DeepLift mixes the batch; ours is per example (see deep_lift.py).
    softmax = model == "mlp"  # DeepLift's Softmax rule (captum's, per example) is not exact
    complete = not softmax
    dl_single = softmax
    # captum 0.9.0's DeepLift is wrong next to MaxPool on "cnn" (see models.CNN) and with
    # overlapping windows on "pool" (its max_unpool drops all but one of the windows sharing an
    # argmax): completeness and the hand-written rule (tests/unit/test_deeplift_oracle.py) are
    # the oracles there.
    dl_oracle = model not in ("cnn", "pool")
    return [
        Case("Saliency", model, sa.Saliency, ca.Saliency, _target),
        Case("Saliency-signed", model, sa.Saliency, ca.Saliency,
             lambda s, r: {**_target(s, r), "abs": False}),
        Case("InputXGradient", model, sa.InputXGradient, ca.InputXGradient, _target),
        Case("IntegratedGradients", model, sa.IntegratedGradients, ca.IntegratedGradients,
             lambda s, r: _target_bl(s, r, return_convergence_delta=True), completeness=5e-3),
        Case("IntegratedGradients-trapezoid-ibs", model, sa.IntegratedGradients,
             ca.IntegratedGradients,
             lambda s, r: _target_bl(s, r, method="riemann_trapezoid", n_steps=20,
                                     internal_batch_size=7)),
        Case("IntegratedGradients-left", model, sa.IntegratedGradients, ca.IntegratedGradients,
             lambda s, r: _target_bl(s, r, method="riemann_left", n_steps=10)),
        Case("IntegratedGradients-right", model, sa.IntegratedGradients, ca.IntegratedGradients,
             lambda s, r: _target_bl(s, r, method="riemann_right", n_steps=10)),
        Case("IntegratedGradients-middle-nomul", model,
             lambda m: sa.IntegratedGradients(m, multiply_by_inputs=False),
             lambda m: ca.IntegratedGradients(m, multiply_by_inputs=False),
             lambda s, r: _target_bl(s, r, method="riemann_middle", n_steps=12)),
        Case("NoiseTunnel-IG-smoothgrad", model,
             lambda m: sa.NoiseTunnel(sa.IntegratedGradients(m)),
             lambda m: ca.NoiseTunnel(ca.IntegratedGradients(m)),
             lambda s, r: _target_bl(s, r, nt_samples=4, stdevs=0.1, n_steps=8,
                                     return_convergence_delta=True), sampled=True),
        Case("NoiseTunnel-Saliency-smoothgrad_sq", model,
             lambda m: sa.NoiseTunnel(sa.Saliency(m)),
             lambda m: ca.NoiseTunnel(ca.Saliency(m)),
             lambda s, r: {**_target(s, r), "nt_type": "smoothgrad_sq", "nt_samples": 5,
                           "nt_samples_batch_size": 2, "stdevs": 0.2}, sampled=True),
        Case("NoiseTunnel-IxG-vargrad", model,
             lambda m: sa.NoiseTunnel(sa.InputXGradient(m)),
             lambda m: ca.NoiseTunnel(ca.InputXGradient(m)),
             lambda s, r: {**_target(s, r), "nt_type": "vargrad", "nt_samples": 3,
                           "stdevs": 0.3}, sampled=True),
        Case("GradientShap", model, sa.GradientShap, ca.GradientShap,
             lambda s, r: {**_target(s, r), "baselines": distribution(s), "n_samples": 6,
                           "stdevs": 0.05, "return_convergence_delta": True}, sampled=True),
        Case("DeepLift", model, sa.DeepLift, ca.DeepLift if dl_oracle else None,
             lambda s, r: _target_bl(s, r, return_convergence_delta=True),
             completeness=1e-8 if complete else None, captum_per_example=dl_single),
        Case("DeepLift-nomul", model, lambda m: sa.DeepLift(m, multiply_by_inputs=False),
             (lambda m: ca.DeepLift(m, multiply_by_inputs=False)) if dl_oracle else None,
             _target_bl,
             captum_per_example=dl_single),
        Case("DeepLiftShap", model, sa.DeepLiftShap,
             (_CaptumDeepLiftShapPerPair if softmax else ca.DeepLiftShap) if dl_oracle else None,
             lambda s, r: {**_target(s, r), "baselines": distribution(s),
                           "return_convergence_delta": True},
             completeness=1e-8 if complete else None),
        Case("GuidedBackprop", model, sa.GuidedBackprop, ca.GuidedBackprop, _target),
        Case("Deconvolution", model, sa.Deconvolution, ca.Deconvolution, _target),
    ]


ROWS: list[Case] = [case for model in MODELS_ALL for case in _rows_for(model)]
