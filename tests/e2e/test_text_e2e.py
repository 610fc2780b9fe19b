"""The bundled causal LM (tinylm) through the real TorchServe, over REST and over the gRPC
gateway: served attributions equal the engine's in process, the planted cause is on top of every
probe for both method families, and bad requests are refused naming their field."""

from __future__ import annotations

import json

import numpy as np
import pytest

from service import attribution as A
from service.client import ExplainClient, ExplainClientError
from service.nets import WordTokenizer
from service.runtime import load_spec
from service.runtime.loader import load_model
from service.runtime.text import template_slots
from tests.e2e.conftest import BUNDLED_STORE
from tests.e2e.test_serving import post

pytestmark = pytest.mark.e2e
LM = BUNDLED_STORE / "tinylm"
PLANTED = json.loads((LM / "planted.json").read_text()) if (LM / "planted.json").is_file() else {}


@pytest.fixture(scope="module")
def engine():
    spec = load_spec(LM / "spec.yaml")
    return load_model(spec, LM), WordTokenizer.load(LM / "vocab.json")


@pytest.fixture(scope="module")
def client(server):
    with ExplainClient(f"127.0.0.1:{server.ports['gateway']}", token=server.key("inference"),
                       timeout=120) as c:
        yield c


def template_body(probe: dict, **kw) -> dict:
    return {"inputs": {"template": {"template": probe["template"], "values": probe["values"]}},
            **kw}


def test_rest_explanation_equals_the_engine_in_process(server, engine):
    model, tok = engine
    probe = PLANTED["probes"][0]
    r = post(server, "explanations", "tinylm", template_body(probe, outputs={"heatmap": True}))
    assert r.status_code == 200, r.text
    text = r.json()["text"]
    slots = template_slots(probe["template"])        # the served features' order
    want = A.LLMAttribution(A.FeatureAblation(model), tok).attribute(
        A.TextTemplateInput(probe["template"], values={k: probe["values"][k] for k in slots}),
        gen_args={"max_new_tokens": 8, "eos_token_id": tok.convert_tokens_to_ids(".")})
    assert text["generated"] == f"{probe['answer']} ." and text["outputTokens"] == \
        want.output_tokens
    np.testing.assert_allclose(text["seqAttr"], want.seq_attr.numpy(), rtol=1e-4, atol=1e-4)
    assert text["heatmapPng"]
    p = post(server, "predictions", "tinylm", {"inputs": {"text": probe["prompt"]}})
    assert p.status_code == 200 and p.json()["prediction"]["label"] == text["generated"]
    assert "text" not in p.json()


@pytest.mark.parametrize("algorithm", ["FeatureAblation", "LayerIntegratedGradients"])
def test_the_planted_cause_is_on_top_of_every_probe_over_rest(server, algorithm):
    """Template slots (FeatureAblation) or prompt words (LayerIntegratedGradients; the template
    is filled in) of the model's own answer: the cause wins over the distractor every time."""
    missed = []
    for probe in PLANTED["probes"]:
        r = post(server, "explanations", "tinylm", template_body(probe, algorithm=algorithm))
        assert r.status_code == 200, r.text
        text = r.json()["text"]
        top = text["inputFeatures"][int(np.argmax(text["seqAttr"]))]
        expected = probe["values"][probe["cause"]]
        if algorithm == "FeatureAblation":    # the slots, in the template's order
            assert sorted(text["inputFeatures"]) == sorted(probe["values"].values())
        if text["generated"] != f"{probe['answer']} ." or top != expected:
            missed.append((probe["prompt"], text["generated"], top))
    assert missed == []


def test_grpc_equals_rest_and_lists_the_text_model(server, client):
    probe = PLANTED["probes"][5]
    body = template_body(probe, algorithm="ShapleyValueSampling",
                         params={"n_samples": 4, "seed": 3}, targetText=f"{probe['answer']} .")
    rest = post(server, "explanations", "tinylm", body).json()["text"]
    e = client.explain("tinylm", template=probe["template"], values=probe["values"],
                       algorithm="ShapleyValueSampling", params={"n_samples": 4, "seed": 3},
                       target_text=f"{probe['answer']} .")
    assert e.algorithm == "ShapleyValueSampling" and e.text is not None
    assert e.text.input_features == rest["inputFeatures"]
    np.testing.assert_allclose(e.text.seq_attr, rest["seqAttr"], rtol=0, atol=0)
    assert e.text.token_attr.shape == (2, 2)
    spec = client.model_spec("tinylm")
    assert spec.input_kind == "text" and spec.text.context_length == 24
    assert spec.limits["max_new_tokens"] == 8 and "max_prompt_tokens" in spec.limits
    assert "LayerIntegratedGradients" in [a.name for a in spec.algorithms]
    assert "tinylm" in [m.name for m in client.list_models()]


@pytest.mark.parametrize("kwargs,status,field", [
    ({"text": "  "}, "INVALID_ARGUMENT", "inputs.text"),
    ({"template": "the capital of {country} is", "values": {"country": "peru", "x": "y"}},
     "INVALID_ARGUMENT", "inputs.template.values.x"),
    ({"text": "the capital of peru is", "max_new_tokens": 100}, "RESOURCE_EXHAUSTED",
     "maxNewTokens"),
    ({"text": " ".join(["the"] * 40)}, "RESOURCE_EXHAUSTED", "inputs.text"),
])
def test_errors_over_grpc_and_rest_name_the_field(server, client, kwargs, status, field):
    with pytest.raises(ExplainClientError) as info:
        client.explain("tinylm", **kwargs)
    assert (info.value.status, info.value.field) == (status, field)
    body = {"inputs": ({"text": kwargs["text"]} if "text" in kwargs else
                       {"template": {"template": kwargs["template"], "values": kwargs["values"]}})}
    if "max_new_tokens" in kwargs:
        body["maxNewTokens"] = kwargs["max_new_tokens"]
    r = post(server, "explanations", "tinylm", body)
    assert r.status_code == (422 if status == "RESOURCE_EXHAUSTED" else 400)
    assert r.json()["field"] == field


def test_probe_seq_attr_matches_the_build_report(server):
    """The build's own check (planted target) and the served answer agree on the values."""
    probe = PLANTED["probes"][-1]
    r = post(server, "explanations", "tinylm", template_body(
        probe, targetText=f"{probe['answer']} ."))
    text = r.json()["text"]
    served = dict(zip(text["inputFeatures"], text["seqAttr"]))
    built = {probe["values"][slot]: a for slot, a in zip(probe["values"],
                                                         probe["ablation_seq_attr"])}
    assert served.keys() == built.keys()
    for word, value in built.items():
        assert served[word] == pytest.approx(value, abs=1e-3)


def test_explain_stream_carries_text_requests_and_their_errors(client):
    """ExplainStream: each text request answered whole (tagged by request_id); a bad one
    carries its error without ending the stream."""
    from service.client import build_request

    probes = PLANTED["probes"][:3]
    reqs = [build_request("tinylm", template=p["template"], values=p["values"],
                          request_id=f"p{i}") for i, p in enumerate(probes)]
    reqs.append(build_request("tinylm", text=" ", request_id="bad"))
    got = {e.request_id: e for e in client.explain_many(reqs)}
    assert set(got) == {"p0", "p1", "p2", "bad"}
    assert got["bad"].error is not None and got["bad"].error.field == "inputs.text"
    for i, p in enumerate(probes):
        e = got[f"p{i}"]
        assert e.error is None and e.text is not None
        assert e.text.generated == f"{p['answer']} ."
