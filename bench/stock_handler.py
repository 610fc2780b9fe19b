"""A stock-style TorchServe explain handler, the baseline of bench/service_throughput.py.

It does what TorchServe's own handlers do for explanations: one captum IntegratedGradients call
per request, one request after another, with JSON in and out. Predictions (/predictions) are
BaseHandler's: one batched forward pass, the softmax probabilities as a JSON list per request.
Like BaseHandler, it reads the kind of the batch from request 0's ``explain`` header. It reads
the same archives as our handler (spec.yaml, model.py, weights.pt) and the same protobuf-JSON
request body (tensor or tabular input, ``params.n_steps``, ``target.index``). For benchmarking
only.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os

import numpy as np
import torch
import yaml
from captum.attr import IntegratedGradients
from ts.torch_handler.base_handler import BaseHandler


class StockCaptumHandler(BaseHandler):
    def initialize(self, context) -> None:
        model_dir = context.system_properties["model_dir"]
        gpu = context.system_properties.get("gpu_id")
        self.device = torch.device(f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available()
                                   else "cpu")
        with open(os.path.join(model_dir, "spec.yaml")) as f:
            self.spec = yaml.safe_load(f)
        m = self.spec["model"]
        loader = importlib.util.spec_from_file_location("stock_model", os.path.join(model_dir, m["file"]))
        module = importlib.util.module_from_spec(loader)
        loader.loader.exec_module(module)
        self.model = getattr(module, m["class"])()
        state = torch.load(os.path.join(model_dir, m["weights"]), map_location="cpu")
        self.model.load_state_dict(state)
        self.model.to(self.device).eval()
        self.shape = tuple(self.spec["input"]["shape"])
        self.features = self.spec["input"].get("feature_names") or []
        self.ig = IntegratedGradients(self.model)
        self.initialized = True

    def _tensor(self, body: dict) -> torch.Tensor:
        inputs = body["inputs"]
        if "tensor" in inputs:
            t = inputs["tensor"]
            raw = np.frombuffer(base64.b64decode(t["data"]), dtype="<f4")
            return torch.from_numpy(raw.copy()).view(1, *self.shape)
        values = inputs["tabular"]["features"]
        return torch.tensor([[float(values.get(n, 0.0)) for n in self.features]])

    @staticmethod
    def _body(row) -> dict:
        raw = row.get("body") or row.get("data")
        return json.loads(raw) if isinstance(raw, (bytes, bytearray, str)) else raw

    def handle(self, data, context):
        if str(context.get_request_header(0, "explain")).lower() != "true":
            x = torch.cat([self._tensor(self._body(row)) for row in data]).to(self.device)
            with torch.no_grad():
                probs = torch.softmax(self.model(x), dim=1)
            return [{"probabilities": p} for p in probs.tolist()]
        out = []
        for row in data:
            body = self._body(row)
            x = self._tensor(body).to(self.device)
            n_steps = int((body.get("params") or {}).get("n_steps", 50))
            target = (body.get("target") or {}).get("index")
            if target is None:
                with torch.no_grad():
                    target = int(self.model(x).argmax(1))
            attr, delta = self.ig.attribute(x, target=target, n_steps=n_steps,
                                            return_convergence_delta=True)
            out.append({"target": target, "attributions": attr.flatten().tolist(),
                        "approximation_error": float(delta.sum())})
        return out
