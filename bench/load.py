"""A bounded, thread-based load of mixed predictions and explanations over REST (TorchServe
directly) and gRPC (the gateway), for bench/chaos.py and bench/soak.py. Every call is recorded
(start time, transport, kind, model, outcome, latency); targets are the instance's 127.0.0.1
ports only. The key is re-read from key_file.json whenever the file changes (keys rotate)."""

from __future__ import annotations

import os
import random
import threading
import time
from dataclasses import dataclass

import grpc
import numpy as np
import requests
from google.protobuf import json_format

from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc
from service.client import build_request
from service.launcher import Server

# (algorithm, params, weight); None = a prediction. Only algorithms a model allows are used.
MIX = [(None, {}, 4), ("IntegratedGradients", {"n_steps": 16}, 3), ("Saliency", {}, 2),
       ("DeepLift", {}, 1), ("GradientShap", {"n_samples": 8}, 1)]
MODEL_WEIGHT = {"resnet18": 1}  # the others 3
# resnet18 (3x224x224) explanations cost ~100x the others' on 2 cores: cheap ones only.
MODEL_MIX = {"resnet18": [(None, {}, 4), ("Saliency", {}, 2),
                          ("IntegratedGradients", {"n_steps": 4}, 1)]}
# The gateway restarts within a second: reconnect quickly instead of gRPC's 1 s..120 s backoff.
CHANNEL_OPTIONS = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                   ("grpc.max_reconnect_backoff_ms", 500),
                   ("grpc.max_receive_message_length", 64 * 2**20)]

# The gateway passes the client's deadline on as the request's deadline_ms, which the handler
# refuses above its max_deadline_ms (60 s): stay below it.
GRPC_TIMEOUT_S = 45.0


@dataclass(frozen=True)
class Call:
    start: float          # time.monotonic() when sent
    transport: str        # "rest" | "grpc"
    kind: str             # "predict" | "explain"
    model: str
    algorithm: str
    ok: bool
    status: str           # HTTP status or gRPC code name
    latency_s: float
    detail: str = ""      # the refusal's message, for failures


class Keys:
    """The inference key, re-read when key_file.json changes."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self._mtime = -1.0
        self._key: str | None = None
        self._lock = threading.Lock()

    def get(self) -> str | None:
        if not self.server.auth:
            return None
        with self._lock:
            try:
                mtime = os.stat(self.server.key_file).st_mtime
                if mtime != self._mtime:
                    self._key, self._mtime = self.server.key("inference"), mtime
            except (OSError, ValueError):
                pass
            return self._key


def request_for(server: Server, model: str, algorithm: str | None, params: dict,
                rng: random.Random) -> pb.ExplainRequest:
    shape = tuple(server.models[model]["input"]["shape"])
    x = np.asarray([rng.random() for _ in range(int(np.prod(shape)))], np.float32).reshape(shape)
    return build_request(model, tensor=x, algorithm=algorithm or "", params=params or None,
                         outputs={"top_features": 5})


def pick(server: Server, models: list[str], rng: random.Random):
    model = rng.choices(models, weights=[MODEL_WEIGHT.get(m, 3) for m in models])[0]
    allowed = set(server.models[model].get("explain", {}).get("algorithms", []))
    mix = [m for m in MODEL_MIX.get(model, MIX) if m[0] is None or m[0] in allowed]
    algorithm, params, _ = rng.choices(mix, weights=[w for *_, w in mix])[0]
    return model, algorithm, params


class Sender:
    """One thread's connections: a requests session and a gRPC channel to the gateway."""

    def __init__(self, server: Server, keys: Keys, timeout: float = 120.0) -> None:
        self.server, self.keys, self.timeout = server, keys, timeout
        self.session = requests.Session()
        self.channel = grpc.insecure_channel(f"127.0.0.1:{server.ports['gateway']}",
                                             options=CHANNEL_OPTIONS)
        self.stub = pb_grpc.ExplainerStub(self.channel)

    def close(self) -> None:
        self.session.close()
        self.channel.close()

    def rest(self, request: pb.ExplainRequest, explain: bool) -> tuple[bool, str, str, bytes]:
        key = self.keys.get()
        headers = {"Content-Type": "application/json",
                   **({"Authorization": f"Bearer {key}"} if key else {})}
        path = "explanations" if explain else "predictions"
        body = json_format.MessageToJson(request, indent=None)
        try:
            r = self.session.post(f"{self.server.inference_url}/{path}/{request.model}",
                                  data=body, headers=headers, timeout=self.timeout)
        except requests.RequestException as e:
            return False, "connection", type(e).__name__, b""
        return r.status_code == 200, str(r.status_code), r.text[:200] if r.status_code != 200 \
            else "", r.content

    def grpc(self, request: pb.ExplainRequest, explain: bool) -> tuple[bool, str, str, bytes]:
        key = self.keys.get()
        metadata = (("authorization", f"Bearer {key}"),) if key else ()
        rpc = self.stub.Explain if explain else self.stub.Predict
        try:
            # wait_for_ready: a call made while the gateway restarts waits for it instead of
            # failing at once (what a production client should do); in-flight calls still fail.
            reply = rpc(request, metadata=metadata, timeout=min(self.timeout, GRPC_TIMEOUT_S),
                        wait_for_ready=True)
        except grpc.RpcError as e:
            return False, e.code().name, (e.details() or "")[:200], b""
        return True, "OK", "", reply.SerializeToString()

    def send(self, transport: str, request: pb.ExplainRequest, explain: bool
             ) -> tuple[bool, str, str, bytes]:
        return (self.rest if transport == "rest" else self.grpc)(request, explain)


class Load:
    """``concurrency`` threads sending back to back until ``stop()`` or the deadline."""

    def __init__(self, server: Server, models: list[str], concurrency: int = 8,
                 grpc_share: float = 0.5, seed: int = 0) -> None:
        self.server, self.models = server, models
        self.concurrency, self.grpc_share, self.seed = concurrency, grpc_share, seed
        self.keys = Keys(server)
        self.calls: list[Call] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def _worker(self, i: int, deadline: float) -> None:
        rng = random.Random(self.seed * 1000 + i)
        sender = Sender(self.server, self.keys)
        try:
            while not self._stop.is_set() and time.monotonic() < deadline:
                model, algorithm, params = pick(self.server, self.models, rng)
                transport = "grpc" if rng.random() < self.grpc_share else "rest"
                request = request_for(self.server, model, algorithm, params, rng)
                t0 = time.monotonic()
                ok, status, detail, _ = sender.send(transport, request, algorithm is not None)
                call = Call(t0, transport, "explain" if algorithm else "predict", model,
                            algorithm or "", ok, status, time.monotonic() - t0, detail)
                with self._lock:
                    self.calls.append(call)
        finally:
            sender.close()

    def start(self, duration_s: float) -> None:
        deadline = time.monotonic() + duration_s
        self._threads = [threading.Thread(target=self._worker, args=(i, deadline), daemon=True)
                         for i in range(self.concurrency)]
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self.join()

    def join(self) -> None:
        for t in self._threads:
            t.join()

    def snapshot(self) -> list[Call]:
        with self._lock:
            return list(self.calls)


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")
