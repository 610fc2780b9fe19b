"""The TorchServe handler with a stand-in context: per-request kind, status and body, and the
serialized-protobuf input the gRPC gateway sends."""

from __future__ import annotations

import importlib.util
import inspect
import json
import pathlib

import numpy as np
import pytest
from google.protobuf import json_format

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from tests.serving_fixture import tiny_image

ROOT = pathlib.Path(__file__).resolve().parents[2]


def handler_module():
    spec = importlib.util.spec_from_file_location("explain_handler",
                                                  ROOT / "handlers" / "explain_handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Context:
    def __init__(self, model_dir, headers):
        self.system_properties = {"model_dir": str(model_dir), "gpu_id": None}
        self.headers = headers
        self.request_ids = {i: f"req-{i}" for i in range(len(headers))}
        self.status: dict[int, tuple[int, str]] = {}
        self.content_types: dict[int, str] = {}
        self.response_headers: dict[int, dict[str, str]] = {}
        self.metrics = None

    def get_request_header(self, idx, key):
        return self.headers[idx].get(key)

    def set_response_status(self, code, phrase, idx):
        self.status[idx] = (code, phrase)

    def set_response_content_type(self, idx, value):
        self.content_types[idx] = value

    def set_response_header(self, idx, key, value):
        self.response_headers.setdefault(idx, {})[key] = value


def test_handler_module_defines_one_class():
    module = handler_module()
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if c.__module__ == module.__name__]
    assert len(classes) == 1


@pytest.fixture(scope="module")
def handler(tmp_path_factory):
    d = tiny_image(tmp_path_factory.mktemp("h"))
    h = handler_module().ExplainHandler()
    h.initialize(Context(d, [{}]))
    return h, d


def body(seed: int, **kw) -> dict:
    x = np.random.default_rng(seed).random((1, 8, 8)).astype(np.float32)
    return {"inputs": {"tensor": json_format.MessageToDict(wire.tensor_to_proto(x))}, **kw}


def test_each_request_gets_its_kind_and_status(handler):
    h, d = handler
    rows = [{"body": body(0)}, {"body": json.dumps(body(1)).encode()},
            {"body": body(2, algorithm="Nope")}, {"body": bytearray(b"\x00garbage")},
            {'{"inputs": {}}': ""}]
    ctx = Context(d, [{"explain": "False"}, {"explain": "True"}, {"explain": "True"},
                      {"explain": "False"}, {"explain": "True"}])
    out = h.handle(rows, ctx)
    assert set(ctx.status) == {2, 3, 4}
    assert "Content-Type: application/json" in json.loads(out[4])["message"]
    assert ctx.status[2][0] == 400 and "\n" not in ctx.status[2][1]
    assert json.loads(out[2])["code"] == "UNKNOWN_ALGORITHM"
    assert json.loads(out[3])["field"] == "body"
    first, second = (json.loads(o) for o in out[:2])
    assert len(second["explanations"]) == 1
    # A prediction answer carries no explanation fields (empty or zero).
    assert not {"explanations", "algorithm"} & set(first)
    assert not {"explainMs", "fusedGroupSize", "baselineCacheHit"} & set(first["timings"])
    assert "reasonsNote" not in second["explanations"][0]
    assert first["requestId"] == "req-0" and ctx.content_types[0] == "application/json"


def test_serialized_request_with_explain_marker(handler):
    h, d = handler
    m = json_format.ParseDict(body(3, target={"index": 1}), pb.ExplainRequest())
    rows = [{"explain_request": bytearray(m.SerializeToString()), "explain": b"true"},
            {"explain_request": b"\xff\xff\xff"}]
    ctx = Context(d, [{}, {}])
    out = h.handle(rows, ctx)
    resp = pb.ExplainReply.FromString(out[0]).response
    assert resp.explanations[0].target == 1 and resp.explanations[0].attributions.data
    assert ctx.content_types[0] == "application/x-protobuf"
    err = pb.ExplainReply.FromString(out[1]).error
    assert ctx.status[1][0] == 400 and err.field == "explain_request"
    assert (err.http_status, err.grpc_code) == (400, "INVALID_ARGUMENT")


class HttpContext(Context):
    """TorchServe's context with the HTTP headers of each request (names in any case)."""

    def get_all_request_header(self, idx):
        return self.headers[idx]


def test_rest_protobuf_bodies_and_answers_are_negotiated(handler):
    h, d = handler
    m = json_format.ParseDict(body(4, target={"index": 1}), pb.ExplainRequest())
    raw = m.SerializeToString()
    rows = [{"body": bytearray(raw)}, {"body": raw}, {"body": body(4, target={"index": 1})},
            {"body": b"\xff\xff\xff"}, {"body": body(5, algorithm="Nope")}]
    proto, as_json = {"Content-Type": "application/x-protobuf"}, {"Content-Type": "application/json"}
    ctx = HttpContext(d, [{"explain": "True", **proto},
                          {"explain": "True", **proto, "accept": "application/json"},
                          {"explain": "True", **as_json, "Accept": "application/x-protobuf"},
                          {"explain": "True", "content-type": "application/x-protobuf"},
                          {"explain": "True", **as_json, "Accept": "application/x-protobuf"}])
    out = h.handle(rows, ctx)
    binary = pb.ExplainResponse.FromString(out[0])
    same = json_format.Parse(out[1], pb.ExplainResponse())
    from_json = pb.ExplainResponse.FromString(out[2])
    assert [ctx.content_types[i] for i in range(5)] == [
        "application/x-protobuf", "application/json", "application/x-protobuf",
        "application/x-protobuf", "application/x-protobuf"]
    assert not binary.HasField("error") and binary.explanations[0].target == 1
    for other in (same, from_json):  # one request, three encodings: the same attributions
        assert other.explanations[0].attributions.data == binary.explanations[0].attributions.data
        assert other.prediction.output == binary.prediction.output
    bad = pb.ExplainResponse.FromString(out[3])
    assert ctx.status[3][0] == 400 and bad.error.field == "body"
    unknown = pb.ExplainResponse.FromString(out[4])
    assert ctx.status[4][0] == 400 and unknown.error.code == "UNKNOWN_ALGORITHM"
    assert set(ctx.status) == {3, 4}


class _Metrics:
    """What the handler calls on TorchServe's metrics cache, recorded."""

    def __init__(self):
        self.calls: list[tuple[str, object, tuple]] = []

    def _add(self, name, value, dimensions=()):
        self.calls.append((name, value, tuple(d.value for d in dimensions or ())))

    def add_time(self, name, value, dimensions=()):
        self._add(name, value, dimensions)

    def add_metric(self, name, value, unit, dimensions=()):
        self._add(name, value, dimensions)

    def add_percent(self, name, value, dimensions=()):
        self._add(name, value, dimensions)


def test_metrics_are_written_once_per_fused_group_and_the_cache_at_most_once_a_second(handler):
    """Each metric is a log line TorchServe's frontend parses: a group's members share its
    latency and size, so one line per group; the cache's figures are cumulative."""
    h, d = handler
    rows = ([{"body": body(i, algorithm="Saliency")} for i in range(5)]
            + [{"body": body(9 + i, algorithm="IntegratedGradients",
                             params={"n_steps": 4})} for i in range(3)])
    ctx = Context(d, [{"explain": "true"}] * len(rows))
    ctx.metrics = _Metrics()
    h._cache_metrics_at = float("-inf")
    out = [json.loads(o) for o in h.handle(rows, ctx)]
    assert all("explanations" in o for o in out)
    names = [c[0] for c in ctx.metrics.calls]
    latency = {c[2]: c[1] for c in ctx.metrics.calls if c[0] == "ExplainLatency"}
    assert names.count("ExplainLatency") == 2 and set(latency) == {("Saliency",),
                                                                   ("IntegratedGradients",)}
    sizes = sorted(c[1] for c in ctx.metrics.calls if c[0] == "FusedGroupSize")
    assert sizes == [3, 5]
    assert names.count("BaselineCacheHitRate") == 1
    ctx.metrics = _Metrics()   # a batch right after: the groups again, not the cache
    h.handle(rows, ctx)
    assert [c[0] for c in ctx.metrics.calls].count("ExplainLatency") == 2
    assert "BaselineCacheHitRate" not in [c[0] for c in ctx.metrics.calls]
