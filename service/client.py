"""A small typed Python client for the explanation service.

gRPC (the gateway's ``Explainer`` service) by default; REST (TorchServe's
``/explanations/<model>`` and ``/predictions/<model>``) for environments without gRPC. Sync
(``ExplainClient``) and async (``AsyncExplainClient``); answers are dataclasses holding numpy
arrays::

    from service.client import ExplainClient
    with ExplainClient("127.0.0.1:50051", token=KEY) as c:
        e = c.explain("digits", image=open("digit.png", "rb").read(), algorithm="Saliency")
        print(e.prediction.label, e.explanations[0].attributions.shape)
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc
import numpy as np
from google.protobuf import json_format

from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service._proto.explain.v1 import explain_pb2_grpc as pb_grpc
from service.runtime.request import (
    ClassScore,
    Feature,
    Prediction,
    TargetExplanation,
    TextExplanation,
)

__all__ = ["AsyncExplainClient", "ClassScore", "Explanation", "ExplainClient",
           "ExplainClientError", "Feature", "Prediction", "TargetResult", "TextExplanation",
           "build_request"]


class ExplainClientError(Exception):
    """A refused or failed call: the gRPC status name (or HTTP status), the field at fault
    and the allowed values when the server gave them."""

    def __init__(self, status: str, message: str, field: str = "", code: str = "",
                 allowed: Sequence[str] = ()) -> None:
        super().__init__(f"{status}: {message}")
        self.status, self.message, self.field, self.code = status, message, field, code
        self.allowed = tuple(allowed)


# The answer's parts are the runtime's own types (service.runtime.request), read back from the
# wire by service.wire.response_from_proto.
TargetResult = TargetExplanation


@dataclass
class Explanation:
    model: str
    model_version: str
    request_id: str
    algorithm: str
    prediction: Prediction
    explanations: list[TargetResult] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    error: ExplainClientError | None = None  # ExplainStream items only
    text: TextExplanation | None = None      # text models

    @staticmethod
    def from_proto(m: pb.ExplainResponse) -> Explanation:
        r = wire.response_from_proto(m)
        out = Explanation(model=r.model, model_version=r.model_version,
                          request_id=r.request_id, algorithm=r.algorithm,
                          prediction=r.prediction, explanations=r.explanations,
                          timings=vars(r.timings), text=r.text)
        if m.HasField("error"):
            out.error = ExplainClientError(m.error.code, m.error.message, m.error.field,
                                           m.error.code, m.error.allowed)
        return out


def build_request(model: str, *, image: bytes | None = None, tensor: np.ndarray | None = None,
                  features: Mapping[str, float] | None = None, algorithm: str = "",
                  params: Mapping[str, Any] | None = None, target: int | str | None = None,
                  top_k: int | None = None, baseline: str | float | np.ndarray | None = None,
                  outputs: Mapping[str, Any] | None = None, model_version: str = "",
                  request_id: str = "", deadline_ms: int = 0,
                  noise_tunnel: str | Mapping[str, Any] | None = None,
                  metrics: Sequence[str] | None = None, metric_samples: int = 0,
                  layer: str | None = None, neuron: Sequence[int] | None = None,
                  attribute_to_layer_input: bool = False, text: str | None = None,
                  template: str | None = None, values: Mapping[str, str] | None = None,
                  template_baselines: Mapping[str, str] | None = None,
                  target_text: str = "", max_new_tokens: int = 0) -> pb.ExplainRequest:
    """An ExplainRequest from Python values. ``target``: a class index or label (default: the
    predicted class); ``top_k``: explain the k best classes; ``baseline``: a baseline name from
    the model spec ("zeros", "mean", ...), a constant, or an explicit array. ``noise_tunnel``:
    wrap the algorithm in a noise tunnel, a type ("smoothgrad", "smoothgrad_sq", "vargrad") or
    NoiseTunnelOptions' fields (``{"type": "vargrad", "samples": 8, "stdevs": 0.1}``; the seed is
    ``params["seed"]``); ``metrics``: explanation metrics per target ("infidelity",
    "sensitivity"), with ``metric_samples`` perturbations each (0: the server's default). For
    the layer, neuron and CAM methods: ``layer`` names one of the spec's layers (default: its
    default layer; ``model_spec().layers`` lists them), ``neuron`` is the index of a neuron in
    the layer's per-example output (neuron methods), ``attribute_to_layer_input`` attributes to
    the layer's input instead. Text models: a prompt as ``text=`` or as ``template=`` with its
    ``values`` (and optional ``template_baselines``); ``target_text`` is the answer to explain
    ("" = the model's own generation of at most ``max_new_tokens`` tokens)."""
    given = [x is not None for x in (image, tensor, features, text, template)]
    if sum(given) != 1:
        raise ValueError("pass exactly one of image=, tensor=, features=, text= or template=")
    m = pb.ExplainRequest(model=model, model_version=model_version, algorithm=algorithm,
                          request_id=request_id, deadline_ms=deadline_ms)
    if image is not None:
        m.inputs.image = bytes(image)
    elif tensor is not None:
        m.inputs.tensor.CopyFrom(wire.tensor_to_proto(np.asarray(tensor)))
    elif features is not None:
        m.inputs.tabular.features.update({k: float(v) for k, v in features.items()})
    elif text is not None:
        m.inputs.text = text
    elif template is not None:
        m.inputs.template.template = template
        m.inputs.template.values.update(dict(values or {}))
        m.inputs.template.baselines.update(dict(template_baselines or {}))
    m.target_text, m.max_new_tokens = target_text, max_new_tokens
    if params:
        m.params.update(dict(params))
    if top_k is not None:
        m.target.top_k = top_k
    elif isinstance(target, bool):
        raise TypeError("target must be an int index or a str label")
    elif isinstance(target, int):
        m.target.index = target
    elif isinstance(target, str):
        m.target.label = target
    if isinstance(baseline, str):
        m.baseline.named = baseline
    elif isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        m.baseline.constant = float(baseline)
    elif baseline is not None:
        m.baseline.tensor.CopyFrom(wire.tensor_to_proto(np.asarray(baseline)))
    if outputs:
        json_format.ParseDict(dict(outputs), m.outputs)
    if isinstance(noise_tunnel, str):
        m.noise_tunnel.type = noise_tunnel
    elif noise_tunnel is not None:
        json_format.ParseDict(dict(noise_tunnel), m.noise_tunnel)
    if metrics:
        m.outputs.metrics.extend(metrics)
    if metric_samples:
        m.outputs.metric_samples = metric_samples
    if layer is not None or neuron is not None or attribute_to_layer_input:
        m.layer.name = layer or ""
        m.layer.attribute_to_layer_input = attribute_to_layer_input
        m.layer.neuron.extend(int(n) for n in (neuron or ()))
    return m


def _grpc_error(e: grpc.RpcError) -> ExplainClientError:
    trailing = dict(e.trailing_metadata() or ())
    return ExplainClientError(e.code().name, e.details() or "",
                              field=urllib.parse.unquote(trailing.get("explain-error-field", "")),
                              code=trailing.get("explain-error-code", ""))


def _channel_args(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


class ExplainClient:
    """Synchronous client. ``target`` is the gateway's host:port; with ``rest_url`` (e.g.
    ``http://127.0.0.1:8080``) and ``mode="rest"`` it talks to TorchServe's REST API instead."""

    def __init__(self, target: str = "127.0.0.1:50051", *, token: str | None = None,
                 tls_root_certs: bytes | None = None, mode: str = "grpc",
                 rest_url: str | None = None, timeout: float | None = 60.0,
                 max_message_bytes: int = 64 * 2**20) -> None:
        if mode not in ("grpc", "rest"):
            raise ValueError("mode must be 'grpc' or 'rest'")
        if mode == "rest" and not rest_url:
            raise ValueError("mode='rest' needs rest_url")
        self.mode, self.rest_url, self.timeout = mode, (rest_url or "").rstrip("/"), timeout
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.channel = None
        if mode == "grpc":
            opts = _channel_args(max_message_bytes)
            self.channel = (grpc.secure_channel(target, grpc.ssl_channel_credentials(tls_root_certs),
                                                options=opts)
                            if tls_root_certs is not None else
                            grpc.insecure_channel(target, options=opts))
            self.stub = pb_grpc.ExplainerStub(self.channel)

    def __enter__(self) -> ExplainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()

    # -- calls ------------------------------------------------------------------------------

    def explain(self, model: str, **kwargs: Any) -> Explanation:
        """Prediction and explanation; keyword arguments as ``build_request``."""
        return self._unary("Explain", build_request(model, **kwargs), explain=True)

    def predict(self, model: str, **kwargs: Any) -> Explanation:
        return self._unary("Predict", build_request(model, **kwargs), explain=False)

    def explain_many(self, requests: Sequence[pb.ExplainRequest]) -> list[Explanation]:
        """Over one ExplainStream (gRPC); answers in completion order, tagged by request_id."""
        self._need_grpc("explain_many")
        try:
            return [Explanation.from_proto(r) for r in
                    self.stub.ExplainStream(iter(requests), metadata=self.metadata,
                                            timeout=self.timeout)]
        except grpc.RpcError as e:
            raise _grpc_error(e) from None

    def model_spec(self, model: str) -> pb.ModelSpec:
        self._need_grpc("model_spec")
        try:
            return self.stub.GetModelSpec(pb.GetModelSpecRequest(model=model),
                                          metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise _grpc_error(e) from None

    def list_models(self) -> list[pb.ModelSpec]:
        self._need_grpc("list_models")
        try:
            return list(self.stub.ListModels(pb.ListModelsRequest(), metadata=self.metadata,
                                             timeout=self.timeout).models)
        except grpc.RpcError as e:
            raise _grpc_error(e) from None

    # -- transport ----------------------------------------------------------------------------

    def _need_grpc(self, what: str) -> None:
        if self.mode != "grpc":
            raise ExplainClientError("UNIMPLEMENTED", f"{what} needs the gRPC gateway")

    def _unary(self, rpc: str, request: pb.ExplainRequest, explain: bool) -> Explanation:
        if self.mode == "rest":
            return self._rest(request, explain)
        try:
            reply = getattr(self.stub, rpc)(request, metadata=self.metadata, timeout=self.timeout)
        except grpc.RpcError as e:
            raise _grpc_error(e) from None
        return Explanation.from_proto(reply)

    def _rest(self, request: pb.ExplainRequest, explain: bool) -> Explanation:
        path = "explanations" if explain else "predictions"
        body = json_format.MessageToJson(request, indent=None).encode()
        headers = {"Content-Type": "application/json", **dict(
            (k.title(), v) for k, v in self.metadata)}
        url = f"{self.rest_url}/{path}/{request.model}"
        if request.model_version:
            url += f"/{request.model_version}"
        req = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return Explanation.from_proto(wire.response_from_json(r.read()))
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                err = json.loads(raw)
            except ValueError:
                err = {"message": raw.decode("utf-8", "replace")}
            raise ExplainClientError(str(e.code), err.get("message", ""), err.get("field", ""),
                                     err.get("code", ""), err.get("allowed", ())) from None


class AsyncExplainClient:
    """asyncio client for the gateway (gRPC only)."""

    def __init__(self, target: str = "127.0.0.1:50051", *, token: str | None = None,
                 tls_root_certs: bytes | None = None, timeout: float | None = 60.0,
                 max_message_bytes: int = 64 * 2**20) -> None:
        opts = _channel_args(max_message_bytes)
        self.channel = (grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(tls_root_certs),
                                                options=opts)
                        if tls_root_certs is not None else
                        grpc.aio.insecure_channel(target, options=opts))
        self.stub = pb_grpc.ExplainerStub(self.channel)
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.timeout = timeout

    async def __aenter__(self) -> AsyncExplainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, rpc: str, request: Any) -> Any:
        try:
            return await getattr(self.stub, rpc)(request, metadata=self.metadata,
                                                 timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise _grpc_error(e) from None

    async def explain(self, model: str, **kwargs: Any) -> Explanation:
        return Explanation.from_proto(await self._call("Explain", build_request(model, **kwargs)))

    async def predict(self, model: str, **kwargs: Any) -> Explanation:
        return Explanation.from_proto(await self._call("Predict", build_request(model, **kwargs)))

    async def model_spec(self, model: str) -> pb.ModelSpec:
        return await self._call("GetModelSpec", pb.GetModelSpecRequest(model=model))

    async def list_models(self) -> list[pb.ModelSpec]:
        return list((await self._call("ListModels", pb.ListModelsRequest())).models)
