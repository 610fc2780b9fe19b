"""Layer and neuron methods on the API: the spec's layers (checked and measured at load), the
request's `layer` selector (parsed, validated with errors naming `layer.*`), answers served by
the executor equal to the engine called directly, fusion by layer choice and neuron, layer
completeness, unit top features, and GetModelSpec's layers and families."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from service import attribution as A
from service import wire
from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime import Executor, Request, Response, TensorPayload, load_spec
from service.runtime.errors import InvalidInput
from service.runtime.loader import load_model
from service.runtime.request import LayerSelector, OutputOptions, TargetKind, TargetSpec
from service.runtime.spec import SpecError, parse_spec
from service.wire.rows import SPEC, encode_outcome
from tests.serving_fixture import tiny_image, tiny_tabular


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Executor:
    d = tiny_image(tmp_path_factory.mktemp("models"))
    spec = load_spec(d / "spec.yaml")
    return Executor(load_model(spec, d), spec, d)


@pytest.fixture(scope="module")
def tab(tmp_path_factory) -> Executor:
    d = tiny_tabular(tmp_path_factory.mktemp("models"))
    spec = load_spec(d / "spec.yaml")
    return Executor(load_model(spec, d), spec, d)


def image_x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((1, 8, 8)).astype(np.float32)


def tab_x(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(4,)).astype(np.float32)


def run(ex: Executor, x: np.ndarray, algorithm: str, **kw):
    (out,) = ex.run([Request(inputs=TensorPayload(x), explain=True, algorithm=algorithm, **kw)])
    return out


def ok(out) -> Response:
    assert isinstance(out, Response), out
    return out


def refused(out, field: str) -> InvalidInput:
    assert isinstance(out, InvalidInput), out
    assert out.field == field, (out.field, out.message)
    return out


# -- the spec's layers ---------------------------------------------------------------------------

def test_layers_are_measured_at_load(image: Executor, tab: Executor) -> None:
    conv, relu, fc = (image.layers[n] for n in ("conv", "relu", "fc"))
    assert (conv.module, conv.output_shape, conv.input_shape) == ("conv", (4, 8, 8), (1, 8, 8))
    assert relu.output_shape == (4, 8, 8) and fc.output_shape == (3,) and fc.input_shape == (64,)
    assert image.spec.default_layer == "conv" and image.spec.cam_layer == "conv"
    assert tab.layers["hidden"].output_shape == (8,) and tab.spec.default_layer == "hidden"


def test_unknown_module_path_fails_at_load_naming_the_key(image: Executor) -> None:
    bad = dataclasses.replace(image.spec, layers={**image.spec.layers, "deep": "blocks.7"})
    with pytest.raises(SpecError, match=r"`explain.layers.deep`: the model has no module "
                                        r"'blocks.7'"):
        Executor(image.model, bad)


def _spec(explain: dict) -> dict:
    return {"name": "m", "model": {"file": "m.py", "class": "M"},
            "input": {"kind": "tensor", "shape": [3]}, "explain": explain}


def test_spec_layer_keys() -> None:
    s = parse_spec(_spec({"layers": {"a": "net.0", "b": "net.1"}, "cam_layer": "net.1"}))
    assert s.layers == {"a": "net.0", "b": "net.1"} and s.default_layer == "b"
    assert s.cam_layer == "net.1"
    s = parse_spec(_spec({"cam_layer": "conv2"}))  # the one layer, named by its path
    assert s.layers == {"conv2": "conv2"} and s.default_layer == "conv2"
    s = parse_spec(_spec({"layers": {"a": "x", "b": "y"}, "default_layer": "b"}))
    assert s.default_layer == "b" and s.cam_layer == "y"
    assert parse_spec(_spec({"layers": {"a": "x", "b": "y"}})).default_layer == "a"
    with pytest.raises(SpecError, match="`explain.cam_layer` 'z' is not one of"):
        parse_spec(_spec({"layers": {"a": "x"}, "cam_layer": "z"}))
    with pytest.raises(SpecError, match="`explain.default_layer` 'q' is not one of"):
        parse_spec(_spec({"layers": {"a": "x"}, "default_layer": "q"}))
    with pytest.raises(SpecError, match="`explain.layers.a` must map a name to a module"):
        parse_spec(_spec({"layers": {"a": 3}}))


# -- the request's selector: wire and validation -------------------------------------------------

def test_layer_selector_from_json_and_proto() -> None:
    body = {"inputs": {"tabular": {"features": {"a": 1.0}}},
            "layer": {"name": "conv2", "attributeToLayerInput": True, "neuron": [3, 4, 4]}}
    r = wire.request_from_dict(body, explain=True)
    assert r.layer == LayerSelector("conv2", True, (3, 4, 4))
    m = pb.ExplainRequest(layer=pb.LayerSelector(name="hidden", neuron=[7]))
    r = wire.request_from_serialized(m.SerializeToString(), explain=True)
    assert r.layer == LayerSelector("hidden", False, (7,))
    assert wire.request_from_dict({}, explain=True).layer == LayerSelector()
    with pytest.raises(InvalidInput) as e:
        wire.request_from_dict({"layer": {"neuron": "3"}}, explain=True)
    assert e.value.field == "layer.neuron"


def test_bad_layer_name_lists_the_allowed_ones(image: Executor) -> None:
    e = refused(run(image, image_x(), "LayerConductance", layer=LayerSelector("conv9")),
                "layer.name")
    assert list(e.allowed) == ["conv", "relu", "fc"] and "'conv9'" in e.message


@pytest.mark.parametrize("algorithm", ["LayerGradCam", "GuidedGradCam"])
def test_cam_on_a_flat_layer_is_refused_naming_the_layer(image: Executor, algorithm) -> None:
    # the fuzz found GuidedGradCam on a flat layer answering 500 (an empty upsampled map)
    e = refused(run(image, image_x(), algorithm, layer=LayerSelector("fc")), "layer.name")
    assert "(C, H, W)" in e.message and list(e.allowed) == ["conv", "relu"]
    assert ok(run(image, image_x(), algorithm, layer=LayerSelector("conv"))).explanations


def test_neuron_out_of_range_names_layer_neuron(image: Executor) -> None:
    for neuron, words in (((4, 0, 0), "not an index into layer conv's output, of shape [4, 8, 8]"),
                          ((0, 8), "of shape [4, 8, 8]"), ((-1, 0, 0), "not an index")):
        e = refused(run(image, image_x(), "NeuronGradient", layer=LayerSelector(neuron=neuron)),
                    "layer.neuron")
        assert words in e.message
    # the layer's input has another shape: (64,) for fc
    e = refused(run(image, image_x(), "NeuronGradient",
                    layer=LayerSelector("fc", True, (64,))), "layer.neuron")
    assert "layer fc's input, of shape [64]" in e.message
    ok(run(image, image_x(), "NeuronGradient", layer=LayerSelector("fc", True, (63,))))


def test_neuron_method_without_neuron_is_refused(image: Executor) -> None:
    e = refused(run(image, image_x(), "NeuronIntegratedGradients"), "layer.neuron")
    assert "needs the index of a neuron in layer conv's output, of shape [4, 8, 8]" in e.message


def test_selector_where_it_means_nothing_is_refused(image: Executor) -> None:
    refused(run(image, image_x(), "IntegratedGradients", layer=LayerSelector("conv")), "layer")
    refused(run(image, image_x(), "LayerConductance", layer=LayerSelector(neuron=(0, 0, 0))),
            "layer.neuron")
    refused(run(image, image_x(), "LayerIntegratedGradients", layer=LayerSelector("fc"),
                outputs=OutputOptions(heatmap=True)), "outputs.heatmap")
    refused(run(image, image_x(), "LayerGradCam", layer=LayerSelector("fc")), "layer.name")


# -- served == engine ----------------------------------------------------------------------------

def _engine(model, name: str, layer, x, target, *, to_input=False, neuron=None, **kw):
    cls = getattr(A, name)
    if neuron is not None:
        return cls(model, layer).attribute(x, neuron_selector=neuron,
                                           attribute_to_neuron_input=to_input, **kw)
    return cls(model, layer).attribute(x, target=target, attribute_to_layer_input=to_input,
                                       **kw)


IMAGE_CASES = [
    # (algorithm, selector, engine kwargs besides the layer flags)
    ("LayerIntegratedGradients", LayerSelector("conv"), {"n_steps": 32, "baselines": 0.0}),
    ("LayerConductance", LayerSelector("relu"), {"n_steps": 32, "baselines": 0.0}),
    ("LayerGradientXActivation", LayerSelector("fc", True), {}),
    ("LayerDeepLift", LayerSelector("conv"), {"baselines": 0.0}),
    ("InternalInfluence", LayerSelector("relu"), {"n_steps": 32, "baselines": 0.0}),
    ("LayerActivation", LayerSelector("fc"), None),
    ("NeuronIntegratedGradients", LayerSelector("conv", neuron=(2, 3, 5)),
     {"n_steps": 32, "baselines": 0.0}),
    ("NeuronGradient", LayerSelector("fc", neuron=(1,)), {}),
    ("NeuronDeepLift", LayerSelector("relu", neuron=(0, 4, 4)), {"baselines": 0.0}),
    ("NeuronGuidedBackprop", LayerSelector("conv", neuron=(3, 1, 6)), {}),
]


@pytest.mark.parametrize("algorithm,sel,kw", IMAGE_CASES, ids=[c[0] for c in IMAGE_CASES])
def test_image_served_equals_engine(image: Executor, algorithm, sel, kw) -> None:
    x = image_x(3)
    r = ok(run(image, x, algorithm, layer=sel))
    e = r.explanations[0]
    module = image.model.get_submodule(image.layers[sel.name].module)
    xt = torch.from_numpy(x)[None]
    if kw is None:  # LayerActivation: no target
        want = A.LayerActivation(image.model, module).attribute(
            xt, attribute_to_layer_input=sel.attribute_to_layer_input)
    else:
        want = _engine(image.model, algorithm, module, xt, e.target,
                       to_input=sel.attribute_to_layer_input,
                       neuron=sel.neuron or None, **kw)
    np.testing.assert_allclose(e.attributions, want[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    neuron = algorithm.startswith("Neuron")
    assert e.layer == sel.name
    assert e.attributed_to == ("input" if neuron else
                               "layer_input" if sel.attribute_to_layer_input else "layer_output")
    assert e.attributions.shape == ((1, 8, 8) if neuron
                                    else image.layers[sel.name].shape(sel.attribute_to_layer_input))


def test_neuron_conductance_explains_the_target(image: Executor) -> None:
    x = image_x(4)
    sel = LayerSelector("conv", neuron=(1, 2, 2))
    r = ok(run(image, x, "NeuronConductance", layer=sel,
               target=TargetSpec(TargetKind.INDEX, index=2)))
    module = image.model.get_submodule("conv")
    want = A.NeuronConductance(image.model, module).attribute(
        torch.from_numpy(x)[None], neuron_selector=(1, 2, 2), target=2, n_steps=32,
        method="riemann_trapezoid", baselines=0.0)
    np.testing.assert_allclose(r.explanations[0].attributions, want[0].detach().numpy(),
                               rtol=1e-5, atol=1e-6)


TAB_CASES = [
    ("LayerIntegratedGradients", LayerSelector("hidden"), {"n_steps": 32, "baselines": 0.0}),
    ("LayerConductance", LayerSelector("linear1"), {"n_steps": 32, "baselines": 0.0}),
    ("NeuronIntegratedGradients", LayerSelector("hidden", neuron=(5,)),
     {"n_steps": 32, "baselines": 0.0}),
    ("NeuronGradient", LayerSelector("linear1", neuron=(0,)), {}),
]


@pytest.mark.parametrize("algorithm,sel,kw", TAB_CASES, ids=[c[0] for c in TAB_CASES])
def test_tabular_served_equals_engine(tab: Executor, algorithm, sel, kw) -> None:
    x = tab_x(1)
    e = ok(run(tab, x, algorithm, layer=sel)).explanations[0]
    module = tab.model.get_submodule(tab.layers[sel.name].module)
    want = _engine(tab.model, algorithm, module, torch.from_numpy(x)[None], e.target,
                   neuron=sel.neuron or None, **kw)
    np.testing.assert_allclose(e.attributions, want[0].detach().numpy(), rtol=1e-5, atol=1e-6)
    # the tabular model has reason templates: layer and neuron answers say why there are none
    assert e.reasons == [] and e.reasons_note.startswith("no reasons: ")
    assert ("units of layer" if algorithm.startswith("Layer") else "a neuron of layer") \
        in e.reasons_note


def test_fused_by_layer_and_neuron_each_equal_to_the_engine(image: Executor) -> None:
    """Same neuron: one engine call; another neuron or layer: another group."""
    xs = [image_x(10 + k) for k in range(5)]
    sels = [LayerSelector(neuron=(1, 2, 2)), LayerSelector(neuron=(1, 2, 2)),
            LayerSelector(neuron=(1, 2, 2)), LayerSelector(neuron=(0, 5, 5)),
            LayerSelector("relu", neuron=(1, 2, 2))]
    outs = [ok(o) for o in image.run([
        Request(inputs=TensorPayload(x), explain=True, algorithm="NeuronIntegratedGradients",
                layer=s) for x, s in zip(xs, sels)])]
    assert [o.timings.fused_group_size for o in outs] == [3, 3, 3, 1, 1]
    for x, s, o in zip(xs, sels, outs):
        module = image.model.get_submodule(s.name or "conv")
        want = A.NeuronIntegratedGradients(image.model, module).attribute(
            torch.from_numpy(x)[None], neuron_selector=s.neuron, n_steps=32, baselines=0.0)
        np.testing.assert_allclose(o.explanations[0].attributions, want[0].detach().numpy(),
                                   rtol=1e-5, atol=1e-6)
    layered = [ok(o) for o in image.run([
        Request(inputs=TensorPayload(x), explain=True, algorithm="LayerIntegratedGradients",
                layer=LayerSelector("relu")) for x in xs[:3]])]
    assert [o.timings.fused_group_size for o in layered] == [3, 3, 3]


# -- completeness and the answer's parts ---------------------------------------------------------

@pytest.mark.parametrize("algorithm", ["LayerIntegratedGradients", "LayerDeepLift",
                                       "LayerConductance"])
def test_layer_completeness_is_reported(image: Executor, algorithm) -> None:
    x = image_x(5)
    r = ok(run(image, x, algorithm, layer=LayerSelector("relu"),
               params={"n_steps": 64} if algorithm != "LayerDeepLift" else {}))
    e = r.explanations[0]
    with torch.no_grad():
        fx = image.model(torch.from_numpy(x)[None])[0, e.target].item()
        f0 = image.model(torch.zeros(1, 1, 8, 8))[0, e.target].item()
    assert e.baseline_output == pytest.approx(f0, abs=1e-6)
    assert e.approximation_error == pytest.approx(float(e.attributions.astype(np.float64).sum())
                                                  - (fx - f0), abs=1e-5)
    assert abs(e.approximation_error) < 5e-3 * max(1.0, abs(fx - f0))


def test_no_completeness_claim_for_the_others(image: Executor) -> None:
    for name, sel in (("InternalInfluence", LayerSelector()),
                      ("LayerGradientXActivation", LayerSelector()),
                      ("NeuronIntegratedGradients", LayerSelector(neuron=(0, 0, 0)))):
        assert ok(run(image, image_x(), name, layer=sel)).explanations[0] \
            .approximation_error is None, name


def test_top_features_name_units(image: Executor) -> None:
    x = image_x(6)
    r = ok(run(image, x, "LayerIntegratedGradients", layer=LayerSelector("conv"),
               outputs=OutputOptions(top_features=4, heatmap=True)))
    e = r.explanations[0]
    per_channel = e.attributions.astype(np.float64).reshape(4, -1).sum(1)
    order = np.argsort(-np.abs(per_channel))
    assert [f.name for f in e.top_features] == [f"conv[c={c}]" for c in order]
    np.testing.assert_allclose([f.attribution for f in e.top_features], per_channel[order],
                               rtol=1e-6)
    with torch.no_grad():
        act = image.model.conv(torch.from_numpy(x)[None])[0].double().reshape(4, -1).sum(1)
    np.testing.assert_allclose([f.value for f in e.top_features], act.numpy()[order], rtol=1e-5)
    assert e.heatmap_png and e.heatmap_png.startswith(b"\x89PNG")
    flat = ok(run(image, x, "LayerGradientXActivation", layer=LayerSelector("fc"),
                  outputs=OutputOptions(top_features=2))).explanations[0]
    top = np.argsort(-np.abs(flat.attributions))[:2]
    assert [f.name for f in flat.top_features] == [f"fc[{i}]" for i in top]


def test_neuron_answer_is_input_shaped_with_input_features(image: Executor) -> None:
    e = ok(run(image, image_x(), "NeuronGradient", layer=LayerSelector(neuron=(0, 3, 3)),
               outputs=OutputOptions(heatmap=True))).explanations[0]
    assert e.attributed_to == "input" and e.layer == "conv"
    assert e.top_features and e.top_features[0].name.startswith("x[0,")
    assert e.heatmap_png.startswith(b"\x89PNG")


# -- wire: response and GetModelSpec ---------------------------------------------------------------

def test_response_wire_fields(image: Executor) -> None:
    r = ok(run(image, image_x(), "LayerConductance", layer=LayerSelector("relu")))
    m = wire.response_to_proto(r)
    assert m.explanations[0].attributed_to == "layer_output"
    assert m.explanations[0].layer == "relu"
    assert list(m.explanations[0].attributions.shape) == [4, 8, 8]
    back = wire.response_from_proto(m).explanations[0]
    assert (back.attributed_to, back.layer) == ("layer_output", "relu")
    import json
    d = json.loads(wire.response_to_json(r))["explanations"][0]
    assert d["attributedTo"] == "layer_output" and d["layer"] == "relu"
    d = json.loads(wire.response_to_json(ok(run(image, image_x(), "Saliency"))))
    assert d["explanations"][0]["attributedTo"] == "input"
    assert "layer" not in d["explanations"][0]


def test_model_spec_lists_layers_and_families(image: Executor) -> None:
    payload, error = encode_outcome(SPEC, True, image.spec, image.limits, image.table,
                                    image.layers)
    assert error is None
    spec = pb.ExplainReply.FromString(payload).spec
    assert [(l.name, l.module, list(l.output_shape), list(l.input_shape)) for l in spec.layers] \
        == [("conv", "conv", [4, 8, 8], [1, 8, 8]), ("relu", "relu", [4, 8, 8], [4, 8, 8]),
            ("fc", "fc", [3], [64])]
    family = {a.name: a.family for a in spec.algorithms}
    assert family["IntegratedGradients"] == "input" and family["LayerGradCam"] == "cam"
    assert family["LayerConductance"] == "layer" and family["NeuronGradient"] == "neuron"
