"""The algorithm table: built with no side effects, its cross-references checked when built, and
a model's spec checked against it when the model loads."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from service import attribution as A
from service.runtime import (
    AlgorithmEntry,
    AlgorithmTable,
    Executor,
    Param,
    Request,
    Response,
    TensorPayload,
    default_table,
    load_spec,
)
from service.runtime.algorithms import Family, TableError
from service.runtime.loader import load_model
from service.runtime.spec import SpecError
from tests.serving_fixture import tiny_image, tiny_tabular


def test_default_table_is_built_fresh_and_complete() -> None:
    a, b = default_table(), default_table()
    assert a is not b and list(a) == list(b)
    assert {"IntegratedGradients", "NoiseTunnel", "Occlusion", "LayerGradCam"} <= set(a)


@pytest.mark.parametrize("entry, words", [
    (AlgorithmEntry(name="X", engine=A.Saliency, params=(Param("n_steps", int, 5),)),
     "Saliency.attribute takes no n_steps"),
    (AlgorithmEntry(name="X", engine=A.IntegratedGradients,
                    params=(Param("n_steps", int, 5, limit="max_steps"),)), "unknown limit"),
    (AlgorithmEntry(name="X", engine=A.Saliency, params=(Param("abs", bool, 3),)),
     "default of abs is invalid"),
    (AlgorithmEntry(name="X"), "needs an engine class or a build function"),
    (AlgorithmEntry(name="X", engine=A.Saliency, kind_defaults={"tabular": {"window": 1}}),
     "unknown parameter window"),
])
def test_table_refuses_inconsistent_entries(entry, words) -> None:
    with pytest.raises(TableError, match=words):
        AlgorithmTable([entry])


def test_table_refuses_duplicates() -> None:
    e = AlgorithmEntry(name="X", engine=A.Saliency)
    with pytest.raises(TableError, match="listed twice"):
        AlgorithmTable([e, e])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tiny_image(tmp_path_factory.mktemp("models"))
    spec = load_spec(d / "spec.yaml")
    return d, spec, load_model(spec, d)


def test_spec_enabling_an_unknown_algorithm_fails_at_load(tiny) -> None:
    d, spec, model = tiny
    bad = dataclasses.replace(spec, algorithms=(*spec.algorithms, "LayerLRP"))
    with pytest.raises(SpecError, match="`explain.algorithms` names LayerLRP"):
        Executor(model, bad, d)


def test_spec_defaults_are_checked_at_load(tiny) -> None:
    d, spec, model = tiny
    for defaults, words in (({"IntegratedGradients": {"n_stepz": 3}}, "no parameter 'n_stepz'"),
                            ({"IntegratedGradients": {"n_steps": 10_000}}, "max_n_steps"),
                            ({"Nope": {}}, "Nope is not in")):
        bad = dataclasses.replace(spec, default_params=defaults)
        with pytest.raises(SpecError, match=words):
            Executor(model, bad, d)
    with pytest.raises(SpecError, match=r"`explain.layers` \(or `explain.cam_layer`\) is "
                       "required by GuidedGradCam, InternalInfluence, "):
        Executor(model, dataclasses.replace(spec, cam_layer=None, layers={}, default_layer=None),
                 d)


def test_executor_serves_only_its_own_table(tiny) -> None:
    d, spec, model = tiny
    table = AlgorithmTable([default_table()["Saliency"]])
    ex = Executor(model, dataclasses.replace(spec, algorithms=("Saliency",),
                                             default_algorithm="Saliency", default_params={}),
                  d, table=table)
    x = np.random.default_rng(0).random((1, 8, 8)).astype(np.float32)
    (ok, refused) = ex.run([Request(inputs=TensorPayload(x), explain=True),
                            Request(inputs=TensorPayload(x), explain=True,
                                    algorithm="IntegratedGradients")])
    assert isinstance(ok, Response) and ok.algorithm == "Saliency"
    assert not isinstance(refused, Response) and refused.field == "algorithm"


def test_occlusion_window_is_one_feature_on_tabular_models(tmp_path) -> None:
    d = tiny_tabular(tmp_path)
    spec = load_spec(d / "spec.yaml")
    if "Occlusion" not in spec.algorithms:
        spec = dataclasses.replace(spec, algorithms=(*spec.algorithms, "Occlusion"))
    model = load_model(spec, d)
    ex = Executor(model, spec, d)
    x = np.random.default_rng(1).random(spec.input_shape).astype(np.float32)
    (out,) = ex.run([Request(inputs=TensorPayload(x), explain=True, algorithm="Occlusion")])
    assert isinstance(out, Response), out
    import torch
    xt = torch.tensor(x).unsqueeze(0)
    target = out.explanations[0].target
    expect = A.Occlusion(model).attribute(xt, sliding_window_shapes=(1,), strides=(1,),
                                          target=target, baselines=torch.zeros_like(xt))
    np.testing.assert_allclose(out.explanations[0].attributions, expect[0].detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert {p.name: p.default for p in default_table()["Occlusion"].params}["window"] == 4


def test_every_recipe_enables_only_servable_algorithms() -> None:
    from model_store import _recipe

    table = default_table()
    for cam in (False, True):
        names = _recipe.algorithms(cam=cam)
        assert [n for n in names if n not in table] == []
    by_family = {f: {n for n, e in table.items() if e.family is f} for f in Family}
    assert by_family[Family.CAM] == set(_recipe.CAM_ALGORITHMS)
    assert by_family[Family.LAYER] == set(_recipe.LAYER_ALGORITHMS)
    assert by_family[Family.NEURON] == set(_recipe.NEURON_ALGORITHMS)


def test_text_table_serves_the_text_recipe_and_checks_the_wrapped_methods() -> None:
    """tinylm's algorithms are all in the text table; a text entry's parameters are checked
    against the wrapped Captum method's ``attribute`` like any other entry's."""
    from model_store import tinylm
    from service.attribution import LayerIntegratedGradients
    from service.runtime.algorithms import text_table
    from service.runtime.algorithms.entry import Param
    from service.runtime.algorithms.text import TextAlgorithm, TextFamily

    table = text_table()
    assert [n for n in tinylm.TEXT_ALGORITHMS if n not in table] == []
    assert {getattr(e, "text_family", None) for e in table.values()} == set(TextFamily)
    bad = TextAlgorithm(name="LayerIntegratedGradients", engine=LayerIntegratedGradients,
                        text_family=TextFamily.GRADIENT, params=(Param("n_stepz", int, 8),))
    with pytest.raises(TableError, match="n_stepz"):
        type(table)([bad])
