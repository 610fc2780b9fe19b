"""protobuf / protobuf-JSON <-> runtime conversions and the error mapping."""

from __future__ import annotations

import io
import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from google.protobuf import json_format
from PIL import Image

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime import (
    BaselineKind,
    ImagePayload,
    InvalidInput,
    LimitExceeded,
    ModelError,
    TabularPayload,
    TargetKind,
    TensorPayload,
    UnknownAlgorithm,
)
from service.runtime.errors import DeadlineExceeded

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_tensor_round_trip_little_endian():
    for a in (np.arange(6, dtype=np.float32).reshape(2, 3), np.arange(4, dtype=">f8"),
              np.array([1, 2], dtype=np.int64), np.array([[7]], dtype=np.uint8)):
        t = wire.tensor_to_proto(a)
        assert t.data == np.ascontiguousarray(a.astype(a.dtype.newbyteorder("<"))).tobytes()
        np.testing.assert_array_equal(wire.tensor_from_proto(t, "x"), a)
    with pytest.raises(InvalidInput, match="x.data"):
        wire.tensor_from_proto(pb.Tensor(shape=[2], dtype=pb.FLOAT32, data=b"1234"), "x")


def test_json_request_canonical_mapping():
    x = np.ones((1, 2, 2), np.float32)
    body = {
        "model": "tiny", "algorithm": "GradientShap", "params": {"n_samples": 8},
        "inputs": {"tensor": json_format.MessageToDict(wire.tensor_to_proto(x))},
        "target": {"topK": 2}, "baseline": {"referenceSet": "reference"},
        "outputs": {"topFeatures": 3, "heatmap": True, "attributions": False},
        "limits": {"max_batch_rows": 64}, "deadlineMs": 500, "requestId": "r1",
    }
    r = wire.request_from_body(json.dumps(body).encode(), explain=True, max_body_bytes=10**6)
    assert r.explain and r.algorithm == "GradientShap" and r.params == {"n_samples": 8}
    assert isinstance(r.inputs, TensorPayload)
    np.testing.assert_array_equal(r.inputs.array, x)
    assert (r.target.kind, r.target.k) == (TargetKind.TOP_K, 2)
    assert (r.baseline.kind, r.baseline.name) == (BaselineKind.REFERENCE_SET, "reference")
    assert (r.outputs.top_features, r.outputs.heatmap, r.outputs.attributions) == (3, True, False)
    assert r.outputs.reasons is True
    assert (r.max_batch_rows, r.deadline_ms, r.request_id) == (64, 500, "r1")
    # the same request, serialized, needs no JSON
    m = json_format.ParseDict(body, pb.ExplainRequest())
    r2 = wire.request_from_serialized(m.SerializeToString(), explain=False, max_body_bytes=10**6)
    assert not r2.explain and r2.target == r.target and r2.baseline == r.baseline
    tab = wire.request_from_dict({"inputs": {"tabular": {"features": {"age": 3}}}}, True)
    assert isinstance(tab.inputs, TabularPayload) and tab.inputs.features == {"age": 3.0}


def test_raw_image_body():
    buf = io.BytesIO()
    Image.new("L", (4, 4)).save(buf, format="PNG")
    r = wire.request_from_body(bytearray(buf.getvalue()), explain=True, max_body_bytes=10**6)
    assert isinstance(r.inputs, ImagePayload) and r.inputs.data == buf.getvalue()
    assert r.algorithm is None and r.target.kind is TargetKind.DEFAULT


@pytest.mark.parametrize("body, field", [
    (b'{"algorithm": 3}', "algorithm"),
    (b'{"inputs": {"tensor": {"shape": "x"}}}', "inputs.tensor.shape"),
    (b'{"nsteps": 3}', "nsteps"),
    (b"not json", "body"),
    (b"", "body"),
    (b"[1, 2]", "body"),
    # a map entry is named by its key (protobuf's message, and null / list / object values
    # caught before it)
    (b'{"inputs": {"tabular": {"features": {"mean radius": "x"}}}}',
     "inputs.tabular.features['mean radius']"),
    (b'{"inputs": {"tabular": {"features": {"a]b": "x"}}}}', "inputs.tabular.features['a]b']"),
    (b'{"inputs": {"tabular": {"features": {"age": null}}}}', "inputs.tabular.features['age']"),
    (b'{"inputs": {"tabular": {"features": {"age": [1]}}}}', "inputs.tabular.features['age']"),
    (b'{"inputs": {"tabular": {"features": {"age": {"v": 1}}}}}',
     "inputs.tabular.features['age']"),
])
def test_malformed_bodies_name_the_field(body, field):
    with pytest.raises(InvalidInput) as err:
        wire.request_from_body(body, explain=True, max_body_bytes=10**6)
    assert err.value.field == field, str(err.value)


def test_body_limit():
    with pytest.raises(LimitExceeded, match="max_body_bytes"):
        wire.request_from_body(b"{}" * 100, explain=True, max_body_bytes=10)


def test_error_mapping():
    cases = [(InvalidInput("f", "m"), 400, "INVALID_ARGUMENT"),
             (UnknownAlgorithm("algorithm", "m", ["A"]), 400, "INVALID_ARGUMENT"),
             (LimitExceeded("params.n_steps", "m"), 422, "RESOURCE_EXHAUSTED"),
             (DeadlineExceeded("deadline_ms", "m"), 504, "DEADLINE_EXCEEDED"),
             (ModelError("", "m"), 500, "INTERNAL")]
    for e, status, code in cases:
        assert (wire.http_status(e), wire.grpc_code(e)) == (status, code)
    body = json.loads(wire.error_to_json(UnknownAlgorithm("algorithm", "nope", ["A", "B"])))
    assert body == {"code": "UNKNOWN_ALGORITHM", "field": "algorithm",
                    "message": "algorithm: nope (allowed: A, B)", "allowed": ["A", "B"]}


def test_generated_stubs_are_current(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_protos.py"), str(tmp_path)],
                   check=True, capture_output=True)
    for f in (tmp_path / "explain" / "v1").glob("*_pb2*"):
        committed = ROOT / "service" / "_proto" / "explain" / "v1" / f.name
        assert committed.read_text() == f.read_text(), f"{f.name} is stale: run make protos"


def test_spec_to_proto(tmp_path):
    from service.runtime import load_spec
    from tests.serving_fixture import tiny_image

    spec = load_spec(tiny_image(tmp_path) / "spec.yaml")
    m = wire.spec_to_proto(spec)
    assert (m.name, m.input_kind, list(m.input_shape)) == ("tiny", "image", [1, 8, 8])
    algos = {a.name: a for a in m.algorithms}
    assert set(algos) == set(spec.algorithms)
    ig = {p.name: p for p in algos["IntegratedGradients"].params}  # defaults as the spec sets them
    assert ig["n_steps"].default_value == "16" and "riemann_left" in ig["method"].choices
    assert algos["GradientShap"].baselines == "reference_set"
    assert "seed" in {p.name for p in algos["GradientShap"].params}
    assert m.batch_size == 4 and m.default_baseline == "zeros"


def test_response_round_trips_through_the_proto():
    from service.runtime.request import (
        ClassScore,
        Feature,
        Prediction,
        Response,
        TargetExplanation,
        Timings,
    )

    attr = np.arange(6, dtype=np.float32).reshape(1, 2, 3)
    r = Response(
        model="m", model_version="1.0", request_id="r1", algorithm="IntegratedGradients",
        prediction=Prediction(2, "two", 0.75, [ClassScore(2, "two", 0.75, 3.5)],
                              np.array([0.1, 0.2, 3.5], dtype=np.float32)),
        explanations=[TargetExplanation(2, "two", attr, 3.5, 0.5, 0.01,
                                        [Feature("f", 1.0, 0.25)], None, ["because f"])],
        timings=Timings(explain_ms=4.0, fused_group_size=3))
    back = wire.response_from_proto(wire.response_to_proto(r))
    assert (back.model, back.request_id, back.algorithm) == ("m", "r1", "IntegratedGradients")
    assert back.prediction.top == r.prediction.top and back.prediction.label == "two"
    np.testing.assert_array_equal(back.prediction.output, r.prediction.output)
    (e,) = back.explanations
    np.testing.assert_array_equal(e.attributions, attr)
    assert (e.approximation_error, e.top_features, e.reasons) == (0.01, r.explanations[0].top_features,
                                                                  ["because f"])
    assert back.timings == r.timings


def test_non_finite_number_for_an_enum_names_the_field() -> None:
    """json_format int()s an enum's number: infinity was an OverflowError (a 500)."""
    import pytest as _pytest

    from service.runtime import InvalidInput as _InvalidInput

    for v in (float("inf"), float("-inf")):
        body = {"inputs": {"tensor": {"shape": [1], "dtype": v, "data": ""}}}
        with _pytest.raises(_InvalidInput) as e:
            wire.request_from_body(body, True)
        assert e.value.field == "inputs.tensor.dtype"


def test_unpaired_surrogate_for_an_enum_names_the_field() -> None:
    """upb's lookup of an enum name holding an unpaired surrogate (json.loads gives one for
    "\\ud800") raised SystemError: a 500 for a bad request."""
    import json as _json

    import pytest as _pytest

    from service.runtime import InvalidInput as _InvalidInput

    body = _json.loads('{"inputs": {"tensor": {"shape": [1], "dtype": "\\ud800", "data": ""}}}')
    with _pytest.raises(_InvalidInput) as e:
        wire.request_from_body(body, True)
    assert e.value.field == "inputs.tensor.dtype"


def test_unpaired_surrogate_in_a_key_names_where() -> None:
    """upb's field lookup by such a name raised SystemError (found by the fuzzer: a 500)."""
    import json as _json

    import pytest as _pytest

    from service.runtime import InvalidInput as _InvalidInput

    for text, where in (('{"\\ud800": 1, "inputs": {"image": ""}}', "body"),
                        ('{"inputs": {"tabular": {"features": {"\\udfff": 1}}}}',
                         "inputs.tabular.features")):
        with _pytest.raises(_InvalidInput) as e:
            wire.request_from_body(_json.loads(text), True)
        assert e.value.field == where
