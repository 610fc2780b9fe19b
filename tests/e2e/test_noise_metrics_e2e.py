"""``noiseTunnel`` and ``outputs.metrics`` over the real TorchServe (REST) and through the gRPC
gateway: served values equal the engine's NoiseTunnel / infidelity / sensitivity_max called in
process on the same seed, and bad options are refused naming the field."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from service import attribution as A
from service.client import ExplainClient, ExplainClientError
from service.metrics import infidelity, sensitivity_max
from tests.e2e.test_serving import attributions, post, tensor_body, tiny_input
from tests.serving_fixture import load_model as load_fixture_model

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def model(sources):
    return load_fixture_model(sources["tiny"])


@pytest.fixture(scope="module")
def client(server):
    with ExplainClient(f"127.0.0.1:{server.ports['gateway']}", token=server.key("inference"),
                       timeout=120) as c:
        yield c


def _seed(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


def _smoothgrad(model, x: np.ndarray, target: int, seed: int) -> np.ndarray:
    _seed(seed)
    want = A.NoiseTunnel(A.Saliency(model)).attribute(
        torch.from_numpy(x)[None], nt_type="smoothgrad", nt_samples=6, stdevs=0.2,
        target=target, abs=True)
    return want[0].detach().numpy()


def test_noise_tunnel_over_rest_equals_the_engine(server, model):
    x = tiny_input(21)
    body = tensor_body(x, algorithm="Saliency", params={"seed": 4}, target={"index": 1},
                       noiseTunnel={"type": "smoothgrad", "samples": 6, "stdevs": 0.2})
    r = post(server, "explanations", "tiny", body)
    assert r.status_code == 200, r.text
    (e,) = r.json()["explanations"]
    np.testing.assert_allclose(attributions(e), _smoothgrad(model, x, 1, 4), rtol=1e-5,
                               atol=1e-7)
    assert r.json()["timings"]["fusedGroupSize"] == 1
    # vargrad is unsigned: no approximation error either way, magnitudes only
    body["noiseTunnel"]["type"] = "vargrad"
    r = post(server, "explanations", "tiny", body)
    assert r.status_code == 200 and (attributions(r.json()["explanations"][0]) >= 0).all()


def test_bad_noise_tunnel_is_refused_over_rest_naming_the_field(server):
    body = tensor_body(tiny_input(0), algorithm="Saliency", noiseTunnel={"type": "smooth"})
    r = post(server, "explanations", "tiny", body)
    assert r.status_code == 400
    err = r.json()
    assert err["field"] == "noiseTunnel.type"
    assert err["allowed"] == ["smoothgrad", "smoothgrad_sq", "vargrad"]
    r = post(server, "explanations", "tiny", tensor_body(tiny_input(0), algorithm="Saliency",
                                                         noiseTunnel={"samples": 1000}))
    assert r.status_code == 422 and r.json()["field"] == "noiseTunnel.samples"


def test_metrics_over_rest_equal_infidelity_and_sensitivity_max(server, model):
    x = tiny_input(22)
    body = tensor_body(x, algorithm="IntegratedGradients", params={"n_steps": 8},
                       target={"index": 0},
                       outputs={"metrics": ["infidelity", "sensitivity"], "metricSamples": 4})
    r = post(server, "explanations", "tiny", body)
    assert r.status_code == 200, r.text
    (e,) = r.json()["explanations"]
    xt = torch.from_numpy(x)[None]
    attr = torch.from_numpy(attributions(e).copy())[None]
    s = float(xt.double().std())

    def perturb(inputs):
        noise = 0.1 * s * torch.randn(inputs.shape, dtype=inputs.dtype)
        return noise, inputs - noise

    _seed(0)
    inf = infidelity(model, perturb, xt, attr, target=[0], n_perturb_samples=4)
    ig = A.IntegratedGradients(model)
    _seed(0)
    sens = sensitivity_max(lambda inp, target: ig.attribute(inp, torch.zeros(1, 1, 8, 8),
                                                            target=target, n_steps=8),
                           xt, perturb_radius=0.02 * s, n_perturb_samples=4, target=[0])
    assert e["metrics"]["infidelity"] == pytest.approx(float(inf), rel=1e-4, abs=1e-9)
    assert e["metrics"]["sensitivity"] == pytest.approx(float(sens), rel=1e-4, abs=1e-9)


def test_bad_metrics_are_refused_over_rest(server):
    x = tiny_input(0)
    r = post(server, "explanations", "tiny",
             tensor_body(x, outputs={"metrics": ["infidelity", "faithfulness"]}))
    assert r.status_code == 400
    assert r.json()["field"] == "outputs.metrics"
    assert r.json()["allowed"] == ["infidelity", "sensitivity"]
    r = post(server, "explanations", "tiny",
             tensor_body(x, outputs={"metrics": ["sensitivity"], "metricSamples": 999}))
    assert r.status_code == 422 and r.json()["field"] == "outputs.metricSamples"


def test_noise_tunnel_and_metrics_through_the_gateway(client, server, model):
    x = tiny_input(23)
    e = client.explain("tiny", tensor=x, algorithm="Saliency", params={"seed": 4}, target=1,
                       noise_tunnel={"type": "smoothgrad", "samples": 6, "stdevs": 0.2},
                       metrics=["sensitivity", "infidelity"], metric_samples=3)
    (t,) = e.explanations
    np.testing.assert_allclose(t.attributions, _smoothgrad(model, x, 1, 4), rtol=1e-5,
                               atol=1e-7)
    assert set(t.metrics) == {"infidelity", "sensitivity"}
    # the same request over REST gets the same values (one seed, one path)
    body = tensor_body(x, algorithm="Saliency", params={"seed": 4}, target={"index": 1},
                       noiseTunnel={"type": "smoothgrad", "samples": 6, "stdevs": 0.2},
                       outputs={"metrics": ["sensitivity", "infidelity"], "metricSamples": 3})
    rest = post(server, "explanations", "tiny", body).json()["explanations"][0]["metrics"]
    assert t.metrics == pytest.approx(rest, rel=1e-12)
    with pytest.raises(ExplainClientError) as err:
        client.explain("tiny", tensor=x, algorithm="Saliency", noise_tunnel="smooth")
    assert err.value.status == "INVALID_ARGUMENT" and err.value.field == "noiseTunnel.type"
    spec = client.model_spec("tiny")
    assert spec.limits["max_metric_samples"] == 16
