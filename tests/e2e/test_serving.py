"""End-to-end: the real TorchServe with the handler, checked on real answers and error paths."""

from __future__ import annotations

import base64
import io
import json
import pathlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
import torch
import yaml
from PIL import Image

from service import wire
from service.attribution import IntegratedGradients
from service.runtime import default_table
from service.runtime.loader import load_model
from service.runtime.spec import parse_spec
from tests.e2e.conftest import BUNDLED_STORE, CLASSIFIERS
from tests.serving_fixture import load_model as load_fixture_model

pytestmark = pytest.mark.e2e


def post(server, kind: str, model: str, body, auth: bool = True, timeout: float = 120):
    headers = server.headers() if auth else {}
    if isinstance(body, (bytes, bytearray)):
        return requests.put(f"{server.inference_url}/{kind}/{model}", data=body,
                            headers=headers, timeout=timeout)
    return requests.post(f"{server.inference_url}/{kind}/{model}", json=body, headers=headers,
                         timeout=timeout)


def tensor_body(x: np.ndarray, **kw) -> dict:
    from google.protobuf import json_format

    return {"inputs": {"tensor": json_format.MessageToDict(wire.tensor_to_proto(x))}, **kw}


def attributions(expl: dict) -> np.ndarray:
    t = expl["attributions"]
    return np.frombuffer(base64.b64decode(t["data"]), "<f4").reshape([int(s) for s in t["shape"]])


def png(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def tiny_input(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 8, 8)).astype(np.float32)


# -- real answers ------------------------------------------------------------------------------

def test_explanation_equals_engine_in_process(server, sources):
    model = load_fixture_model(sources["tiny"])
    x = tiny_input(0)
    r = post(server, "explanations", "tiny", tensor_body(x, params={"n_steps": 24},
                                                          target={"topK": 2}))
    assert r.status_code == 200, r.text
    body = r.json()
    logits = model(torch.from_numpy(x)[None])[0].detach()
    assert body["prediction"].get("index", 0) == int(logits.argmax())
    assert [e.get("target", 0) for e in body["explanations"]] == logits.topk(2).indices.tolist()
    ig = IntegratedGradients(model)
    for e in body["explanations"]:
        want, delta = ig.attribute(torch.from_numpy(x)[None], target=e.get("target", 0),
                                   n_steps=24, return_convergence_delta=True)
        np.testing.assert_allclose(attributions(e), want[0].detach().numpy(), rtol=1e-4,
                                   atol=1e-6)
        assert e["approximationError"] == pytest.approx(float(delta), abs=1e-4)


@pytest.mark.parametrize("model", CLASSIFIERS)   # tinylm: test_text_e2e.py
def test_bundled_model_predicts_and_explains(server, model):
    spec = parse_spec(yaml.safe_load((BUNDLED_STORE / model / "spec.yaml").read_text()))
    ref = torch.load(BUNDLED_STORE / model / "reference.pt", weights_only=True)
    x = ref[:1].numpy().astype(np.float32)
    net = load_model(spec, BUNDLED_STORE / model)
    want_logits = net(torch.from_numpy(x)).detach()[0]
    p = post(server, "predictions", model, tensor_body(x))
    assert p.status_code == 200, p.text
    pred = p.json()["prediction"]
    assert pred.get("index", 0) == int(want_logits.argmax())
    assert pred["label"] == spec.class_names[int(want_logits.argmax())]
    assert not {"explanations", "algorithm"} & set(p.json())
    params = {"n_steps": 8} if model == "resnet18" else {}
    e = post(server, "explanations", model, tensor_body(x, params=params,
                                                         outputs={"topFeatures": 3}))
    assert e.status_code == 200, e.text
    ex = e.json()["explanations"][0]
    a = attributions(ex)
    assert a.shape == tuple(spec.input_shape) and np.isfinite(a).all()
    assert abs(ex["approximationError"]) < 0.1 * max(1.0, abs(ex["instanceOutput"]))
    assert len(ex["topFeatures"]) == 3
    if spec.input_kind.value == "tabular":
        assert {f["name"] for f in ex["topFeatures"]} <= set(spec.feature_names)


def test_raw_image_body_gets_model_defaults(server):
    digits = torch.load(BUNDLED_STORE / "digits" / "reference.pt", weights_only=True)
    pixels = (digits[0, 0].numpy() * 255).round()
    r = post(server, "explanations", "digits", png(pixels))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["algorithm"] == "IntegratedGradients" and len(body["explanations"]) == 1
    assert body["explanations"][0].get("target", 0) == body["prediction"].get("index", 0)


def test_recommender_reasons_recover_planted_effects(server):
    planted = json.loads((BUNDLED_STORE / "recommender" / "planted.json").read_text())
    assert planted["probes"]
    for probe in planted["probes"]:
        r = post(server, "explanations", "recommender",
                 {"inputs": {"tabular": {"features": probe["features"]}},
                  "outputs": {"attributions": False}})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["prediction"]["label"] == probe["expected_recommendation"], probe["cause"]
        ex = body["explanations"][0]
        assert ex["reasons"][0] == probe["expected_reason"], (probe["cause"], ex["reasons"])
        assert ex["topFeatures"][0]["name"] == probe["cause"]


def test_every_registered_algorithm_is_reachable(server):
    x = tiny_input(1)
    table = default_table()
    for name in sorted(table):
        layer = {"neuron": [1, 2, 2]} if table[name].family.value == "neuron" else None
        r = post(server, "explanations", "tiny",
                 tensor_body(x, algorithm=name, **({"layer": layer} if layer else {})))
        assert r.status_code == 200, (name, r.text)
        body = r.json()
        assert body["algorithm"] == name
        assert np.abs(attributions(body["explanations"][0])).sum() > 0, name


# -- batching and isolation --------------------------------------------------------------------

def test_concurrent_mixed_requests_get_their_own_kind(server):
    kinds = ["explanations" if i % 2 else "predictions" for i in range(16)]

    def call(i):
        return kinds[i], post(server, kinds[i], "tiny", tensor_body(tiny_input(100 + i)))

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    fused = []
    for kind, r in results:
        assert r.status_code == 200, r.text
        body = r.json()
        assert bool(body.get("explanations")) == (kind == "explanations")
        if kind == "explanations":
            fused.append(body["timings"].get("fusedGroupSize", 0))
    assert max(fused) >= 2, f"no explanation was fused: {fused}"


def test_malformed_request_fails_alone(server):
    bodies = [tensor_body(tiny_input(i)) for i in range(3)]
    bodies.insert(2, {**tensor_body(tiny_input(9)), "params": {"n_steps": "many"}})

    def call(b):
        return post(server, "explanations", "tiny", b)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(call, bodies))
    statuses = [r.status_code for r in results]
    assert statuses[2] == 400 and statuses[:2] + statuses[3:] == [200, 200, 200], statuses
    err = results[2].json()
    assert err["field"] == "params.n_steps" and err["code"] == "INVALID_INPUT"


def test_unknown_algorithm_lists_the_allowed(server):
    r = post(server, "explanations", "digits", tensor_body(np.zeros((1, 28, 28), np.float32),
                                                            algorithm="Magic"))
    assert r.status_code == 400
    err = r.json()
    assert err["field"] == "algorithm" and err["code"] == "UNKNOWN_ALGORITHM"
    assert {"IntegratedGradients", "Saliency", "DeepLift"} <= set(err["allowed"])


def test_over_limit_n_steps_is_refused(server):
    r = post(server, "explanations", "tiny", tensor_body(tiny_input(2),
                                                         params={"n_steps": 100000}))
    assert r.status_code == 422
    err = r.json()
    assert err["field"] == "params.n_steps" and "max_n_steps" in err["message"]


def test_unknown_json_field_is_named(server):
    r = post(server, "predictions", "tiny", {"inputz": {}})
    assert r.status_code == 400 and r.json()["field"] == "inputz"


# -- auth and metrics --------------------------------------------------------------------------

def test_token_auth(server):
    body = tensor_body(tiny_input(3))
    refused = post(server, "predictions", "tiny", body, auth=False)
    assert refused.status_code == 400 and "InvalidKey" in refused.text
    wrong = requests.post(f"{server.inference_url}/predictions/tiny", json=body, timeout=30,
                          headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 400
    assert post(server, "predictions", "tiny", body).status_code == 200
    assert server.auth and (server.key_file.stat().st_mode & 0o077) == 0


def test_metrics_exported(server):
    post(server, "explanations", "tiny", tensor_body(tiny_input(4)))
    text = requests.get(f"{server.metrics_url}/metrics", timeout=30).text
    for name in ("ExplainLatency", "FusedGroupSize", "BaselineCacheHitRate"):
        assert name in text, name


def test_run_directory_holds_the_working_files(server):
    run = server.run_dir
    assert (run / "logs" / "ts_log.log").is_file() and server.key_file.is_file()
    assert list((run / "tmp").glob(".ts.sock.*")), "worker sockets are not in the run dir"
    assert not pathlib.Path("logs").exists() or pathlib.Path("logs").resolve() != run / "logs"


def test_heatmap_png(server):
    digits = torch.load(BUNDLED_STORE / "digits" / "reference.pt", weights_only=True)
    body = tensor_body(digits[:1].numpy(), algorithm="Saliency", outputs={"heatmap": True})
    r = post(server, "explanations", "digits", body)
    assert r.status_code == 200, r.text
    data = base64.b64decode(r.json()["explanations"][0]["heatmapPng"])
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG" and img.size[0] >= 28 * 4


def test_second_instance_does_not_collide(server, sources, tmp_path_factory):
    """Another instance (auth off) next to the session's: its own ports and files."""
    from service import launcher
    from tests.e2e.conftest import archive

    store = tmp_path_factory.mktemp("store2")
    archive(sources["tab"], "tab", store)
    run_dir = tmp_path_factory.mktemp("run2") / "second"
    other = launcher.start(store, run_dir, auth=False, timeout=300)
    try:
        assert not set(other.ports.values()) & set(server.ports.values())
        assert not other.key_file.exists()
        r = requests.post(f"{other.inference_url}/predictions/tab", timeout=60,
                          json={"inputs": {"tabular": {"features": {"age": 30}}}})
        assert r.status_code == 200, r.text
        assert post(server, "predictions", "tiny", tensor_body(tiny_input(7))).status_code == 200
        assert list((run_dir / "tmp").glob(".ts.sock.*"))
    finally:
        launcher.stop(run_dir)
    assert post(server, "predictions", "tiny", tensor_body(tiny_input(8))).status_code == 200
