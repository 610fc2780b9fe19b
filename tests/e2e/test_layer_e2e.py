"""Layer and neuron methods over the real TorchServe (REST) and the gateway (gRPC), on the
bundled models: answers equal to the engine run in process on the archived model, layer
completeness, the layers GetModelSpec lists, and the errors naming `layer.*`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from service import attribution as A
from service.client import ExplainClient, ExplainClientError
from service.runtime.loader import load_model
from service.runtime.spec import parse_spec
from tests.e2e.conftest import BUNDLED_STORE
from tests.e2e.test_serving import attributions, post, tensor_body

pytestmark = pytest.mark.e2e


def bundled(name: str):
    spec = parse_spec(yaml.safe_load((BUNDLED_STORE / name / "spec.yaml").read_text()))
    return spec, load_model(spec, BUNDLED_STORE / name)


def reference_row(name: str, k: int = 0) -> np.ndarray:
    ref = torch.load(BUNDLED_STORE / name / "reference.pt", weights_only=True)
    return ref[k].numpy().astype(np.float32)


def test_layer_integrated_gradients_on_digits_conv2(server):
    spec, model = bundled("digits")
    x = reference_row("digits", 3)  # (1, 28, 28)
    r = post(server, "explanations", "digits", tensor_body(
        x, algorithm="LayerIntegratedGradients", params={"n_steps": 64},
        baseline={"zeros": True}, layer={"name": "conv2"},
        outputs={"topFeatures": 3, "heatmap": True}))
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    assert e["attributedTo"] == "layer_output" and e["layer"] == "conv2"
    a = attributions(e)
    assert a.shape == (32, 14, 14)
    want, delta = A.LayerIntegratedGradients(model, model.conv2).attribute(
        torch.from_numpy(x)[None], target=e["target"], n_steps=64,
        return_convergence_delta=True)
    np.testing.assert_allclose(a, want[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    # completeness over the layer: sum = f(x) - f(0), the error reported is that of the engine
    assert e["approximationError"] == pytest.approx(float(delta), abs=1e-4)
    assert abs(e["approximationError"]) < 1e-2 * max(1.0, abs(e["instanceOutput"]))
    per_channel = a.astype(np.float64).reshape(32, -1).sum(1)
    assert [f["name"] for f in e["topFeatures"]] == [
        f"conv2[c={c}]" for c in np.argsort(-np.abs(per_channel))[:3]]
    assert e["heatmapPng"]


def test_neuron_method_on_breast_cancer(server):
    spec, model = bundled("breast_cancer")
    x = reference_row("breast_cancer", 1)  # (30,) standardised
    r = post(server, "explanations", "breast_cancer", tensor_body(
        x, algorithm="NeuronIntegratedGradients", params={"n_steps": 32},
        baseline={"named": "mean"}, layer={"name": "hidden2", "neuron": [7]},
        outputs={"topFeatures": 4}))
    assert r.status_code == 200, r.text
    e = r.json()["explanations"][0]
    assert e["attributedTo"] == "input" and e["layer"] == "hidden2"
    mean = torch.load(BUNDLED_STORE / "breast_cancer" / "baseline_mean.pt", weights_only=True)
    want = A.NeuronIntegratedGradients(model, model.get_submodule("net.3")).attribute(
        torch.from_numpy(x)[None], neuron_selector=7, baselines=mean, n_steps=32)
    np.testing.assert_allclose(attributions(e), want[0].detach().numpy(), rtol=1e-4, atol=1e-6)
    assert {f["name"] for f in e["topFeatures"]} <= set(spec.feature_names)
    # the neuron's index is checked against the layer's shape, (32,)
    r = post(server, "explanations", "breast_cancer", tensor_body(
        x, algorithm="NeuronIntegratedGradients", layer={"name": "hidden2", "neuron": [32]}))
    assert r.status_code == 400 and r.json()["field"] == "layer.neuron", r.text
    r = post(server, "explanations", "breast_cancer", tensor_body(
        x, algorithm="LayerConductance", layer={"name": "hidden9"}))
    assert r.status_code == 400 and r.json()["field"] == "layer.name", r.text
    assert r.json()["allowed"] == ["hidden1", "hidden2"]


def test_layer_method_over_grpc_equals_rest(server):
    x = reference_row("digits", 5)
    body = tensor_body(x, algorithm="LayerConductance", params={"n_steps": 16},
                       layer={"name": "hidden"})
    rest = post(server, "explanations", "digits", body)
    assert rest.status_code == 200, rest.text
    with ExplainClient(f"127.0.0.1:{server.ports['gateway']}", token=server.key("inference"),
                       timeout=120) as c:
        g = c.explain("digits", tensor=x, algorithm="LayerConductance", params={"n_steps": 16},
                      layer="hidden")
        spec = c.model_spec("digits")
        with pytest.raises(ExplainClientError) as err:
            c.explain("digits", tensor=x, algorithm="NeuronGradient", layer="conv2")
    (t,) = g.explanations
    assert t.attributed_to == "layer_output" and t.layer == "hidden"
    assert t.attributions.shape == (64,)
    np.testing.assert_allclose(t.attributions, attributions(rest.json()["explanations"][0]),
                               rtol=1e-5, atol=1e-7)
    assert err.value.field == "layer.neuron"
    layers = {info.name: info for info in spec.layers}
    assert spec.layers[0].name == "conv2"  # the default layer first
    assert list(layers["conv2"].output_shape) == [32, 14, 14]
    assert list(layers["conv1"].input_shape) == [1, 28, 28]
    assert list(layers["hidden"].output_shape) == [64] and layers["hidden"].module == "relu3"
    family = {a.name: a.family for a in spec.algorithms}
    assert family["LayerConductance"] == "layer" and family["NeuronGradient"] == "neuron"
