"""Getting Started figures, axioms, closed forms and argument errors for the layer and neuron
family, and the text helpers."""

from __future__ import annotations

import captum.attr as ca
import pytest
import torch
from torch import Tensor, nn

import service.attribution as sa
from service.attribution._hooks import has_hooks
from service.examples.getting_started import ToyModel, example_inputs

D = torch.float64


# --------------------------------------------------------------------------------------------
# Getting Started (figures printed in captum's Getting Started guide)


def test_getting_started_neuron_conductance() -> None:
    model = ToyModel().eval()
    inputs, _ = example_inputs()
    attr = sa.NeuronConductance(model, model.lin1).attribute(inputs, neuron_selector=1, target=0)
    expected = torch.tensor([[0.0000, 0.0000, 0.0000], [1.3358, 0.0000, -1.6811]])
    torch.testing.assert_close(attr, expected, atol=5e-5, rtol=0)


def test_getting_started_layer_conductance() -> None:
    model = ToyModel().eval()
    inputs, baseline = example_inputs()
    attr, delta = sa.LayerConductance(model, model.lin1).attribute(
        inputs, baselines=baseline, target=0, return_convergence_delta=True,
        method="riemann_trapezoid")
    expected = torch.tensor([[0.0000, 0.0000, -3.0856], [0.0000, -0.3488, -4.9638]])
    torch.testing.assert_close(attr, expected, atol=5e-5, rtol=0)
    torch.testing.assert_close(delta, torch.tensor([0.0630, 0.1084]), atol=5e-5, rtol=0)


# --------------------------------------------------------------------------------------------
# Closed forms and axioms


def _mlp(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4), nn.ReLU(),
                         nn.Linear(4, 3)).to(D).eval()


def test_layer_ig_on_last_linear_layer_is_activation_difference_times_weight() -> None:
    model = _mlp()
    x, b = torch.randn(3, 5, dtype=D), torch.randn(3, 5, dtype=D)
    attr = sa.LayerIntegratedGradients(model, model[3]).attribute(x, b, target=2, n_steps=7)
    with torch.no_grad():
        hx, hb = model[:4](x), model[:4](b)
    # the output is linear in the ReLU's output: IG there is exact
    torch.testing.assert_close(attr, (hx - hb) * model[4].weight[2], atol=1e-12, rtol=1e-10)


def test_layer_conductance_sums_over_the_layer_to_integrated_gradients_total() -> None:
    model = _mlp(1)
    x = torch.randn(4, 5, dtype=D)
    cond = sa.LayerConductance(model, model[1]).attribute(x, target=1, n_steps=400,
                                                          method="riemann_trapezoid")
    ig = sa.IntegratedGradients(model).attribute(x, target=1, n_steps=400,
                                                 method="riemann_trapezoid")
    torch.testing.assert_close(cond.sum(1), ig.sum(1), atol=2e-3, rtol=0)


def test_neuron_conductances_sum_over_a_layer_to_integrated_gradients() -> None:
    model = _mlp(2)
    x = torch.randn(2, 5, dtype=D)
    total = sum(sa.NeuronConductance(model, model[1]).attribute(x, neuron_selector=i, target=0)
                for i in range(6))
    ig = sa.IntegratedGradients(model).attribute(x, target=0, method="riemann_trapezoid")
    torch.testing.assert_close(total, ig, atol=1e-10, rtol=1e-8)


def test_neuron_deeplift_next_to_maxpool_sums_to_the_neuron_difference() -> None:
    # captum 0.9.0's DeepLift is wrong next to MaxPool: summation-to-delta is the oracle
    torch.manual_seed(3)
    model = nn.Sequential(nn.Conv2d(1, 3, 3), nn.MaxPool2d(2), nn.ReLU(), nn.Conv2d(3, 4, 2),
                          nn.ReLU(), nn.Flatten(), nn.Linear(4 * 2 * 2, 2)).to(D).eval()
    x, b = torch.rand(3, 1, 8, 8, dtype=D), 0.1 * torch.rand(3, 1, 8, 8, dtype=D)
    layer, neuron = model[4], (2, 1, 0)
    attr = sa.NeuronDeepLift(model, layer).attribute(x, neuron, baselines=b)
    with torch.no_grad():
        diff = model[:5](x)[(slice(None), *neuron)] - model[:5](b)[(slice(None), *neuron)]
    torch.testing.assert_close(attr.flatten(1).sum(1), diff, atol=1e-10, rtol=1e-8)
    _, delta = sa.LayerDeepLift(model, model[0]).attribute(x, b, target=1,
                                                           return_convergence_delta=True)
    assert delta.abs().max() < 1e-10


def test_gradcam_closed_form() -> None:
    torch.manual_seed(4)
    conv = nn.Conv2d(2, 3, 3).to(D)
    head = nn.Linear(3 * 4 * 4, 2).to(D)
    model = nn.Sequential(conv, nn.Flatten(), head).eval()
    x = torch.rand(2, 2, 6, 6, dtype=D)
    cam = sa.LayerGradCam(model, conv).attribute(x, target=1)
    with torch.no_grad():
        a = conv(x)  # (2, 3, 4, 4); the gradient w.r.t. it is head.weight[1] reshaped
        w = head.weight[1].view(3, 4, 4).mean((1, 2)).view(1, 3, 1, 1)
        expected = (w * a).sum(1, keepdim=True)
    torch.testing.assert_close(cam, expected, atol=1e-12, rtol=1e-10)


@pytest.mark.parametrize("mode,shape,size", [
    ("nearest", (2, 1, 3, 3), (9, 9)), ("bilinear", (2, 1, 3, 3), (7, 5)),
    ("bicubic", (1, 2, 4, 4), (8, 8)), ("area", (1, 1, 6, 6), (3, 2)),
    ("nearest-exact", (1, 1, 3, 3), (5, 5)), ("linear", (2, 3, 4), (9,)),
    ("trilinear", (1, 1, 2, 3, 3), (4, 6, 6)),
])
def test_interpolate_matches_captum(mode: str, shape: tuple, size: tuple) -> None:
    t = torch.rand(shape, dtype=D)
    ours = sa.LayerAttribution.interpolate(t, size, mode)
    theirs = ca.LayerAttribution.interpolate(t, size, mode)
    torch.testing.assert_close(ours, theirs, atol=0, rtol=0)


def test_interpolate_errors_name_the_argument() -> None:
    t = torch.rand(1, 1, 3, 3)
    with pytest.raises(ValueError, match="interpolate_mode"):
        sa.LayerAttribution.interpolate(t, (6, 6), "cubic")
    with pytest.raises(ValueError, match="interpolate_mode"):
        sa.LayerAttribution.interpolate(t, (6, 6), "trilinear")
    with pytest.raises(ValueError, match="interpolate_dims"):
        sa.LayerAttribution.interpolate(t, (6, 6, 6), "nearest")


# --------------------------------------------------------------------------------------------
# Layers that run twice, layers that do not run, tuple outputs, selectors


class _Twice(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.out = nn.Linear(4, 2)

    def forward(self, x: Tensor) -> Tensor:
        return self.out(self.lin(torch.tanh(self.lin(x))))


@pytest.mark.parametrize("make", [
    lambda m: (sa.LayerActivation(m, m.lin), {}),
    lambda m: (sa.LayerGradientXActivation(m, m.lin), {"target": 0}),
    lambda m: (sa.LayerIntegratedGradients(m, m.lin), {"target": 0}),
    lambda m: (sa.LayerConductance(m, m.lin), {"target": 0}),
    lambda m: (sa.LayerGradCam(m, m.lin), {"target": 0}),
    lambda m: (sa.LayerDeepLift(m, m.lin), {"target": 0}),
    lambda m: (sa.NeuronGradient(m, m.lin), {"neuron_selector": 1}),
    lambda m: (sa.NeuronConductance(m, m.lin), {"neuron_selector": 1, "target": 0}),
])
def test_layer_running_twice_is_refused_clearly_and_hooks_are_removed(make) -> None:
    torch.manual_seed(0)
    model = _Twice().eval()
    obj, kwargs = make(model)
    with pytest.raises(ValueError, match="Linear ran more than once"):
        obj.attribute(torch.rand(3, 4), **kwargs)
    assert not has_hooks(model)


def test_layer_that_does_not_run_is_refused() -> None:
    model = _mlp()
    unused = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="did not run"):
        sa.LayerActivation(model, unused).attribute(torch.rand(2, 5, dtype=D))
    assert not has_hooks(model)


def test_list_of_layers_gives_a_list() -> None:
    model = _mlp()
    x = torch.rand(2, 5, dtype=D)
    acts = sa.LayerActivation(model, [model[0], model[2]]).attribute(x)
    assert isinstance(acts, list) and [a.shape for a in acts] == [(2, 6), (2, 4)]
    with torch.no_grad():
        torch.testing.assert_close(acts[1], model[:3](x))


@pytest.mark.parametrize("selector,error", [
    ("a", TypeError), (1.5, TypeError), ((0, "x"), TypeError), (7, ValueError),
    ((0, 0), ValueError),
])
def test_bad_neuron_selectors_name_the_argument(selector, error) -> None:
    model = _mlp()
    with pytest.raises(error, match="neuron_selector"):
        sa.NeuronGradient(model, model[0]).attribute(torch.rand(2, 5, dtype=D), selector)
    assert not has_hooks(model)


def test_neuron_selector_that_picks_many_values_is_refused() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2 * 4 * 4, 2)).eval()
    with pytest.raises(ValueError, match="one value per example"):
        sa.NeuronGradient(model, model[0]).attribute(torch.rand(2, 1, 6, 6), 1)


class _ConvWithSideInput(nn.Module):
    """An image input and a non-spatial side input (shape (B, 1)) added to the logits."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(2 * 4 * 4, 3)

    def forward(self, img: Tensor, side: Tensor) -> Tensor:
        return self.fc(self.relu(self.conv(img)).flatten(1)) + side


def test_guided_gradcam_gives_an_empty_map_to_a_non_spatial_input_like_captum() -> None:
    torch.manual_seed(0)
    model = _ConvWithSideInput().to(D).eval()
    img, side = torch.rand(2, 1, 6, 6, dtype=D), torch.rand(2, 1, dtype=D)
    with pytest.warns(UserWarning, match=r"input\(s\) \[1\]"):
        ours = sa.GuidedGradCam(model, model.conv).attribute((img, side), target=1)
    with pytest.warns(UserWarning):
        theirs = ca.GuidedGradCam(model, model.conv).attribute((img, side), target=1)
    torch.testing.assert_close(ours[0], theirs[0], atol=1e-12, rtol=1e-10)
    assert ours[1].numel() == 0 and theirs[1].numel() == 0
    assert ours[0].abs().sum() > 0


def test_guided_gradcam_refuses_an_unknown_interpolate_mode() -> None:
    # Captum warns and returns empty tensors for every input; a typo deserves an error
    model = _ConvWithSideInput().to(D).eval()
    with pytest.raises(ValueError, match="interpolate_mode"):
        sa.GuidedGradCam(model, model.conv).attribute(
            (torch.rand(2, 1, 6, 6, dtype=D), torch.rand(2, 1, dtype=D)), target=0,
            interpolate_mode="made_up")


def test_layer_methods_refuse_non_modules() -> None:
    model = _mlp()
    with pytest.raises(TypeError, match="layer"):
        sa.LayerActivation(model, "lin")
    with pytest.raises(TypeError, match="layer"):
        sa.LayerConductance(model, [model[0]])


# --------------------------------------------------------------------------------------------
# Text


class _Text(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(12, 5, padding_idx=0)
        self.body = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 2))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.body(self.embed(tokens).mean(1))


def _text() -> _Text:
    torch.manual_seed(5)
    return _Text().to(D).eval()


def test_token_reference_base_matches_captum() -> None:
    ours = sa.TokenReferenceBase(3).generate_reference(6, "cpu")
    theirs = ca.TokenReferenceBase(3).generate_reference(6, torch.device("cpu"))
    assert torch.equal(ours, theirs) and ours.dtype == torch.long


def test_interpretable_embedding_round_trip_and_layer_ig_equals_ig_on_embeddings() -> None:
    model = _text()
    original = model.embed
    tokens = torch.tensor([[1, 5, 7, 2], [3, 3, 9, 11]])
    ref = sa.TokenReferenceBase(0).generate_reference(4, "cpu").unsqueeze(0)
    with torch.no_grad():
        expected_out = model(tokens)
    lig, delta = sa.LayerIntegratedGradients(model, model.embed).attribute(
        tokens, ref, target=1, n_steps=40, return_convergence_delta=True)

    emb = sa.configure_interpretable_embedding_layer(model, "embed")
    assert isinstance(emb, sa.InterpretableEmbeddingBase) and model.embed is emb
    x, b = emb.indices_to_embeddings(tokens), emb.indices_to_embeddings(ref)
    with torch.no_grad():
        torch.testing.assert_close(model(x), expected_out)
    ig = sa.IntegratedGradients(model).attribute(x.detach(), b.detach(), target=1, n_steps=40)
    sa.remove_interpretable_embedding_layer(model, emb)
    assert model.embed is original

    torch.testing.assert_close(lig, ig, atol=1e-12, rtol=1e-10)
    scores = sa.token_attributions(lig)
    assert scores.shape == (2, 4)
    with torch.no_grad():
        gap = model(tokens)[:, 1] - model(ref.expand(2, 4))[:, 1]
    torch.testing.assert_close(scores.sum(1) - gap, delta, atol=1e-12, rtol=1e-10)
    normed = sa.token_attributions(lig, normalize=True)
    torch.testing.assert_close(normed.norm(dim=1), torch.ones(2, dtype=D))


def test_interpretable_embedding_errors() -> None:
    model = _text()
    with pytest.raises(ValueError, match="embedding_layer_name"):
        sa.configure_interpretable_embedding_layer(model, "nope")
    emb = sa.configure_interpretable_embedding_layer(model, "embed")
    with pytest.raises(ValueError, match="already"):
        sa.configure_interpretable_embedding_layer(model, "embed")
    sa.remove_interpretable_embedding_layer(model, emb)
    with pytest.raises(ValueError, match="not this interpretable"):
        sa.remove_interpretable_embedding_layer(model, emb)
    with pytest.raises(ValueError, match="attributions"):
        sa.token_attributions(torch.rand(3))


def test_layer_ig_refuses_to_differentiate_token_ids() -> None:
    model = _text()
    tokens = torch.tensor([[1, 2, 3]])
    with pytest.raises(ValueError, match="embedding's output"):
        sa.LayerGradientXActivation(model, model.embed).attribute(
            tokens, target=0, attribute_to_layer_input=True)


# --------------------------------------------------------------------------------------------
# Ablation


def test_layer_ablation_with_per_example_targets_and_several_perturbations_per_pass() -> None:
    # captum 0.9.0 does not expand a per-example target when perturbations_per_eval > 1; the
    # result must not depend on how many features share a pass
    model = _mlp(3)
    x = torch.rand(4, 5, dtype=D)
    abl = sa.LayerFeatureAblation(model, model[2])
    one = abl.attribute(x, target=[0, 1, 2, 1])
    for p in (2, 3, 10):
        torch.testing.assert_close(abl.attribute(x, target=[0, 1, 2, 1],
                                                 perturbations_per_eval=p), one)
    # closed form: the last layer is linear after a ReLU, ablating a ReLU unit removes w * a
    with torch.no_grad():
        a = model[:4](x)
    relu_abl = sa.LayerFeatureAblation(model, model[3]).attribute(x, target=2)
    torch.testing.assert_close(relu_abl, a * model[4].weight[2], atol=1e-12, rtol=1e-10)


def test_ablation_mask_errors_name_the_argument() -> None:
    model = _mlp()
    x = torch.rand(2, 5, dtype=D)
    with pytest.raises(TypeError, match="layer_mask"):
        sa.LayerFeatureAblation(model, model[0]).attribute(x, target=0,
                                                           layer_mask=torch.zeros(1, 6))
    with pytest.raises(ValueError, match="feature_mask"):
        sa.NeuronFeatureAblation(model, model[0]).attribute(
            x, 1, feature_mask=torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="perturbations_per_eval"):
        sa.NeuronFeatureAblation(model, model[0]).attribute(x, 1, perturbations_per_eval=0)
    assert not has_hooks(model)
