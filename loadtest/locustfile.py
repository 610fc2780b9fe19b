"""Locust users for the explanation service: REST against TorchServe, gRPC against the gateway.

Headless run (what `make loadtest` does)::

    locust -f loadtest/locustfile.py --headless -u 8 -r 8 -t 20s --host http://127.0.0.1:8080 \
        --csv loadtest/results/run --json-file loadtest/results/run RestUser GrpcUser

Settings (environment): EXPLAIN_GRPC_TARGET (gateway host:port), EXPLAIN_TOKEN (inference key,
when token auth is on), EXPLAIN_MODELS (comma-separated; default digits,breast_cancer,recommender),
EXPLAIN_BENCH_MODEL / EXPLAIN_BENCH_BODY_FILE / EXPLAIN_BENCH_PATH / EXPLAIN_BENCH_CONTENT_TYPE
(BenchUser: one fixed body to one endpoint).
Every target is a loopback address given by the caller; runs are bounded by -t.
"""

from __future__ import annotations

import os
import random
import time

import grpc
import grpc.experimental.gevent as grpc_gevent
import numpy as np
from google.protobuf import json_format
from locust import FastHttpUser, User, between, task

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc
from service.client import build_request

grpc_gevent.init_gevent()

TOKEN = os.environ.get("EXPLAIN_TOKEN", "")
MODELS = [m for m in os.environ.get("EXPLAIN_MODELS", "digits,breast_cancer,recommender").split(",")
          if m]
GRPC_TARGET = os.environ.get("EXPLAIN_GRPC_TARGET", "127.0.0.1:50051")

# (algorithm, params, weight): a mix of cheap and costly explanations; None = a prediction.
MIX = [(None, {}, 4), ("IntegratedGradients", {"n_steps": 32}, 3), ("Saliency", {}, 2),
       ("DeepLift", {}, 1), ("GradientShap", {"n_samples": 8}, 1)]

_SPECS: dict[str, pb.ModelSpec] = {}


def _spec(model: str) -> pb.ModelSpec:
    """The model's spec, asked once of the gateway (GetModelSpec)."""
    if model not in _SPECS:
        with grpc.insecure_channel(GRPC_TARGET) as ch:
            _SPECS[model] = pb_grpc.ExplainerStub(ch).GetModelSpec(
                pb.GetModelSpecRequest(model=model), metadata=_metadata(), timeout=30)
    return _SPECS[model]


def _shape(model: str) -> tuple[int, ...]:
    return tuple(_spec(model).input_shape)


def _metadata() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {TOKEN}"),) if TOKEN else ()


def _request(model: str, algorithm: str | None, params: dict, rng: random.Random
             ) -> pb.ExplainRequest:
    x = np.asarray([rng.random() for _ in range(int(np.prod(_shape(model))))], dtype=np.float32)
    return build_request(model, tensor=x.reshape(_shape(model)), algorithm=algorithm or "",
                         params=params or None, outputs={"top_features": 5})


def _pick(rng: random.Random, model: str):
    """A prediction or an explanation, among the algorithms the model allows."""
    allowed = {a.name for a in _spec(model).algorithms}
    mix = [m for m in MIX if m[0] is None or m[0] in allowed]
    return rng.choices(mix, weights=[w for *_, w in mix])[0]


class RestUser(FastHttpUser):
    """POST /predictions/<model> and /explanations/<model> with protobuf-JSON bodies."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.rng = random.Random(id(self))
        self.headers = {"Content-Type": "application/json"}
        if TOKEN:
            self.headers["Authorization"] = f"Bearer {TOKEN}"

    @task
    def call(self) -> None:
        model = self.rng.choice(MODELS)
        algorithm, params, _ = _pick(self.rng, model)
        body = json_format.MessageToJson(_request(model, algorithm, params, self.rng), indent=None)
        path = "predictions" if algorithm is None else "explanations"
        self.client.post(f"/{path}/{model}", data=body, headers=self.headers,
                         name=f"REST {path} {model} {algorithm or ''}".rstrip())


class _Reporting(grpc.UnaryUnaryClientInterceptor):
    """Reports every unary call to locust as a request event (locust's own gRPC pattern)."""

    def __init__(self, environment) -> None:
        self.env = environment

    def intercept_unary_unary(self, continuation, client_call_details, request):
        start = time.perf_counter()
        response = continuation(client_call_details, request)
        exception = response.exception()
        length = 0 if exception else response.result().ByteSize()
        name = getattr(request, "model", "") + " " + (getattr(request, "algorithm", "") or "")
        self.env.events.request.fire(
            request_type="grpc", name=f"{client_call_details.method.split('/')[-1]} {name}".strip(),
            response_time=(time.perf_counter() - start) * 1000, response_length=length,
            exception=exception, context=None, response=None)
        return response


class GrpcUser(User):
    """Explain / Predict over the gateway."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        self.rng = random.Random(id(self) + 1)
        self.channel = grpc.intercept_channel(grpc.insecure_channel(GRPC_TARGET),
                                              _Reporting(self.environment))
        self.stub = pb_grpc.ExplainerStub(self.channel)

    def on_stop(self) -> None:
        self.channel.close()

    @task
    def call(self) -> None:
        model = self.rng.choice(MODELS)
        algorithm, params, _ = _pick(self.rng, model)
        request = _request(model, algorithm, params, self.rng)
        rpc = self.stub.Predict if algorithm is None else self.stub.Explain
        try:
            rpc(request, metadata=_metadata(), timeout=60)
        except grpc.RpcError:
            pass  # already reported as a failure by the interceptor


class BenchUser(FastHttpUser):
    """bench/service_throughput.py: one fixed body to one endpoint, nothing else
    (EXPLAIN_BENCH_PATH: explanations or predictions; EXPLAIN_BENCH_CONTENT_TYPE: the body's)."""

    wait_time = between(0.0, 0.0)
    abstract = not os.environ.get("EXPLAIN_BENCH_MODEL")

    def on_start(self) -> None:
        self.model = os.environ["EXPLAIN_BENCH_MODEL"]
        self.path = os.environ.get("EXPLAIN_BENCH_PATH", "explanations")
        with open(os.environ["EXPLAIN_BENCH_BODY_FILE"], "rb") as f:
            self.body = f.read()
        content_type = os.environ.get("EXPLAIN_BENCH_CONTENT_TYPE", "application/json")
        self.headers = {"Content-Type": content_type, "Accept": content_type}
        if TOKEN:
            self.headers["Authorization"] = f"Bearer {TOKEN}"

    @task
    def explain(self) -> None:
        self.client.post(f"/{self.path}/{self.model}", data=self.body, headers=self.headers,
                         name=f"{self.path} {self.model}")
