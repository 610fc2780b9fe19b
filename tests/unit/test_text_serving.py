"""Serving the bundled causal LM (tinylm) in process, through the real handler: the served
attributions equal the engine's (run in process with the engine's own defaults), the planted
cause is on top, predictions are greedy generations, and bad requests fail alone with an error
naming their field in the request's JSON spelling."""

from __future__ import annotations

import base64
import json
import pathlib

import pytest
import torch
from google.protobuf import json_format

from service import attribution as A
from service._proto.explain.v1 import explain_pb2 as pb
from service.nets import WordTokenizer
from service.runtime import Limits, Request, load_spec
from service.runtime.errors import InvalidInput, LimitExceeded, UnknownAlgorithm
from service.runtime.loader import load_model
from service.runtime.request import TemplatePayload, TextPayload
from service.runtime.text import TextExecutor
from tests.serving_fixture import tiny_image
from tests.unit.test_handler import Context, handler_module

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILT = ROOT / "model_store" / "build" / "tinylm"

TEMPLATE = "after a trip to {other} i think the capital of {country} is"
VALUES = {"other": "spain", "country": "france"}
PROMPT = TEMPLATE.format(**VALUES)


@pytest.fixture(scope="module")
def lm_dir(tmp_path_factory) -> pathlib.Path:
    """The archive's files: model_store/build/tinylm after `make models`, else built here."""
    if (BUILT / "spec.yaml").is_file() and (BUILT / "vocab.json").is_file():
        return BUILT
    from model_store import tinylm
    from model_store.archive import write_work_dir

    work = tmp_path_factory.mktemp("tinylm") / "tinylm"
    write_work_dir(tinylm.build(), work)
    return work


@pytest.fixture(scope="module")
def handler(lm_dir):
    h = handler_module().ExplainHandler()
    h.initialize(Context(lm_dir, [{}]))
    return h


@pytest.fixture(scope="module")
def engine(lm_dir):
    spec = load_spec(lm_dir / "spec.yaml")
    return load_model(spec, lm_dir), WordTokenizer.load(lm_dir / "vocab.json")


def call(handler, lm_dir, *bodies, explain=True):
    """JSON bodies through handle() as one batch: [(status, parsed answer)]."""
    ctx = Context(lm_dir, [{"explain": "true" if explain else "false"} for _ in bodies])
    replies = handler.handle([{"body": json.dumps(b).encode()} for b in bodies], ctx)
    return [(ctx.status.get(i, (200, ""))[0], json.loads(r)) for i, r in enumerate(replies)]


def template_body(**kw):
    return {"inputs": {"template": {"template": TEMPLATE, "values": VALUES}}, **kw}


def token_attr(answer) -> torch.Tensor:
    t = json_format.ParseDict(answer["text"]["tokenAttr"], pb.Tensor())
    from service import wire

    return torch.from_numpy(wire.tensor_from_proto(t, "t").copy())


def test_prediction_is_the_greedy_generation(handler, lm_dir, engine):
    model, tok = engine
    [(status, answer)] = call(handler, lm_dir, {"inputs": {"text": PROMPT}}, explain=False)
    assert status == 200 and "text" not in answer and "algorithm" not in answer
    ids = tok.encode(PROMPT, return_tensors="pt")
    out = model.generate(ids, max_new_tokens=8, eos_token_id=tok.convert_tokens_to_ids("."))
    assert answer["prediction"]["label"] == tok.decode(out[0, ids.size(1):]) == "paris ."
    with torch.no_grad():
        logits = model(out).logits[0, ids.size(1) - 1:-1].double()
    lp = torch.log_softmax(logits, -1).gather(1, out[0, ids.size(1):, None]).sum()
    assert answer["prediction"]["probability"] == pytest.approx(float(lp.exp()), rel=1e-9)


def test_feature_ablation_over_template_slots_equals_the_engine(handler, lm_dir, engine):
    model, tok = engine
    [(status, answer)] = call(handler, lm_dir, template_body(
        algorithm="FeatureAblation", outputs={"heatmap": True}))
    assert status == 200, answer
    text = answer["text"]
    # the engine with its own defaults (token-by-token decoding, one perturbation per pass)
    ours = A.LLMAttribution(A.FeatureAblation(model), tok).attribute(
        A.TextTemplateInput(TEMPLATE, values=dict(VALUES)),
        gen_args={"max_new_tokens": 8, "eos_token_id": tok.convert_tokens_to_ids(".")})
    assert text["generated"] == "paris ." and text["outputTokens"] == ours.output_tokens
    assert text["inputFeatures"] == ["spain", "france"] == ours.input_tokens
    torch.testing.assert_close(torch.tensor(text["seqAttr"], dtype=torch.float64), ours.seq_attr.double(),
                               atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(token_attr(answer).double(), ours.token_attr.double(),
                               atol=1e-4, rtol=1e-4)
    assert text["seqAttr"][1] > text["seqAttr"][0]   # the cause beats the distractor
    png = base64.b64decode(text["heatmapPng"])
    assert png.startswith(b"\x89PNG")


def test_layer_integrated_gradients_over_words_equals_the_engine(handler, lm_dir, engine):
    model, tok = engine
    [(status, answer)] = call(handler, lm_dir, {
        "inputs": {"text": PROMPT}, "algorithm": "LayerIntegratedGradients",
        "params": {"n_steps": 16}, "targetText": "paris ."})
    assert status == 200, answer
    inp = A.TextTokenInput(PROMPT, tok, baselines="<unk>", skip_tokens=["<s>"])
    ours = A.LLMGradientAttribution(A.LayerIntegratedGradients(model, model.emb), tok).attribute(
        inp, target="paris .", n_steps=16)
    text = answer["text"]
    assert text["inputFeatures"] == PROMPT.split() == inp.values
    torch.testing.assert_close(torch.tensor(text["seqAttr"], dtype=torch.float64), ours.seq_attr.double(),
                               atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(token_attr(answer).double(), ours.token_attr.double(),
                               atol=1e-5, rtol=1e-5)
    assert text["inputFeatures"][max(range(len(inp.values)), key=text["seqAttr"].__getitem__)] \
        == "france"


@pytest.mark.parametrize("algorithm,params", [("ShapleyValueSampling", {"n_samples": 3}),
                                              ("KernelShap", {"n_samples": 20}),
                                              ("Lime", {"n_samples": 20})])
def test_seeded_sampling_methods_equal_the_engine_under_the_same_seed(
        handler, lm_dir, engine, algorithm, params):
    model, tok = engine
    [(status, answer)] = call(handler, lm_dir, template_body(
        algorithm=algorithm, params={**params, "seed": 7}, targetText="paris ."))
    assert status == 200, answer
    torch.manual_seed(7)
    ours = A.LLMAttribution(getattr(A, algorithm)(model), tok).attribute(
        A.TextTemplateInput(TEMPLATE, values=dict(VALUES)), target="paris .", **params)
    served = torch.tensor(answer["text"]["seqAttr"], dtype=torch.float64)
    torch.testing.assert_close(served, ours.seq_attr.double(), atol=1e-4, rtol=1e-4)
    if ours.token_attr is None:
        assert "tokenAttr" not in answer["text"]


@pytest.mark.parametrize("algorithm", ["LayerGradientXActivation", "LayerGradientShap"])
def test_other_layer_gradient_methods_answer_per_token(handler, lm_dir, algorithm):
    [(status, answer)] = call(handler, lm_dir, template_body(algorithm=algorithm))
    assert status == 200, answer
    assert answer["text"]["inputFeatures"] == PROMPT.split()
    assert token_attr(answer).shape == (2, len(PROMPT.split()))


def test_serialized_request_with_template_baselines(handler, lm_dir, engine):
    """The gateway's path (a serialized ExplainRequest, answered with an ExplainReply), with a
    baseline per slot: <unk>, the word the model saw go missing in training."""
    model, tok = engine
    m = pb.ExplainRequest(algorithm="FeatureAblation", target_text="paris .")
    m.inputs.template.template = TEMPLATE
    m.inputs.template.values.update(VALUES)
    m.inputs.template.baselines.update({"country": "<unk>", "other": "<unk>"})
    ctx = Context(lm_dir, [{}])
    [reply] = handler.handle([{"explain_request": bytearray(m.SerializeToString()),
                               "explain": b"true"}], ctx)
    r = pb.ExplainReply.FromString(reply)
    assert r.WhichOneof("result") == "response", r
    assert list(r.response.text.input_features) == ["spain", "france"]
    ours = A.LLMAttribution(A.FeatureAblation(model), tok).attribute(
        A.TextTemplateInput(TEMPLATE, values=dict(VALUES),
                            baselines={"other": "<unk>", "country": "<unk>"}), target="paris .")
    torch.testing.assert_close(torch.tensor(list(r.response.text.seq_attr), dtype=torch.float64),
                               ours.seq_attr.double(), atol=1e-4, rtol=1e-4)
    assert r.response.text.seq_attr[1] > r.response.text.seq_attr[0]


def test_model_spec_lists_the_text_algorithms_limits_and_info(handler, lm_dir):
    [reply] = handler.handle([{"spec": b"1"}], Context(lm_dir, [{}]))
    spec = pb.ExplainReply.FromString(reply).spec
    assert spec.input_kind == "text" and spec.text.context_length == 24
    assert spec.text.stop_token == "." and spec.text.baseline_token == "<unk>"
    assert [a.name for a in spec.algorithms][:2] == ["FeatureAblation", "ShapleyValueSampling"]
    assert "LayerIntegratedGradients" in [a.name for a in spec.algorithms]
    for name in ("max_prompt_tokens", "max_target_tokens", "max_perturbations"):
        assert spec.limits[name] == getattr(Limits(), name)
    assert spec.limits["max_new_tokens"] == 8          # the spec's own limit


BAD = [
    ({"inputs": {"text": "   "}}, 400, "inputs.text"),
    ({"inputs": {"template": {"template": TEMPLATE, "values": {**VALUES, "planet": "mars"}}}},
     400, "inputs.template.values.planet"),
    ({"inputs": {"template": {"template": TEMPLATE, "values": {"country": "peru"}}}},
     400, "inputs.template.values"),
    ({"inputs": {"template": {"template": TEMPLATE, "values": VALUES,
                              "baselines": {"city": "x"}}}}, 400,
     "inputs.template.baselines.city"),
    ({"inputs": {"template": {"template": "the capital of {} is", "values": {}}}}, 400,
     "inputs.template.template"),
    ({"inputs": {"template": {"template": "the capital of {c is", "values": {}}}}, 400,
     "inputs.template.template"),
    ({"inputs": {"text": PROMPT}, "maxNewTokens": 9}, 422, "maxNewTokens"),
    ({"inputs": {"text": PROMPT}, "targetText": " ".join(["paris"] * 65)}, 422, "targetText"),
    ({"inputs": {"text": PROMPT}, "targetText": " ".join(["paris"] * 12)}, 422, "targetText"),
    ({"inputs": {"text": " ".join(["the"] * 30)}}, 422, "inputs.text"),
    ({"inputs": {"text": PROMPT}, "algorithm": "IntegratedGradients"}, 400, "algorithm"),
    ({"inputs": {"text": PROMPT}, "target": {"index": 3}}, 400, "target"),
    ({"inputs": {"text": PROMPT}, "baseline": {"zeros": True}}, 400, "baseline"),
    ({"inputs": {"tabular": {"features": {"a": 1.0}}}}, 400, "inputs"),
    ({"inputs": {"text": PROMPT}, "algorithm": "ShapleyValueSampling",
      "params": {"n_samples": 257}}, 422, "params.n_samples"),
    ({"inputs": {"text": PROMPT}, "algorithm": "FeatureAblation", "params": {"n_steps": 3}},
     400, "params.n_steps"),
]


@pytest.mark.parametrize("body,status,field", BAD, ids=[b[2] + str(i) for i, b in enumerate(BAD)])
def test_bad_requests_fail_alone_naming_their_field(handler, lm_dir, body, status, field):
    good = template_body(algorithm="FeatureAblation", targetText="paris .")
    [(alone_status, alone)] = call(handler, lm_dir, good)
    (bad_status, bad), (good_status, answer) = call(handler, lm_dir, body, good)
    assert (bad_status, bad["field"]) == (status, field), bad
    assert good_status == alone_status == 200 and answer["text"] == alone["text"]


def test_limits_are_configurable_and_name_their_field(lm_dir, engine):
    model, _ = engine
    spec = load_spec(lm_dir / "spec.yaml")
    ex = TextExecutor(model, spec, lm_dir, limits=Limits.build(spec, env={
        "EXPLAIN_LIMIT_MAX_PROMPT_TOKENS": "5", "EXPLAIN_LIMIT_MAX_PERTURBATIONS": "20"}))

    def one(**kw):
        [out] = ex.run([Request(explain=True, **kw)])
        return out

    e = one(inputs=TextPayload(PROMPT))
    assert isinstance(e, LimitExceeded) and e.field == "inputs.text" and "5" in e.detail
    e = one(inputs=TemplatePayload("{a} is", {"a": "france"}), algorithm="ShapleyValueSampling",
            params={"n_samples": 20})          # 20 samples x 1 slot + 1 > 20 prompts
    assert isinstance(e, LimitExceeded) and e.field == "params.n_samples"
    # a baseline longer than its value counts: the perturbed prompt must fit too
    e = one(inputs=TemplatePayload("{a} is", {"a": "france"}, {"a": "a b c d e"}))
    assert isinstance(e, LimitExceeded) and e.field == "inputs.template"
    e = one(inputs=TextPayload("peru is"), algorithm="Saliency")
    assert isinstance(e, UnknownAlgorithm) and "FeatureAblation" in e.allowed
    e = one(inputs=None)
    assert isinstance(e, InvalidInput) and e.field == "inputs"


def test_a_prompt_sent_to_a_classifier_is_refused_naming_inputs(tmp_path):
    d = tiny_image(tmp_path)
    h = handler_module().ExplainHandler()
    h.initialize(Context(d, [{}]))
    [(status, answer)] = call(h, d, {"inputs": {"text": "hello"}})
    assert status == 400 and answer["field"] == "inputs" and "prompt" in answer["message"]


def test_a_request_past_its_deadline_stops_between_forward_passes(lm_dir, engine, monkeypatch):
    """The deadline hook fires inside the engine call (here: after the generation's passes)."""
    import time

    from service.runtime.errors import DeadlineExceeded

    model, _ = engine
    spec = load_spec(lm_dir / "spec.yaml")
    ex = TextExecutor(model, spec, lm_dir, limits=Limits.build(spec, env={}))
    calls = {"n": 0}
    real = time.monotonic
    start = real()

    def clock() -> float:          # 10 s pass with every forward pass
        calls["n"] += 1
        return start + 10.0 * calls["n"]

    req = Request(explain=True, inputs=TextPayload(PROMPT), deadline_ms=25_000,
                  received_at=start)
    monkeypatch.setattr("service.runtime.text.time.monotonic", clock)
    [out] = ex.run([req])
    assert isinstance(out, DeadlineExceeded) and out.field == "deadline_ms"
    assert calls["n"] >= 2


def test_make_serve_prints_a_sendable_text_example(handler, lm_dir, tmp_path):
    """The launcher's example body for a text model is the spec's example prompt, and the
    handler answers it with the planted fact."""
    import types
    import zipfile

    import yaml

    from service.launcher.examples import write_examples

    spec = yaml.safe_load((lm_dir / "spec.yaml").read_text())
    with zipfile.ZipFile(tmp_path / "tinylm.mar", "w"):
        pass
    (tmp_path / "run" / "examples").mkdir(parents=True)
    server = types.SimpleNamespace(run_dir=tmp_path / "run", models={"tinylm": spec}, auth=False,
                                   inference_url="http://127.0.0.1:1")
    lines = write_examples(server, tmp_path)["tinylm"]
    assert any("/explanations/tinylm" in line for line in lines)
    body = json.loads((tmp_path / "run" / "examples" / "tinylm.json").read_text())
    [(status, answer)] = call(handler, lm_dir, body)
    assert status == 200 and answer["text"]["generated"] == "writer ."
