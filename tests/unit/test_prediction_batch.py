"""Predictions built for the whole batch (Responder.predictions: one host copy, one softmax,
one top-k, one conversion) against each row's prediction built alone (the row's own softmax
and top-k, as the responder built them one request at a time): the same values, bit for bit,
ties and underflowing probabilities included. And a batch of predictions through the handler:
each answer is the request's answer alone, and a bad request fails alone with a 4xx naming its
field."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from google.protobuf import json_format

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime import load_spec
from service.runtime.request import ClassScore
from service.runtime.respond import Responder
from tests.serving_fixture import tiny_image
from tests.unit.test_handler import Context, handler_module


def alone(out: torch.Tensor, classification: bool, labels: list[str]):
    """(index, label, probability, top, output) of one row (n_outputs,), built on its own."""
    logits = out.detach().double().cpu()
    probs = torch.softmax(logits, dim=0) if classification else torch.zeros_like(logits)
    order = logits.topk(min(5, logits.shape[0])).indices.tolist()

    def label(k: int) -> str:
        return labels[k] if k < len(labels) else str(k)

    p, z = probs.tolist(), logits.tolist()
    top = [ClassScore(k, label(k), p[k], z[k]) for k in order]
    return order[0], label(order[0]), p[order[0]], top, out.detach().cpu().float().numpy()


def outputs(rng: np.random.Generator, rows: int, n: int, kind: str) -> np.ndarray:
    if kind == "ties":
        return rng.integers(-2, 3, size=(rows, n)).astype(np.float64)
    if kind == "wide":  # softmax underflows to exactly 0 for some classes
        return rng.normal(size=(rows, n)) * 800
    return rng.normal(size=(rows, n)) * 5


@pytest.fixture(scope="module")
def spec(tmp_path_factory):
    return load_spec(tiny_image(tmp_path_factory.mktemp("pb")) / "spec.yaml")


@pytest.mark.parametrize("output_kind", ["classification", "regression"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_batch_predictions_equal_each_row_alone(spec, output_kind, dtype):
    s = dataclasses.replace(spec, output_kind=output_kind)
    responder = Responder(s)
    rng = np.random.default_rng(0)
    for trial in range(60):
        rows, n = int(rng.integers(1, 10)), int(rng.integers(1, 13))
        outs = torch.from_numpy(outputs(rng, rows, n, ("ties", "wide", "normal")[trial % 3]))
        outs = outs.to(dtype)
        got = responder.predictions(outs)
        assert len(got) == rows
        for row, p in zip(outs, got):
            index, label, probability, top, raw = alone(row, output_kind == "classification",
                                                        list(s.class_names))
            assert (p.index, p.label, p.probability, p.top) == (index, label, probability, top)
            assert p.output.dtype == raw.dtype and p.output.tobytes() == raw.tobytes()


# -- through the handler ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    d = tiny_image(tmp_path_factory.mktemp("pbh"), batch_size=8)
    h = handler_module().ExplainHandler()
    h.initialize(Context(d, [{}]))
    return h


def body(seed: int, **kw) -> dict:
    x = np.random.default_rng(seed).random((1, 8, 8)).astype(np.float32)
    return {"inputs": {"tensor": json_format.MessageToDict(wire.tensor_to_proto(x))}, **kw}


def predict(h, bodies: list) -> tuple[list[dict], Context]:
    ctx = Context(".", [{"explain": "false"} for _ in bodies])
    replies = h.handle([{"body": b} for b in bodies], ctx)
    assert all(isinstance(r, str) for r in replies)
    return [json.loads(r) for r in replies], ctx


def same_prediction(a: dict, b: dict) -> None:
    """Equal up to the last bits of float32 the model's batched forward pass may change."""
    pa, pz = a["prediction"], b["prediction"]
    assert (a["model"], a["modelVersion"]) == (b["model"], b["modelVersion"])
    assert [(c["index"], c["label"]) for c in pa["top"]] == [
        (c["index"], c["label"]) for c in pz["top"]]
    assert (pa["index"], pa["label"]) == (pz["index"], pz["label"])
    for ca, cb in zip(pa["top"] + [pa], pz["top"] + [pz]):
        assert ca["probability"] == pytest.approx(cb["probability"], rel=1e-5, abs=1e-7)
    out = [wire.tensor_from_proto(json_format.ParseDict(p["output"], pb.Tensor()),
                                  "output") for p in (pa, pz)]
    np.testing.assert_allclose(out[0], out[1], rtol=1e-5, atol=1e-6)


def test_a_batch_of_predictions_answers_each_as_alone_and_a_bad_one_fails_alone(handler):
    bad = {2: (body(2, target={"index": 99}), 400, "target.index"),
           5: ({"inputs": {"tensor": {"shape": [1, 8, 7], "data": "AAAA"}}}, 400,
               "inputs.tensor.data"),
           6: ({**body(6), "outputz": {}}, 400, "outputz")}
    bodies = [bad[i][0] if i in bad else body(i, requestId=f"id-{i}") for i in range(8)]
    answers, ctx = predict(handler, bodies)
    for i, a in enumerate(answers):
        if i in bad:
            _, status, field = bad[i]
            assert ctx.status[i][0] == status and a["field"] == field, (i, a)
            continue
        assert i not in ctx.status
        assert ctx.content_types[i] == "application/json"
        assert a["requestId"] == f"id-{i}"
        assert "explanations" not in a and "algorithm" not in a
        assert set(a["timings"]) == {"preprocessMs", "predictMs", "postprocessMs", "totalMs"}
        (single,), _ = predict(handler, [bodies[i]])
        same_prediction(a, single)
    # and the answers are the model's: top class and probabilities from the forward pass
    x = torch.from_numpy(np.random.default_rng(0).random((1, 1, 8, 8)).astype(np.float32))
    with torch.no_grad():
        probs = torch.softmax(handler.executor.model(x).double().reshape(-1), 0)
    assert answers[0]["prediction"]["index"] == int(probs.argmax())
    assert answers[0]["prediction"]["probability"] == pytest.approx(float(probs.max()),
                                                                     rel=1e-5)
