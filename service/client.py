"""A small typed Python client for the explanation service.

gRPC (the gateway's ``Explainer`` service) by default; REST (TorchServe's
``/explanations/<model>`` and ``/predictions/<model>``) for environments without gRPC. Sync
(``ExplainClient``) and async (``AsyncExplainClient``); answers are dataclasses holding numpy
arrays::

    from service.client import ExplainClient
    with ExplainClient("127.0.0.1:50051", key_file="run/default/key_file.json") as c:
        e = c.explain("digits", image=open("digit.png", "rb").read(), algorithm="Saliency")
        print(e.prediction.label, e.explanations[0].attributions.shape)

The token is either fixed (``token=``) or TorchServe's inference key read from its
``key_file.json`` (``key_file=``): the launcher's supervisor renews the keys before they expire
and the replaced key is refused at once, so a client given the file re-reads it when the file
changes and, when the service refuses its key (gRPC PERMISSION_DENIED / UNAUTHENTICATED, HTTP
401/403 or TorchServe's 400 ``InvalidKeyException``), re-reads it and retries the call once if
the key changed.
"""

from __future__ import annotations

import json
import os
import pathlib
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

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


T = TypeVar("T")

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
    partial: bool = False   # explain_stream: one part (text.token_attr's rows from
    part_index: int = 0     # text.token_row_offset), not the answer; 0, 1, ... in order

    @staticmethod
    def from_proto(m: pb.ExplainResponse) -> Explanation:
        r = wire.response_from_proto(m)
        out = Explanation(model=r.model, model_version=r.model_version,
                          request_id=r.request_id, algorithm=r.algorithm,
                          prediction=r.prediction, explanations=r.explanations,
                          timings=vars(r.timings), text=r.text, partial=r.partial,
                          part_index=r.part_index)
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
                  target_text: str = "", max_new_tokens: int = 0, stream_tokens: bool = False,
                  stream_part_tokens: int = 0) -> pb.ExplainRequest:
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
    ("" = the model's own generation of at most ``max_new_tokens`` tokens); ``stream_tokens``
    asks for the token rows in parts of ``stream_part_tokens`` tokens (``explain_stream``)."""
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
    m.stream_tokens, m.stream_part_tokens = stream_tokens, stream_part_tokens
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


_AUTH_CODES = (grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED)
_AUTH_NAMES = tuple(c.name for c in _AUTH_CODES)
_AUTH_HTTP = (400, 401, 403)  # TorchServe answers a refused key with 400 InvalidKeyException


class _Token:
    """The bearer token: fixed, or the ``inference`` key of TorchServe's key_file.json, re-read
    when the file's mtime or size changes and on ``refresh()``."""

    def __init__(self, token: str | None, key_file: str | os.PathLike | None) -> None:
        if token is not None and key_file is not None:
            raise ValueError("pass token= or key_file=, not both")
        self.key_file = pathlib.Path(key_file) if key_file is not None else None
        self._token = token
        self._stamp: tuple[int, int] | None = None
        self._lock = threading.Lock()
        if self.key_file is not None:
            self.refresh()

    def _read(self) -> None:
        assert self.key_file is not None
        st = os.stat(self.key_file)
        entry = json.loads(self.key_file.read_text()).get("inference", {})
        key = entry.get("key") if isinstance(entry, dict) else entry
        if not isinstance(key, str) or not key:
            raise ValueError(f"{self.key_file} has no inference key")
        self._token, self._stamp = key, (st.st_mtime_ns, st.st_size)

    def refresh(self) -> bool:
        """Re-reads the key file; True when it now holds another key. Raises OSError/ValueError
        when it cannot be read at construction; later a file being rewritten keeps the old key."""
        if self.key_file is None:
            return False
        with self._lock:
            before = self._token
            try:
                self._read()
            except (OSError, ValueError):
                if before is None:
                    raise
                return False
            return self._token != before

    def current(self) -> str | None:
        if self.key_file is not None:
            try:
                st = os.stat(self.key_file)
                if (st.st_mtime_ns, st.st_size) != self._stamp:
                    self.refresh()
            except OSError:
                pass
        return self._token

    def metadata(self) -> tuple[tuple[str, str], ...]:
        token = self.current()
        return (("authorization", f"Bearer {token}"),) if token else ()

    def retry_after_grpc(self, e: grpc.RpcError) -> bool:
        """A refused key and the key file now holds another one: worth one retry."""
        return e.code() in _AUTH_CODES and self.refresh()

    def retry_after_http(self, status: int, err: Mapping[str, Any]) -> bool:
        refused = status in (401, 403) or (status == 400 and
                                            err.get("type") == "InvalidKeyException")
        return refused and self.refresh()


def _grpc_error(e: grpc.RpcError) -> ExplainClientError:
    trailing = dict(e.trailing_metadata() or ())
    return ExplainClientError(e.code().name, e.details() or "",
                              field=urllib.parse.unquote(trailing.get("explain-error-field", "")),
                              code=trailing.get("explain-error-code", ""))


def _item_error(e: pb.Error) -> ExplainClientError:
    """A failed ExplainStream item as the error a unary call raises (status: the gRPC code)."""
    return ExplainClientError(e.grpc_code or e.code, e.message, e.field, e.code, e.allowed)


def _channel_args(max_message_bytes: int) -> list[tuple[str, int]]:
    return [("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes)]


class ExplainClient:
    """Synchronous client. ``target`` is the gateway's host:port; with ``rest_url`` (e.g.
    ``http://127.0.0.1:8080``) and ``mode="rest"`` it talks to TorchServe's REST API instead.
    ``token``: a fixed inference key; ``key_file``: TorchServe's key_file.json, re-read as the
    keys rotate (see the module's docstring)."""

    def __init__(self, target: str = "127.0.0.1:50051", *, token: str | None = None,
                 key_file: str | os.PathLike | None = None,
                 tls_root_certs: bytes | None = None, mode: str = "grpc",
                 rest_url: str | None = None, timeout: float | None = 60.0,
                 max_message_bytes: int = 64 * 2**20) -> None:
        if mode not in ("grpc", "rest"):
            raise ValueError("mode must be 'grpc' or 'rest'")
        if mode == "rest" and not rest_url:
            raise ValueError("mode='rest' needs rest_url")
        self.mode, self.rest_url, self.timeout = mode, (rest_url or "").rstrip("/"), timeout
        self._token = _Token(token, key_file)
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

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        """The gRPC metadata sent with each call (the current key)."""
        return self._token.metadata()

    # -- calls ------------------------------------------------------------------------------

    def explain(self, model: str, **kwargs: Any) -> Explanation:
        """Prediction and explanation; keyword arguments as ``build_request``."""
        return self._unary("Explain", build_request(model, **kwargs), explain=True)

    def predict(self, model: str, **kwargs: Any) -> Explanation:
        return self._unary("Predict", build_request(model, **kwargs), explain=False)

    def explain_many(self, requests: Sequence[pb.ExplainRequest]) -> list[Explanation]:
        """Over one ExplainStream (gRPC); answers in completion order, tagged by request_id
        (the gateway numbers requests without one from 1). Requests refused for their key are
        sent once more, in a second stream, when the key file holds a new key."""
        self._need_grpc("explain_many")
        requests = list(requests)
        answers = self._call(lambda md: list(self.stub.ExplainStream(
            iter(requests), metadata=md, timeout=self.timeout)))
        refused = {r.request_id for r in answers
                   if r.HasField("error") and r.error.code in ("PERMISSION_DENIED",
                                                               "UNAUTHENTICATED")}
        if refused and self._token.refresh():
            again = []
            for n, req in enumerate(requests, 1):
                rid = req.request_id or str(n)
                if rid in refused:
                    copy = pb.ExplainRequest()
                    copy.CopyFrom(req)
                    copy.request_id = rid
                    again.append(copy)
            answers = [r for r in answers if r.request_id not in refused] + self._call(
                lambda md: list(self.stub.ExplainStream(iter(again), metadata=md,
                                                        timeout=self.timeout)))
        return [Explanation.from_proto(r) for r in answers]

    def explain_stream(self, model: str, part_tokens: int = 0,
                       **kwargs: Any) -> Iterator[Explanation]:
        """A text model's explanation in parts, as the server computes them: partial
        Explanations (``partial``; ``text.token_attr`` holds ``part_tokens`` rows from
        ``text.token_row_offset``; 0 = the server's choice), then the complete answer (the
        same as ``explain`` gives). gRPC: one ExplainStream call; REST: newline-delimited JSON
        from /explanations. A refused or failed request raises ExplainClientError (also after
        some parts). Keyword arguments as ``build_request``."""
        request = build_request(model, stream_tokens=True, stream_part_tokens=part_tokens,
                                **kwargs)
        if self.mode == "rest":
            yield from self._rest_lines(request)
            return
        for attempt in (1, 2):
            call = self.stub.ExplainStream(iter([request]), metadata=self._token.metadata(),
                                           timeout=self.timeout)
            try:
                for n, m in enumerate(call):
                    if m.HasField("error"):
                        if n == 0 and attempt == 1 and m.error.code in _AUTH_NAMES \
                                and self._token.refresh():
                            break    # refused for its key: once more with the new key
                        raise _item_error(m.error)
                    yield Explanation.from_proto(m)
                else:
                    return
            except grpc.RpcError as e:
                raise _grpc_error(e) from None
            finally:
                call.cancel()   # a caller that stops early cancels the call (no-op once done)

    def model_spec(self, model: str) -> pb.ModelSpec:
        self._need_grpc("model_spec")
        return self._call(lambda md: self.stub.GetModelSpec(
            pb.GetModelSpecRequest(model=model), metadata=md, timeout=self.timeout))

    def list_models(self) -> list[pb.ModelSpec]:
        self._need_grpc("list_models")
        return list(self._call(lambda md: self.stub.ListModels(
            pb.ListModelsRequest(), metadata=md, timeout=self.timeout)).models)

    # -- transport ----------------------------------------------------------------------------

    def _need_grpc(self, what: str) -> None:
        if self.mode != "grpc":
            raise ExplainClientError("UNIMPLEMENTED", f"{what} needs the gRPC gateway")

    def _call(self, rpc: Callable[[tuple[tuple[str, str], ...]], T]) -> T:
        """``rpc(metadata)``, once more with the new key if the first was refused for its key
        and the key file changed meanwhile."""
        try:
            try:
                return rpc(self._token.metadata())
            except grpc.RpcError as e:
                if not self._token.retry_after_grpc(e):
                    raise
            return rpc(self._token.metadata())
        except grpc.RpcError as e:
            raise _grpc_error(e) from None

    def _unary(self, rpc: str, request: pb.ExplainRequest, explain: bool) -> Explanation:
        if self.mode == "rest":
            return self._rest(request, explain)
        stub = getattr(self.stub, rpc)
        return Explanation.from_proto(self._call(
            lambda md: stub(request, metadata=md, timeout=self.timeout)))

    def _rest(self, request: pb.ExplainRequest, explain: bool) -> Explanation:
        with self._post(request, explain) as r:
            return Explanation.from_proto(wire.response_from_json(r.read()))

    def _rest_lines(self, request: pb.ExplainRequest) -> Iterator[Explanation]:
        """A streamed REST answer: one ExplainResponse JSON per line (chunked HTTP), the last
        the answer; a line carrying ``error`` raises."""
        with self._post(request, True) as r:
            for line in r:
                if not line.strip():
                    continue
                item = json.loads(line)
                if "error" in item:
                    err = item["error"]
                    raise ExplainClientError(err.get("grpcCode", "") or str(err.get(
                        "httpStatus", "")), err.get("message", ""), err.get("field", ""),
                        err.get("code", ""), err.get("allowed", ()))
                yield Explanation.from_proto(wire.response_from_json(line))

    def _post(self, request: pb.ExplainRequest, explain: bool) -> Any:
        """The open HTTP response to the request's POST (an error status raises
        ExplainClientError; once more with the new key after a refused one)."""
        path = "explanations" if explain else "predictions"
        body = json_format.MessageToJson(request, indent=None).encode()
        url = f"{self.rest_url}/{path}/{request.model}"
        if request.model_version:
            url += f"/{request.model_version}"
        for attempt in (1, 2):
            headers = {"Content-Type": "application/json",
                       **{k.title(): v for k, v in self._token.metadata()}}
            req = urllib.request.Request(url, data=body, headers=headers, method="POST")
            try:
                return urllib.request.urlopen(req, timeout=self.timeout)
            except urllib.error.HTTPError as e:
                raw = e.read()
                try:
                    err = json.loads(raw)
                except ValueError:
                    err = {"message": raw.decode("utf-8", "replace")}
                if not isinstance(err, dict):
                    err = {"message": str(err)}
                if attempt == 1 and self._token.retry_after_http(e.code, err):
                    continue
                raise ExplainClientError(str(e.code), err.get("message", ""),
                                         err.get("field", ""), err.get("code", ""),
                                         err.get("allowed", ())) from None
        raise AssertionError("unreachable")  # the second attempt returns or raises


class AsyncExplainClient:
    """asyncio client for the gateway (gRPC only)."""

    def __init__(self, target: str = "127.0.0.1:50051", *, token: str | None = None,
                 key_file: str | os.PathLike | None = None,
                 tls_root_certs: bytes | None = None, timeout: float | None = 60.0,
                 max_message_bytes: int = 64 * 2**20) -> None:
        self._token = _Token(token, key_file)
        opts = _channel_args(max_message_bytes)
        self.channel = (grpc.aio.secure_channel(target, grpc.ssl_channel_credentials(tls_root_certs),
                                                options=opts)
                        if tls_root_certs is not None else
                        grpc.aio.insecure_channel(target, options=opts))
        self.stub = pb_grpc.ExplainerStub(self.channel)
        self.timeout = timeout

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return self._token.metadata()

    async def __aenter__(self) -> AsyncExplainClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.channel.close()

    async def _call(self, rpc: str, request: Any) -> Any:
        stub = getattr(self.stub, rpc)
        try:
            try:
                return await stub(request, metadata=self._token.metadata(), timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                if not self._token.retry_after_grpc(e):
                    raise
            return await stub(request, metadata=self._token.metadata(), timeout=self.timeout)
        except grpc.aio.AioRpcError as e:
            raise _grpc_error(e) from None

    async def explain(self, model: str, **kwargs: Any) -> Explanation:
        return Explanation.from_proto(await self._call("Explain", build_request(model, **kwargs)))

    async def predict(self, model: str, **kwargs: Any) -> Explanation:
        return Explanation.from_proto(await self._call("Predict", build_request(model, **kwargs)))

    async def explain_stream(self, model: str, part_tokens: int = 0,
                             **kwargs: Any) -> AsyncIterator[Explanation]:
        """``ExplainClient.explain_stream`` over one ExplainStream call: the partial
        Explanations as they come, then the answer; an error raises ExplainClientError."""
        request = build_request(model, stream_tokens=True, stream_part_tokens=part_tokens,
                                **kwargs)
        call = self.stub.ExplainStream(iter([request]), metadata=self._token.metadata(),
                                       timeout=self.timeout)
        try:
            async for m in call:
                if m.HasField("error"):
                    raise _item_error(m.error)
                yield Explanation.from_proto(m)
        except grpc.aio.AioRpcError as e:
            raise _grpc_error(e) from None

    async def model_spec(self, model: str) -> pb.ModelSpec:
        return await self._call("GetModelSpec", pb.GetModelSpecRequest(model=model))

    async def list_models(self) -> list[pb.ModelSpec]:
        return list((await self._call("ListModels", pb.ListModelsRequest())).models)
