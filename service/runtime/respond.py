"""Building the response: the prediction (top classes, probabilities) and, per target, the
attributions with their check values, top features, heatmap and reasons."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from . import postprocess
from .errors import InvalidInput, ModelError
from .heatmap import heatmap_png
from .request import ClassScore, Prediction, Response, TargetExplanation
from .spec import ModelSpec
from .work import WorkItem, ms


class Responder:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.names = postprocess.feature_names(spec)

    def label(self, k: int) -> str:
        labels = self.spec.class_names
        return labels[k] if k < len(labels) else str(k)

    def prediction(self, out: Tensor) -> Prediction:
        """``out`` (n_outputs,): the top classes by logit, with softmax probabilities for a
        classifier (zeros otherwise)."""
        logits = out.detach().double().cpu()
        if self.spec.output_kind == "classification":
            probs = torch.softmax(logits, dim=0)
        else:
            probs = torch.zeros_like(logits)
        order = logits.topk(min(5, logits.shape[0])).indices.tolist()
        p, z = probs.tolist(), logits.tolist()  # one conversion each, not one per class
        best = order[0]
        return Prediction(
            index=best, label=self.label(best), probability=p[best],
            top=[ClassScore(k, self.label(k), p[k], z[k]) for k in order],
            output=out.detach().cpu().float().numpy())

    def explanations(self, i: WorkItem, logits: Tensor) -> list[TargetExplanation]:
        entry, spec, req = i.entry, self.spec, i.req
        assert entry is not None
        k_feat = (req.outputs.top_features if req.outputs.top_features is not None
                  else spec.top_k_features)
        if len(i.attributions) != len(i.targets):
            raise ModelError("algorithm", f"{entry.name} gave {len(i.attributions)} "
                             f"attributions for {len(i.targets)} targets")
        out = []
        for t, a in zip(i.targets, i.attributions):
            a_np = a.cpu().double().numpy()
            if a_np.size != math.prod(spec.input_shape) or not np.isfinite(a_np).all():
                raise InvalidInput("inputs", f"{entry.name} gave non-finite or misshapen "
                                   "attributions for this input (values too large?)")
            inst = float(logits[t])
            base = (float(i.baseline.outputs[:, t].double().mean())
                    if i.baseline is not None else 0.0)
            err = (postprocess.approximation_error(entry.name, entry.completeness, i.params,
                                                   a_np, i.x, inst - base)
                   if i.baseline is not None else None)
            if not (math.isfinite(base) and (err is None or math.isfinite(err))):
                raise InvalidInput("baseline", "the model's output on the baseline is not "
                                   "finite")
            same_shape = a_np.size == len(self.names)
            signed = postprocess.is_signed(entry.name, i.params)
            why = (postprocess.unsigned_note(entry.name)
                   if req.outputs.reasons and spec.reasons and not signed else "")
            out.append(TargetExplanation(
                target=t, label=self.label(t),
                attributions=a.cpu().float().numpy() if req.outputs.attributions else None,
                instance_output=inst, baseline_output=base, approximation_error=err,
                top_features=(postprocess.top_features(a_np, i.shown, self.names, k_feat)
                              if same_shape else []),
                heatmap_png=heatmap_png(a_np) if req.outputs.heatmap else None,
                reasons=(postprocess.reasons(a_np, i.shown, _flat(i.x), _reference(i),
                                             spec, max(k_feat, 1))
                         if req.outputs.reasons and same_shape and signed else []),
                reasons_note=why))
        return out

    def respond(self, i: WorkItem) -> Response:
        t0 = time.perf_counter()
        if i.output is None:
            raise ModelError("", "no prediction for this request")
        req = i.req
        prediction = self.prediction(i.output)
        explanations = (self.explanations(i, i.output.detach().double().cpu())
                        if req.explain else [])
        i.timings.postprocess_ms = ms(t0)
        i.timings.total_ms = (time.monotonic() - req.received_at) * 1e3
        return Response(model=self.spec.name, model_version=self.spec.version,
                        request_id=req.request_id,
                        algorithm=(i.entry.name if i.entry is not None else ""),
                        prediction=prediction, explanations=explanations, timings=i.timings)


def _flat(t: Tensor) -> np.ndarray:
    return t.detach().reshape(-1).cpu().double().numpy()


def _reference(i: WorkItem) -> np.ndarray | None:
    """The baseline the attributions were measured from, (numel,): its row, or the mean of a
    reference set's rows; None for methods without a baseline."""
    if i.baseline is None:
        return None
    b = i.baseline.tensor
    return _flat(b.reshape(b.shape[0], -1).double().mean(0))
