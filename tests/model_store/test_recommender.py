"""The recommender's planted effects are recovered by IntegratedGradients (service.attribution)
with the spec's default baseline, target = the recommended movie, on the archived model."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
import yaml

from model_store import recommender as rec
from service.attribution import IntegratedGradients

from .test_recipes import _load_archived_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(archived, tmp_path_factory):
    work, mar = archived("recommender")
    root = tmp_path_factory.mktemp("recommender_unpacked")
    with zipfile.ZipFile(mar) as zf:
        zf.extractall(root)
    files = {p.name: p for p in root.iterdir() if p.is_file()}
    spec = yaml.safe_load(files["spec.yaml"].read_text())
    planted = json.loads((work / "planted.json").read_text())
    return _load_archived_model(files, spec), spec, files, planted


def _default_baseline(spec, files, x):
    definition = spec["baselines"]["definitions"][spec["baselines"]["default"]]
    if definition["kind"] == "zeros":
        return torch.zeros_like(x)
    return torch.load(files[definition["file"]], weights_only=True)


def _reason(spec, feature: str) -> str:
    matches = [r for r in spec["explain"]["reasons"] if feature.startswith(r["prefix"])]
    assert len(matches) == 1, feature
    return matches[0]["template"].format(name=feature[len(matches[0]["prefix"]):])


def test_planted_json_describes_every_effect_with_probes(served):
    _, spec, _, planted = served
    assert planted["features"] == spec["input"]["feature_names"]
    assert {p["effect"] for p in planted["probes"]} == {"genre", "sequel", "recency"}
    assert {"genre", "sequel", "recency", "already_watched"} <= planted["effects"].keys()
    for probe in planted["probes"]:
        x = torch.tensor(probe["input"])
        named = {f: x[i].item() for i, f in enumerate(planted["features"]) if x[i] != 0}
        assert named == pytest.approx(probe["features"])
        assert probe["expected_recommendation"] in probe["boosted_by_cause"]
    # Every feature maps to exactly one reason template.
    for feature in planted["features"]:
        _reason(spec, feature)


def test_planted_scores_follow_the_stated_rules():
    """The generator's score function against the rules planted.json states, from a blank user."""
    blank = rec.planted_scores(torch.zeros(1, len(rec.FEATURES)))[0]

    def delta(feature: str, movie: str) -> float:
        x = rec.user(**{feature: 1.0})[None]
        i = rec.TITLES.index(movie)
        return (rec.planted_scores(x)[0, i] - blank[i]).item()

    assert delta("watched:Alien", "Aliens") == pytest.approx(rec.SEQUEL_WEIGHT)
    assert delta("watched:Alien", "Alien") == pytest.approx(rec.WATCHED_WEIGHT)
    assert delta("watched:Heat", "The Departed") == 0.0       # watching alone: no genre boost
    assert delta("recent:Heat", "The Departed") == pytest.approx(rec.RECENCY_WEIGHT)
    assert delta("recent:Heat", "Heat") == 0.0
    assert delta("recent:Heat", "Alien") == 0.0
    assert delta("genre:Horror", "Get Out") == pytest.approx(rec.GENRE_WEIGHT)
    assert delta("genre:Horror", "Up") == 0.0


def test_ig_recovers_each_planted_cause(served):
    model, spec, files, planted = served
    ig = IntegratedGradients(model)
    n_steps = spec["explain"]["default_params"]["IntegratedGradients"]["n_steps"]
    titles = spec["output"]["class_names"]
    features = spec["input"]["feature_names"]
    failures = []
    for probe in planted["probes"]:
        x = torch.tensor([probe["input"]])                                   # (1, n_features)
        baseline = _default_baseline(spec, files, x)
        with torch.no_grad():
            target = int(model(x).argmax(1))
        attr, delta = ig.attribute(x, baselines=baseline, target=target, n_steps=n_steps,
                                   return_convergence_delta=True)
        order = attr[0].argsort(descending=True).tolist()
        top = features[order[0]]
        got = (titles[target], top, _reason(spec, top))
        want = (probe["expected_recommendation"], probe["cause"], probe["expected_reason"])
        if got != want:
            failures.append((probe["cause"], got, want))
        # The attribution is sound for this model (IG completeness, checked by its delta) and
        # the cause clearly dominates the runner-up.
        assert abs(delta.item()) < 0.05, (probe["cause"], delta.item())
        assert attr[0, order[0]] > 2 * attr[0, order[1]].clamp(min=0), probe["cause"]
    assert not failures, failures


def test_removing_the_cause_lowers_the_recommended_score(served):
    """A counterfactual check independent of IG: the planted cause is what drives the model."""
    model, spec, _, planted = served
    titles = spec["output"]["class_names"]
    features = spec["input"]["feature_names"]
    for probe in planted["probes"]:
        x = torch.tensor([probe["input"]])
        without = x.clone()
        without[0, features.index(probe["cause"])] = 0.0
        with torch.no_grad():
            target = titles.index(probe["expected_recommendation"])
            drop = (model(x)[0, target] - model(without)[0, target]).item()
        assert drop > 1.0, (probe["cause"], drop)
