"""The held-out examples each recipe writes beside its archive (examples.json): valid
explain.v1.Input JSON, the held-out rows they claim to be, their true class by an independent
computation, and the same on every build."""

from __future__ import annotations

import base64
import io
import json

import numpy as np
import pytest
import torch
from google.protobuf import json_format
from PIL import Image

from model_store import breast_cancer, digits, recommender, resnet18
from model_store._examples import EXAMPLES_FILE
from service._proto.explain.v1 import explain_pb2 as pb


def check_inputs(report: dict) -> list[dict]:
    for ex in report["examples"]:
        json_format.ParseDict(ex["inputs"], pb.Input())  # what a client sends as `inputs`
    ids = [ex["id"] for ex in report["examples"]]
    assert len(set(ids)) == len(ids)
    return report["examples"]


def test_digits_examples_are_held_out_images_with_their_labels():
    _, _, x_test, y_test = digits.split()
    report = digits.examples(x_test, y_test)
    assert report == digits.examples(*digits.split()[2:])  # deterministic
    exs = check_inputs(report)
    assert sorted({e["true_index"] for e in exs}) == list(range(10))
    assert len(exs) == 10 * digits.EXAMPLES_PER_CLASS
    for ex in exs:
        row = int(ex["id"].rsplit("-", 1)[1])
        assert ex["true_index"] == int(y_test[row]) and ex["true_label"] == str(int(y_test[row]))
        img = Image.open(io.BytesIO(base64.b64decode(ex["inputs"]["image"])))
        assert img.format == "PNG" and img.mode == "L" and img.size == (28, 28)
        pixels = np.asarray(img, dtype=np.float64) / 255.0            # (28, 28)
        np.testing.assert_allclose(pixels, x_test[row, 0].numpy(), atol=0.5 / 255 + 1e-6)


def test_breast_cancer_examples_are_held_out_patients_in_raw_units():
    _, _, x_test, y_test, features, classes = breast_cancer.split()
    report = breast_cancer.examples(x_test, y_test, features, classes)
    exs = check_inputs(report)
    assert [sum(e["true_index"] == c for e in exs) for c in (0, 1)] == [
        breast_cancer.EXAMPLES_PER_CLASS] * 2
    for ex in exs:
        row = int(ex["id"].rsplit("-", 1)[1])
        feats = ex["inputs"]["tabular"]["features"]
        assert list(feats) == features
        np.testing.assert_allclose([feats[f] for f in features], x_test[row].numpy(), rtol=1e-5)
        assert ex["true_label"] == classes[int(y_test[row])]


def test_recommender_examples_carry_the_planted_best_movie():
    g = torch.Generator().manual_seed(3)
    x_test = recommender.users(400, g)
    report = recommender.examples(x_test)
    assert report == recommender.examples(x_test)
    exs = check_inputs(report)
    assert sum(e["note"].startswith("probe") for e in exs) == 3
    for ex in exs:
        user = recommender.user(**ex["inputs"]["tabular"]["features"])
        best = int(recommender.planted_scores(user[None]).argmax())   # the oracle, recomputed
        assert ex["true_index"] == best, ex["id"]
        assert ex["true_label"] == recommender.TITLES[best]


def test_resnet18_examples_are_pictures_without_a_true_class():
    exs = check_inputs(resnet18.examples())
    for ex in exs:
        img = Image.open(io.BytesIO(base64.b64decode(ex["inputs"]["image"])))
        assert img.size == (224, 224) and img.mode == "RGB"
        assert ex["true_index"] is None


@pytest.mark.parametrize("name", ["digits", "breast_cancer"])
def test_the_work_dir_holds_examples_json(name, archived):
    work, _ = archived(name)
    report = json.loads((work / EXAMPLES_FILE).read_text())
    assert report["model"] == name and report["examples"]


def test_tinylm_examples_are_probe_prompts_a_client_can_send():
    from model_store import tinylm

    report = tinylm.examples()
    assert report == tinylm.examples()
    exs = check_inputs(report)
    probes = {p["prompt"]: p for p in tinylm.probes()}
    assert len(exs) == 2 * 4          # a template and a text prompt per distractor template
    for ex in exs:
        inp = ex["inputs"]
        prompt = (inp["text"] if "text" in inp
                  else inp["template"]["template"].format(**inp["template"]["values"]))
        assert ex["true_label"] == f"{probes[prompt]['answer']} ."
