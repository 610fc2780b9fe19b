"""LRP and LayerLRP: conservation of relevance (the axiom), closed forms, the rule convention,
errors, and the model left untouched."""

from __future__ import annotations

import captum.attr as ca
import captum.attr._utils.lrp_rules as captum_rules
import pytest
import torch
from torch import Tensor, nn

import service.attribution as sa
from service.attribution._hooks import has_hooks
from service.attribution.lrp_table import Addition_Module

D = torch.float64
EPS = 1e-30  # epsilon -> 0: relevance is conserved up to rounding


class BiasFreeCNN(nn.Module):
    """Every layer type with a default rule that has no bias: conv, MaxPool, AvgPool,
    AdaptiveAvgPool, linear, with ReLU and Tanh between."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, bias=False)
        self.relu1 = nn.ReLU()
        self.maxpool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 5, 3, padding=1, bias=False)
        self.tanh = nn.Tanh()
        self.avgpool = nn.AvgPool2d(2)
        self.adapt = nn.AdaptiveAvgPool2d((2, 1))
        self.fc1 = nn.Linear(10, 7, bias=False)
        self.relu2 = nn.ReLU()
        self.fc2 = nn.Linear(7, 3, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.maxpool(self.relu1(self.conv1(x)))
        h = self.adapt(self.avgpool(self.tanh(self.conv2(h))))
        return self.fc2(self.relu2(self.fc1(h.flatten(1))))


def _bias_free_mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 9, bias=False), nn.ReLU(), nn.Linear(9, 7, bias=False),
                         nn.Tanh(), nn.Dropout(0.2), nn.Linear(7, 4, bias=False))


def _epsilon_everywhere(model: nn.Module, eps: float) -> nn.Module:
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)):
            m.rule = sa.EpsilonRule(epsilon=eps)
    return model


def _conservation_cases():
    torch.manual_seed(0)
    mlp = _epsilon_everywhere(_bias_free_mlp().to(D).eval(), EPS)
    torch.manual_seed(1)
    cnn = _epsilon_everywhere(BiasFreeCNN().to(D).eval(), EPS)
    return [("mlp", mlp, torch.randn(5, 6, dtype=D)),
            ("cnn", cnn, torch.rand(5, 2, 10, 10, dtype=D))]


@pytest.mark.parametrize("name,model,x", _conservation_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_relevance_is_conserved_input_to_output(name, model, x) -> None:
    target = [0, 1, 2, 0, 1]
    out = model(x).gather(1, torch.tensor(target).view(-1, 1)).squeeze(1)
    attr, delta = sa.LRP(model).attribute(x, target=target, return_convergence_delta=True)
    torch.testing.assert_close(attr.reshape(5, -1).sum(1), out, atol=1e-14, rtol=1e-12)
    assert delta.abs().max().item() < 1e-12


@pytest.mark.parametrize("name,model,x", _conservation_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_relevance_is_conserved_at_every_layer(name, model, x) -> None:
    target = [2, 1, 0, 0, 1]
    out = model(x).gather(1, torch.tensor(target).view(-1, 1)).squeeze(1)
    layers = [m for m in model.modules() if next(m.children(), None) is None]
    for to_input in (False, True):
        rels = sa.LayerLRP(model, layers).attribute(x, target=target,
                                                    attribute_to_layer_input=to_input)
        assert len(rels) == len(layers)
        for layer, r in zip(layers, rels):
            torch.testing.assert_close(r.reshape(5, -1).sum(1), out, atol=1e-14, rtol=1e-12,
                                       msg=lambda m, layer=layer, side=to_input: f"{layer} ({side}): {m}")


def test_epsilon_absorbs_relevance_as_it_grows() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 6, dtype=D)
    deltas = []
    for eps in (1e-30, 1e-2, 1.0):
        torch.manual_seed(0)
        model = _epsilon_everywhere(_bias_free_mlp().to(D).eval(), eps)
        _, delta = sa.LRP(model).attribute(x, target=1, return_convergence_delta=True)
        out = model(x)[:, 1]
        deltas.append((delta / out).abs().max().item())  # the share of relevance absorbed
    assert deltas[0] < 1e-12 < deltas[1] < deltas[2] < 1.0


def test_epsilon_lrp_on_relu_net_is_input_times_gradient() -> None:
    # LRP-0 (epsilon -> 0) on a bias-free ReLU network equals input x gradient
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False))
    model = _epsilon_everywhere(model.to(D).eval(), EPS)
    x = torch.randn(6, 5, dtype=D)
    torch.testing.assert_close(sa.LRP(model).attribute(x, target=2),
                               sa.InputXGradient(model).attribute(x, target=2),
                               atol=1e-13, rtol=1e-12)


def test_model_that_is_a_single_linear_layer() -> None:
    # the model itself is the only leaf: LRP-epsilon gives x * w (Captum hooks no layer here
    # and returns the gradient times the output)
    torch.manual_seed(4)
    lin = nn.Linear(4, 2, bias=False).to(D)
    lin.rule = sa.EpsilonRule(EPS)
    x = torch.randn(3, 4, dtype=D)
    torch.testing.assert_close(sa.LRP(lin).attribute(x, target=1), x * lin.weight.detach()[1],
                               atol=1e-14, rtol=1e-12)


def test_gamma_rule_closed_form_on_one_layer() -> None:
    # R_i = a_i w'_i / sum_j a_j w'_j * out, w' = w + gamma * max(w, 0)
    lin = nn.Linear(3, 1, bias=False).to(D)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0, 0.5]], dtype=D))
    model = nn.Sequential(lin)
    lin.rule = sa.GammaRule(gamma=0.5)
    x = torch.tensor([[2.0, 1.0, 4.0]], dtype=D)
    w2 = torch.tensor([1.5, -2.0, 0.75], dtype=D)
    out = (x * lin.weight.detach()).sum()
    expected = x * w2 / (x * w2).sum() * out
    torch.testing.assert_close(sa.LRP(model).attribute(x), expected, atol=1e-7, rtol=1e-7)


def test_a_custom_rule_overrides_modified_parameters() -> None:
    class MyGamma(sa.PropagationRule):
        def modified_parameters(self, module):
            return {"weight": module.weight + 0.25 * module.weight.clamp(min=0)}

    torch.manual_seed(5)
    x = torch.randn(4, 6, dtype=D)
    results = []
    for rule in (MyGamma(), sa.GammaRule()):
        torch.manual_seed(6)
        model = _bias_free_mlp().to(D).eval()
        model[2].rule = rule
        results.append(sa.LRP(model).attribute(x, target=0))
    torch.testing.assert_close(results[0], results[1], atol=0, rtol=0)


def test_model_is_left_untouched_and_user_rules_are_kept() -> None:
    torch.manual_seed(7)
    model = _bias_free_mlp().to(D).eval()
    rule = sa.Alpha1_Beta0_Rule()
    model[0].rule = rule
    before = {k: v.clone() for k, v in model.state_dict().items()}
    attrs = {id(m): set(vars(m)) for m in model.modules()}
    x = torch.randn(3, 6, dtype=D)
    lrp = sa.LRP(model)
    first = lrp.attribute(x, target=1)
    second = lrp.attribute(x, target=1)
    torch.testing.assert_close(first, second, atol=0, rtol=0)
    assert model[0].rule is rule  # Captum deletes it after each call
    assert {id(m): set(vars(m)) for m in model.modules()} == attrs
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert not has_hooks(model)


def test_unsupported_module_raises_type_error_like_captum() -> None:
    def build():
        return nn.Sequential(nn.Linear(3, 3), nn.Sigmoid(), nn.Linear(3, 1))

    x = torch.randn(2, 3)
    with pytest.raises(TypeError):
        ca.LRP(build()).attribute(x)  # (and leaves its default rules on that model)
    model = build()
    with pytest.raises(TypeError, match=r"1 \(Sigmoid\).*module.rule"):
        sa.LRP(model).attribute(x)
    assert not has_hooks(model)
    model[1].rule = sa.IdentityRule()  # a rule set by hand makes it usable
    assert sa.LRP(model).attribute(x).shape == x.shape


def test_rule_attribute_must_be_a_propagation_rule() -> None:
    model = nn.Sequential(nn.Linear(3, 1))
    model[0].rule = captum_rules.EpsilonRule()  # captum's class is not ours
    with pytest.raises(TypeError, match="PropagationRule"):
        sa.LRP(model)
    model[0].rule = 1
    with pytest.raises(TypeError):
        ca.LRP(model)
    with pytest.raises(TypeError, match=r"`rule` of module 0 \(Linear\)"):
        sa.LayerLRP(model, model[0])


def test_captum_style_weight_manipulating_rule_is_refused() -> None:
    class Rewrites(sa.PropagationRule):
        def _manipulate_weights(self, module, inputs, outputs):
            module.weight.data = module.weight.data * 2

    model = nn.Sequential(nn.Linear(3, 1))
    model[0].rule = Rewrites()
    with pytest.raises(TypeError, match="modified_parameters"):
        sa.LRP(model)


def test_module_used_twice_is_refused_but_a_reused_relu_is_fine() -> None:
    class Reuse(nn.Module):
        def __init__(self, share_linear: bool) -> None:
            super().__init__()
            self.lin1, self.lin2 = nn.Linear(3, 3), nn.Linear(3, 3)
            self.relu = nn.ReLU()
            self.share = share_linear

        def forward(self, x):
            second = self.lin1 if self.share else self.lin2
            return self.relu(second(self.relu(self.lin1(x))))

    x = torch.randn(2, 3, dtype=D)
    model = Reuse(share_linear=True).to(D)
    with pytest.raises(RuntimeError, match=r"lin1 \(Linear\).*more than once"):
        sa.LRP(model).attribute(x, target=0)
    assert not has_hooks(model)
    torch.manual_seed(8)
    reused = Reuse(share_linear=False).to(D)
    two = nn.Sequential(reused.lin1, nn.ReLU(), reused.lin2, nn.ReLU())
    torch.testing.assert_close(sa.LRP(reused).attribute(x, target=0),
                               sa.LRP(two).attribute(x, target=0), atol=0, rtol=0)


def test_identity_rule_needs_matching_sizes() -> None:
    model = nn.Sequential(nn.Linear(3, 2), nn.ReLU())
    model[0].rule = sa.IdentityRule()
    with pytest.raises(ValueError, match="IdentityRule on Linear"):
        sa.LRP(model).attribute(torch.randn(2, 3), target=0)
    assert not has_hooks(model)


def test_inplace_relu_gives_the_same_relevance() -> None:
    torch.manual_seed(9)
    x = torch.randn(3, 5, dtype=D)
    out = []
    for inplace in (False, True):
        torch.manual_seed(10)
        model = nn.Sequential(nn.Linear(5, 6), nn.ReLU(inplace=inplace), nn.Linear(6, 2)).to(D)
        out.append(sa.LRP(model).attribute(x, target=1))
    torch.testing.assert_close(out[0], out[1], atol=0, rtol=0)


class _Skip(nn.Module):
    def __init__(self, add: nn.Module) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 5), nn.Linear(3, 5)
        self.add = add
        self.out = nn.Linear(5, 2)

    def forward(self, x1, x2):
        return self.out(self.add(self.a(x1), self.b(x2)))


def test_addition_modules_have_the_epsilon_default() -> None:
    from captum.attr._utils.custom_modules import Addition_Module as CaptumAddition

    xs = (torch.randn(3, 4, dtype=D), torch.randn(3, 3, dtype=D))
    torch.manual_seed(11)
    ours = _Skip(Addition_Module()).to(D)
    torch.manual_seed(11)
    theirs = _Skip(CaptumAddition()).to(D)
    expected = ca.LRP(theirs).attribute(xs, target=1)
    for model in (ours, theirs):
        for a, e in zip(sa.LRP(model).attribute(xs, target=1), expected):
            torch.testing.assert_close(a, e.detach(), atol=1e-12, rtol=1e-10)


def test_layer_input_relevance_of_a_two_input_layer_in_argument_order() -> None:
    # captum lists them in the order its backward hooks fire (here: the second summand first)
    from captum.attr._utils.custom_modules import Addition_Module as CaptumAddition

    torch.manual_seed(12)
    model = _Skip(CaptumAddition()).to(D)
    xs = (torch.randn(3, 4, dtype=D), torch.randn(3, 3, dtype=D))
    r1, r2 = sa.LayerLRP(model, model.add).attribute(xs, target=0, attribute_to_layer_input=True)
    c2, c1 = ca.LayerLRP(model, model.add).attribute(xs, target=0, attribute_to_layer_input=True)
    torch.testing.assert_close(r1, c1.detach(), atol=1e-12, rtol=1e-10)
    torch.testing.assert_close(r2, c2.detach(), atol=1e-12, rtol=1e-10)
    # the summands split the output relevance of the sum (epsilon rule, z = x1 + x2)
    out_rel = sa.LayerLRP(model, model.add).attribute(xs, target=0)
    torch.testing.assert_close(r1 + r2, out_rel, atol=1e-7, rtol=1e-6)


def test_layer_lrp_errors_name_the_layer() -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    with pytest.raises(ValueError, match=r"`layer` \(Linear\) is not a module of the model"):
        sa.LayerLRP(model, nn.Linear(3, 3))
    unused = _Skip(Addition_Module())
    unused.spare = nn.Linear(3, 3)  # never called by forward
    with pytest.raises(ValueError, match="did not run"):
        sa.LayerLRP(unused, [unused.a, unused.spare]).attribute((torch.randn(2, 4),
                                                                 torch.randn(2, 3)), target=0)
    assert not has_hooks(unused)


def test_layer_lrp_on_a_container_and_an_activation() -> None:
    # any module called once works as the layer (captum needs a leaf with a rule)
    torch.manual_seed(13)
    inner = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
    model = nn.Sequential(inner, nn.Linear(6, 2)).to(D)
    x = torch.randn(3, 4, dtype=D)
    block_out = sa.LayerLRP(model, inner).attribute(x, target=1)
    relu_out = sa.LayerLRP(model, inner[1]).attribute(x, target=1)
    lin_in = sa.LayerLRP(model, model[1]).attribute(x, target=1, attribute_to_layer_input=True)
    torch.testing.assert_close(block_out, lin_in, atol=0, rtol=0)
    torch.testing.assert_close(relu_out, lin_in, atol=0, rtol=0)
    block_in = sa.LayerLRP(model, inner).attribute(x, target=1, attribute_to_layer_input=True)
    torch.testing.assert_close(block_in, sa.LRP(model).attribute(x, target=1), atol=0, rtol=0)


def test_verbose_names_each_rule(capsys) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU(), nn.Linear(3, 1))
    model[2].rule = sa.GammaRule(gamma=0.5)
    sa.LRP(model).attribute(torch.randn(2, 3), verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2  # ReLU passes relevance through: no rule to report
    assert lines[0].startswith("Applied EpsilonRule(") and " on layer 0: Linear" in lines[0]
    assert "GammaRule(gamma=0.5, set_bias_to_zero=False) on layer 2" in lines[1]


def test_a_rule_given_as_class_attribute_is_used() -> None:
    class GammaLinear(nn.Linear):
        rule = sa.GammaRule(gamma=1.0)

    torch.manual_seed(14)
    lin = GammaLinear(4, 3).to(D)
    plain = nn.Linear(4, 3).to(D)
    plain.load_state_dict(lin.state_dict())
    plain.rule = sa.GammaRule(gamma=1.0)
    x = torch.randn(2, 4, dtype=D)
    torch.testing.assert_close(sa.LRP(nn.Sequential(lin)).attribute(x, target=0),
                               sa.LRP(nn.Sequential(plain)).attribute(x, target=0), atol=0, rtol=0)
