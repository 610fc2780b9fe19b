"""service.wire.predjson (the prediction and explanation answers written as text) against its
oracles: protobuf's own json_format on the same Response's message, with the answer's
omissions, and convert.mapped_json (the general path), character for character, on random
predictions and explanations:
labels with quotes, backslashes, control characters and non-ASCII text, indices 0, -0.0 and
zero probabilities (fields at their default), non-finite doubles, empty and odd-shaped
outputs, byte orders."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
from google.protobuf import json_format

from service.runtime.request import (
    ClassScore,
    Feature,
    Prediction,
    Response,
    TargetExplanation,
    Timings,
)
from service.wire import convert
from service.wire.predjson import explanation_json, prediction_json

TEXT = ["", "a", "malignant", 'say "hi"', "back\\slash", "tab\there", "line\nfeed", "\x00\x1f",
        "é\u00e9 x", "日本語", "emoji \U0001f600", "\u2028sep", "</script>", "0"]
DOUBLES = [0.0, -0.0, 1.0, 0.5, 1e-320, 2.5e-7, 0.9647072238009455, -1.8039193153381348,
           1e300, -3.4e38, 123456789.125]
ODD = [math.nan, math.inf, -math.inf]
EXPLAIN_ONLY_TIMINGS = ("explainMs", "fusedGroupSize", "baselineCacheHit")


def _double(rng: random.Random, odd: bool) -> float:
    if odd and rng.random() < 0.1:
        return rng.choice(ODD)
    return rng.choice(DOUBLES) if rng.random() < 0.6 else rng.uniform(-20, 20)


def _output(rng: random.Random, odd: bool) -> np.ndarray:
    shape = rng.choice([(0,), (1,), (2,), (5,), (10,), (3, 2), ()])
    a = np.asarray(np.random.default_rng(rng.randrange(2**32)).normal(size=shape) * 10,
                   dtype=rng.choice(["<f4", ">f4"]))
    if odd and a.size and rng.random() < 0.2:
        a.reshape(-1)[0] = rng.choice(ODD)
    return a


def random_prediction(rng: random.Random, odd: bool = True) -> Response:
    top = [ClassScore(rng.choice([0, 1, 7, 42, 2**31 - 1]), rng.choice(TEXT),
                      _double(rng, odd), _double(rng, odd)) for _ in range(rng.randrange(7))]
    p = Prediction(index=rng.choice([0, 3, 9]), label=rng.choice(TEXT),
                   probability=_double(rng, odd), top=top, output=_output(rng, odd))
    t = Timings(preprocess_ms=_double(rng, False), predict_ms=_double(rng, False),
                explain_ms=_double(rng, False), postprocess_ms=_double(rng, False),
                total_ms=_double(rng, False), fused_group_size=rng.choice([0, 3]),
                baseline_cache_hit=rng.random() < 0.5)
    return Response(model=rng.choice(TEXT), model_version=rng.choice(["", "1.0", "2"]),
                    request_id=rng.choice(TEXT + ["0b6f1c2e-8d4a-4e1b-9c55-3f2a1d7e6b90"]),
                    algorithm="", prediction=p, timings=t)


def oracle(r: Response) -> str:
    """json_format's mapping of the response's message, as a prediction answer prints it."""
    d = json_format.MessageToDict(convert.response_to_proto(r),
                                  always_print_fields_with_no_presence=True)
    for k in ("algorithm", "explanations", "text", "partial", "partIndex"):  # not streamed
        d.pop(k, None)
    for k in EXPLAIN_ONLY_TIMINGS:
        d["timings"].pop(k, None)
    return json.dumps(d, ensure_ascii=False)


@pytest.mark.parametrize("seed", range(8))
def test_equal_to_json_format_and_the_general_path(seed):
    rng = random.Random(seed)
    for _ in range(300):
        r = random_prediction(rng)
        fast = prediction_json(r)
        assert fast is not None
        assert fast == oracle(r) == convert.mapped_json(r)
        assert convert.response_to_json(r) == fast


def test_finite_answers_are_json_without_extensions():
    """NaN-free predictions: strict JSON (no NaN / Infinity tokens), read back equal."""
    rng = random.Random(99)
    for _ in range(500):
        r = random_prediction(rng, odd=False)
        fast = prediction_json(r)
        assert fast is not None
        read = json.loads(fast, parse_constant=pytest.fail)  # NaN, Infinity: none
        assert read["prediction"]["index"] == r.prediction.index
        assert [c["label"] for c in read["prediction"]["top"]] == [
            c.label for c in r.prediction.top]
        assert read["prediction"]["probability"] == r.prediction.probability
        out = json_format.ParseDict(read["prediction"]["output"],
                                    convert.pb.Tensor())
        np.testing.assert_array_equal(convert.tensor_from_proto(out, "output"),
                                      r.prediction.output.astype("<f4"))


def test_what_it_does_not_write_goes_the_general_way():
    rng = random.Random(5)
    r = random_prediction(rng, odd=False)
    r.prediction.output = r.prediction.output.astype(np.float64)  # not a float32 output
    assert prediction_json(r) is None
    assert convert.response_to_json(r) == oracle(r)
    r = random_prediction(rng, odd=False)
    r.prediction.label = "lone \ud800 surrogate"  # protobuf refuses it: so must the answer
    assert prediction_json(r) is None
    with pytest.raises(UnicodeEncodeError):
        convert.response_to_json(r)
    r = random_prediction(rng, odd=False)
    r.algorithm = "IntegratedGradients"  # an explanation answer
    assert prediction_json(r) is None


def test_numpy_scalars_print_as_protobuf_prints_them():
    rng = random.Random(11)
    for _ in range(50):
        r = random_prediction(rng, odd=False)
        for c in r.prediction.top:
            kind = rng.choice([np.float64, np.float32, float])
            c.probability = kind(c.probability if abs(c.probability) < 1e38 else 0.5)
            c.index = rng.choice([np.int64, int])(c.index)
        r.prediction.probability = np.float64(r.prediction.probability)
        assert convert.response_to_json(r) == oracle(r)


# -- explanation answers

def _attributions(rng: random.Random, odd: bool) -> np.ndarray | None:
    if rng.random() < 0.1:
        return None   # outputs.attributions: false
    return _output(rng, odd)


def random_explanation(rng: random.Random, odd: bool = True) -> Response:
    r = random_prediction(rng, odd)
    r.algorithm = rng.choice(["IntegratedGradients", "Saliency", "é"])
    r.explanations = [TargetExplanation(
        target=rng.choice([0, 1, 9]), label=rng.choice(TEXT),
        attributions=_attributions(rng, odd), instance_output=_double(rng, odd),
        baseline_output=_double(rng, odd),
        approximation_error=rng.choice([None, _double(rng, odd)]),
        top_features=[Feature(rng.choice(TEXT), _double(rng, odd), _double(rng, odd))
                      for _ in range(rng.randrange(4))],
        heatmap_png=rng.choice([None, b"", b"\x89PNG\r\n\x1a\n" + bytes(range(40))]),
        reasons=[rng.choice(TEXT) for _ in range(rng.randrange(3))],
        reasons_note=rng.choice(["", "", "Saliency is unsigned"]),
        metrics=rng.choice([{}, {}, {"infidelity": _double(rng, odd)}]),
        attributed_to=rng.choice(["input", "layer_output", ""]),
        layer=rng.choice(["", "conv2"])) for _ in range(rng.randrange(1, 4))]
    return r


def explanation_oracle(r: Response) -> str:
    """json_format's mapping of the response's message, as an explanation answer prints it."""
    d = json_format.MessageToDict(convert.response_to_proto(r),
                                  always_print_fields_with_no_presence=True)
    for k in ("partial", "partIndex"):   # not streamed
        d.pop(k, None)
    for e in d["explanations"]:
        for k in ("reasonsNote", "metrics", "layer"):
            if not e.get(k):
                e.pop(k, None)
    return json.dumps(d, ensure_ascii=False)


@pytest.mark.parametrize("seed", range(8))
def test_explanations_equal_json_format_and_the_general_path(seed):
    rng = random.Random(1000 + seed)
    for _ in range(200):
        r = random_explanation(rng)
        fast = explanation_json(r)
        assert fast is not None
        assert fast == explanation_oracle(r) == convert.mapped_json(r)
        assert convert.response_to_json(r) == fast


def test_explanations_it_does_not_write_go_the_general_way():
    rng = random.Random(6)
    for change in ("float64 attributions", "two metrics", "streamed", "surrogate"):
        r = random_explanation(rng, odd=False)
        e = r.explanations[0]
        if change == "float64 attributions":
            e.attributions = np.zeros(3, dtype=np.float64)
        elif change == "two metrics":
            e.metrics = {"infidelity": 0.5, "sensitivity": 0.25}
        elif change == "streamed":
            r.partial, r.part_index = True, 1
        else:
            e.label = "lone \ud800"
        assert explanation_json(r) is None, change
        if change != "surrogate":
            got = json.loads(convert.response_to_json(r))
            assert got["explanations"][0]["target"] == e.target
