"""The gRPC Explainer gateway against the real TorchServe (the session ``server`` fixture starts
both): every RPC, streaming, error codes, token auth, deadlines, REST == gRPC, a locust smoke run."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from service.client import AsyncExplainClient, ExplainClient, ExplainClientError, build_request

pytestmark = pytest.mark.e2e
ROOT = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def gateway(server) -> str:
    return f"127.0.0.1:{server.ports['gateway']}"


@pytest.fixture(scope="module")
def client(server, gateway):
    with ExplainClient(gateway, token=server.key("inference"), timeout=120) as c:
        yield c


def _digit(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 28, 28), dtype=np.float32)


def _tiny(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 8, 8), dtype=np.float32)


def test_explain_predict_and_model_spec(client) -> None:
    e = client.explain("digits", tensor=_digit(), algorithm="IntegratedGradients",
                       params={"n_steps": 16})
    assert e.model == "digits" and e.algorithm == "IntegratedGradients"
    assert 0 <= e.prediction.index < 10 and e.prediction.label == str(e.prediction.index)
    (t,) = e.explanations
    assert t.target == e.prediction.index  # default target: the predicted class
    assert t.attributions.shape == (1, 28, 28)
    # completeness: the sum of IG attributions is close to f(x) - f(baseline)
    assert abs(t.attributions.sum() - (t.instance_output - t.baseline_output)) == pytest.approx(
        abs(t.approximation_error), abs=1e-4)
    p = client.predict("digits", tensor=_digit())
    assert p.prediction.index == e.prediction.index and not p.explanations
    spec = client.model_spec("digits")
    assert spec.name == "digits" and list(spec.class_names) == [str(i) for i in range(10)]
    algos = {a.name: a for a in spec.algorithms}
    assert "IntegratedGradients" in algos and spec.default_algorithm in algos
    n_steps = {p.name: p for p in algos["IntegratedGradients"].params}["n_steps"]
    assert n_steps.default_value == "32"  # the digits spec's default_params
    assert "zeros" in spec.baselines


def test_list_models_gives_every_served_model(client, server) -> None:
    names = {m.name for m in client.list_models()}
    assert set(server.models) <= names


def test_explain_stream_tags_every_response(client) -> None:
    requests = [build_request("tiny", tensor=_tiny(i), algorithm="Saliency", request_id=f"r{i}")
                for i in range(20)]
    answers = client.explain_many(requests)
    assert sorted(a.request_id for a in answers) == sorted(f"r{i}" for i in range(20))
    assert all(a.error is None for a in answers)
    by_id = {a.request_id: a for a in answers}
    single = client.explain("tiny", tensor=_tiny(3), algorithm="Saliency")
    np.testing.assert_allclose(by_id["r3"].explanations[0].attributions,
                               single.explanations[0].attributions, rtol=1e-5, atol=1e-6)


def test_explain_stream_failed_item_does_not_end_the_stream(client) -> None:
    requests = [build_request("tiny", tensor=_tiny(i), algorithm="Saliency") for i in range(4)]
    requests[2].algorithm = "NoSuchMethod"
    answers = {a.request_id: a for a in client.explain_many(requests)}
    assert len(answers) == 4  # the gateway numbered them 1..4
    assert answers["3"].error is not None and answers["3"].error.field == "algorithm"
    assert all(answers[i].error is None for i in ("1", "2", "4"))


@pytest.mark.parametrize("kwargs, status, field", [
    ({"algorithm": "NoSuchMethod"}, "INVALID_ARGUMENT", "algorithm"),
    ({"params": {"n_steps": 10_000}}, "RESOURCE_EXHAUSTED", "params.n_steps"),
    ({"params": {"n_stepz": 3}}, "INVALID_ARGUMENT", "params.n_stepz"),
    ({"target": 99}, "INVALID_ARGUMENT", "target.index"),
])
def test_errors_map_to_grpc_codes_with_the_rest_message(client, server, kwargs, status,
                                                        field) -> None:
    with pytest.raises(ExplainClientError) as info:
        client.explain("digits", tensor=_digit(), **kwargs)
    e = info.value
    assert e.status == status and e.field == field
    rest = ExplainClient(mode="rest", rest_url=server.inference_url,
                         token=server.key("inference"))
    with pytest.raises(ExplainClientError) as rest_info:
        rest.explain("digits", tensor=_digit(), **kwargs)
    assert rest_info.value.message == e.message  # one message for both transports
    assert rest_info.value.status.startswith("4")


def test_unknown_model_is_not_found(client) -> None:
    with pytest.raises(ExplainClientError) as info:
        client.explain("no_such_model", tensor=_digit())
    assert info.value.status == "NOT_FOUND" and "no_such_model" in info.value.message


def test_unknown_version_is_not_found(client) -> None:
    with pytest.raises(ExplainClientError) as info:
        client.explain("digits", tensor=_digit(), model_version="9.9")
    assert info.value.status == "NOT_FOUND" and "9.9" in info.value.message
    assert "Exception" not in info.value.message


def test_a_request_torchserve_refuses_as_too_large_is_resource_exhausted(client) -> None:
    """Above TorchServe's max_request_size (the launcher's 16 MiB) its frontend answers 413
    and closes the gateway's connection; the gateway's next call opens another."""
    with pytest.raises(ExplainClientError) as info:
        client.explain("tiny", tensor=_tiny(), request_id="x" * (17 * 2**20))
    assert info.value.status == "RESOURCE_EXHAUSTED"
    assert "max_body_bytes" in info.value.message
    assert client.explain("tiny", tensor=_tiny(), algorithm="Saliency").explanations


def test_malformed_tensor_names_its_field(client) -> None:
    req = build_request("digits", tensor=_digit())
    req.inputs.tensor.data = req.inputs.tensor.data[:-4]
    with pytest.raises(ExplainClientError) as info:
        client._unary("Explain", req, explain=True)
    assert info.value.status == "INVALID_ARGUMENT"
    assert info.value.field.startswith("inputs.tensor")


def test_missing_or_wrong_token_is_refused(gateway) -> None:
    for token in (None, "not-the-key"):
        with ExplainClient(gateway, token=token) as anonymous:
            with pytest.raises(ExplainClientError) as info:
                anonymous.explain("tiny", tensor=_tiny())
        assert info.value.status in ("UNAUTHENTICATED", "PERMISSION_DENIED")


def test_too_short_deadline_is_deadline_exceeded_and_service_stays_healthy(server, gateway,
                                                                          client) -> None:
    with ExplainClient(gateway, token=server.key("inference"), timeout=0.01) as hasty:
        with pytest.raises(ExplainClientError) as info:
            hasty.explain("digits", tensor=_digit(), params={"n_steps": 256})
    assert info.value.status == "DEADLINE_EXCEEDED"
    with grpc.insecure_channel(gateway) as ch:
        status = health_pb2_grpc.HealthStub(ch).Check(
            health_pb2.HealthCheckRequest(service="explain.v1.Explainer"), timeout=10).status
    assert status == health_pb2.HealthCheckResponse.SERVING
    assert client.explain("tiny", tensor=_tiny(), algorithm="Saliency").explanations


def test_rest_and_grpc_answers_are_equal(client, server) -> None:
    kwargs = dict(tensor=_digit(5), algorithm="DeepLift", outputs={"top_features": 4})
    via_grpc = client.explain("digits", **kwargs)
    rest = ExplainClient(mode="rest", rest_url=server.inference_url,
                         token=server.key("inference"))
    via_rest = rest.explain("digits", **kwargs)
    assert via_rest.prediction.index == via_grpc.prediction.index
    np.testing.assert_array_equal(via_rest.explanations[0].attributions,
                                  via_grpc.explanations[0].attributions)
    assert [f.name for f in via_rest.explanations[0].top_features] == \
        [f.name for f in via_grpc.explanations[0].top_features]


def test_reflection_lists_the_explainer_service(gateway) -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    with grpc.insecure_channel(gateway) as ch:
        stub = reflection_pb2_grpc.ServerReflectionStub(ch)
        reply = next(stub.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10))
    names = {s.name for s in reply.list_services_response.service}
    assert "explain.v1.Explainer" in names and "grpc.health.v1.Health" in names


def test_async_client(gateway, server) -> None:
    import asyncio

    async def go():
        async with AsyncExplainClient(gateway, token=server.key("inference")) as c:
            spec = await c.model_spec("tiny")
            results = await asyncio.gather(*(c.explain("tiny", tensor=_tiny(i),
                                                       algorithm="InputXGradient")
                                             for i in range(6)))
            return spec, results

    spec, results = asyncio.run(go())
    assert spec.name == "tiny" and len(results) == 6
    assert all(r.explanations[0].attributions.shape == (1, 8, 8) for r in results)


def test_locust_smoke_run_has_no_failures(server, gateway, tmp_path) -> None:
    env = dict(os.environ, EXPLAIN_GRPC_TARGET=gateway, EXPLAIN_TOKEN=server.key("inference"),
               EXPLAIN_MODELS="tiny,tab")
    out = tmp_path / "smoke"
    cmd = [sys.executable, "-m", "locust", "-f", str(ROOT / "loadtest" / "locustfile.py"),
           "--headless", "-u", "4", "-r", "4", "-t", "6s", "--host", server.inference_url,
           "--only-summary", "--csv", str(out), "--json-file", str(out),
           "--exit-code-on-error", "1", "RestUser", "GrpcUser"]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120,
                          cwd=str(ROOT))
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = json.loads((tmp_path / "smoke.json").read_text())
    total = sum(s["num_requests"] for s in stats)
    failures = sum(s["num_failures"] for s in stats)
    assert total > 20 and failures == 0, (total, failures)
    assert {s["method"] for s in stats} >= {"grpc", "POST"}
    assert time.monotonic() - t0 < 100
