"""Building the response: the prediction (top classes, probabilities) and, per target, the
attributions with their check values, top features, heatmap and reasons."""

from __future__ import annotations

import math
import time

import numpy as np
import torch
from torch import Tensor

from . import layer_answer, postprocess
from .algorithms import Family
from .errors import InvalidInput, ModelError
from .heatmap import heatmap_png
from .request import ClassScore, Prediction, Response, TargetExplanation
from .spec import ModelSpec
from .work import WorkItem, ms


class Responder:
    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.names = postprocess.feature_names(spec)
        self.reasons = postprocess.has_reasons(spec)  # else reasons' inputs are not built

    def label(self, k: int) -> str:
        labels = self.spec.class_names
        return labels[k] if k < len(labels) else str(k)

    def prediction(self, out: Tensor) -> Prediction:
        """``out`` (n_outputs,): the top classes by logit, with softmax probabilities for a
        classifier (zeros otherwise)."""
        return self.predictions(out[None])[0]

    def predictions(self, outs: Tensor) -> list[Prediction]:
        """``outs`` (rows, n_outputs): each row's prediction, with one copy to the host, one
        softmax, one top-k and one conversion to Python for all the rows."""
        logits = (outs if outs.dtype == torch.float64 and outs.device.type == "cpu"
                  and not outs.requires_grad else outs.detach().double().cpu())  # (rows, n_outputs)
        if self.spec.output_kind == "classification":
            probs = torch.softmax(logits, dim=1)
        else:
            probs = torch.zeros_like(logits)
        orders = logits.topk(min(5, logits.shape[1]), dim=1).indices.tolist()  # (rows, <= 5)
        raw = logits.numpy().astype(np.float32)  # the output as float32: (rows, n_outputs)
        labels = self.spec.class_names
        n = len(labels)
        answers = []
        for row, order, p, z in zip(raw, orders, probs.tolist(), logits.tolist()):
            top = [ClassScore(k, labels[k] if k < n else str(k), p[k], z[k]) for k in order]
            best = top[0]
            answers.append(Prediction(index=best.index, label=best.label,
                                      probability=best.probability, top=top, output=row))
        return answers

    def explanations(self, i: WorkItem, logits: Tensor) -> list[TargetExplanation]:
        entry, spec, req = i.entry, self.spec, i.req
        assert entry is not None
        k_feat = (req.outputs.top_features if req.outputs.top_features is not None
                  else spec.top_k_features)
        if len(i.attributions) != len(i.targets):
            raise ModelError("algorithm", f"{entry.name} gave {len(i.attributions)} "
                             f"attributions for {len(i.targets)} targets")
        out: list[TargetExplanation] = []
        choice = i.layer
        units = choice if entry.family is Family.LAYER else None  # a layer-shaped answer
        size = math.prod(units.shape if units is not None else spec.input_shape)
        outputs = logits.tolist()  # (n_outputs,): one conversion, not one per target
        for t, a in zip(i.targets, i.attributions):
            a_np = a.cpu().double().numpy()
            if a_np.size != size or not np.isfinite(a_np).all():
                raise InvalidInput("inputs", f"{entry.name} gave non-finite or misshapen "
                                   "attributions for this input (values too large?)")
            inst = outputs[t]
            base = i.baseline.output_means[t] if i.baseline is not None else 0.0
            err = (postprocess.approximation_error(entry.name, entry.completeness, i.params,
                                                   a_np, i.x, inst - base)
                   if i.baseline is not None and i.noise is None else None)
            if not (math.isfinite(base) and (err is None or math.isfinite(err))):
                raise InvalidInput("baseline", "the model's output on the baseline is not "
                                   "finite")
            same_shape = a_np.size == len(self.names) and units is None
            nt = i.noise.type if i.noise is not None else None
            signed = postprocess.is_signed(entry.name, i.params, nt)
            why = (postprocess.unsigned_note(entry.name, nt)
                   if req.outputs.reasons and spec.reasons and not signed else "")
            if choice is not None and entry.family is not Family.CAM:
                signed = False  # reasons cite input features raising the target's score
                why = (layer_answer.no_reasons_note(entry.name, choice.info.name, units is None)
                       if req.outputs.reasons and spec.reasons else "")
            if units is not None:
                top = layer_answer.top_units(
                    a_np, i.layer_values[0] if i.layer_values else None, units, k_feat)
            else:
                top = (postprocess.top_features(a_np, i.shown, self.names, k_feat)
                       if same_shape else [])
            out.append(TargetExplanation(
                target=t, label=self.label(t),
                attributions=a.cpu().float().numpy() if req.outputs.attributions else None,
                instance_output=inst, baseline_output=base, approximation_error=err,
                top_features=top,
                heatmap_png=heatmap_png(a_np) if req.outputs.heatmap else None,
                reasons=(postprocess.reasons(a_np, i.shown, _flat(i.x), _reference(i),
                                             spec, max(k_feat, 1))
                         if req.outputs.reasons and same_shape and signed and self.reasons
                         else []),
                reasons_note=why, metrics=_finite(i.metrics[len(out)] if i.metrics else {}),
                attributed_to=units.attributed_to if units is not None else "input",
                layer=choice.info.name if choice is not None else ""))
        return out

    def respond(self, i: WorkItem) -> Response:
        """The item's Response, with the prediction built for its batch (``i.prediction``) or,
        when there is none, built here."""
        t0 = time.perf_counter()
        if i.output is None:
            raise ModelError("", "no prediction for this request")
        req = i.req
        prediction = i.prediction if i.prediction is not None else self.prediction(i.output)
        explanations = (self.explanations(i, i.output.detach().double().cpu())
                        if req.explain else [])
        i.timings.postprocess_ms += ms(t0)  # after the batch's share (predict)
        i.timings.total_ms = (time.monotonic() - req.received_at) * 1e3
        return Response(model=self.spec.name, model_version=self.spec.version,
                        request_id=req.request_id,
                        algorithm=(i.entry.name if i.entry is not None else ""),
                        prediction=prediction, explanations=explanations, timings=i.timings)


def _finite(values: dict[str, float]) -> dict[str, float]:
    bad = sorted(k for k, v in values.items() if not math.isfinite(v))
    if bad:
        raise InvalidInput("outputs.metrics", f"{bad[0]} is not finite for this input")
    return values


def _flat(t: Tensor) -> np.ndarray:
    return t.detach().reshape(-1).cpu().double().numpy()


def _reference(i: WorkItem) -> np.ndarray | None:
    """The baseline the attributions were measured from, (numel,): its row, or the mean of a
    reference set's rows; None for methods without a baseline."""
    return i.baseline.reference if i.baseline is not None else None
