"""Closed-form, axiom and Getting Started checks for the gradient family."""

from __future__ import annotations

import captum.attr as ca
import pytest
import torch
from torch import nn

import service.attribution as sa
from service.attribution._hooks import has_hooks
from service.examples.getting_started import ToyModel, example_inputs

D = torch.float64


def _linear(seed: int = 0) -> nn.Linear:
    torch.manual_seed(seed)
    return nn.Linear(7, 4).to(D).eval()


@pytest.mark.parametrize("method", ["gausslegendre", "riemann_trapezoid", "riemann_left",
                                    "riemann_right", "riemann_middle"])
def test_ig_on_linear_model_is_input_minus_baseline_times_weight(method: str) -> None:
    model = _linear()
    x = torch.randn(5, 7, dtype=D)
    b = torch.randn(5, 7, dtype=D)
    target = [0, 1, 2, 3, 1]
    n = 9
    attr = sa.IntegratedGradients(model).attribute(x, b, target=target, method=method, n_steps=n)
    # captum's riemann_trapezoid weights are 1/n with the end points halved: they sum to
    # (n - 1) / n, not 1 (we keep captum's numbers; see README).
    scale = (n - 1) / n if method == "riemann_trapezoid" else 1.0
    expected = scale * (x - b) * model.weight.detach()[target]
    torch.testing.assert_close(attr, expected, atol=1e-12, rtol=1e-10)


def test_ig_internal_batch_size_does_not_change_the_result() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3)).to(D)
    x = torch.randn(4, 6, dtype=D)
    ig = sa.IntegratedGradients(model)
    whole = ig.attribute(x, target=1, n_steps=30)
    for ibs in (1, 4, 9, 50, 10_000):
        torch.testing.assert_close(ig.attribute(x, target=1, n_steps=30, internal_batch_size=ibs),
                                   whole, atol=1e-12, rtol=1e-10)


def test_saliency_and_input_x_gradient_on_linear_model() -> None:
    model = _linear(1)
    x = torch.randn(3, 7, dtype=D)
    w = model.weight.detach()
    torch.testing.assert_close(sa.Saliency(model).attribute(x, target=2), w[2].abs().expand(3, 7))
    torch.testing.assert_close(sa.Saliency(model).attribute(x, target=2, abs=False),
                               w[2].expand(3, 7))
    torch.testing.assert_close(sa.InputXGradient(model).attribute(x, target=2), x * w[2])


def test_getting_started_figures() -> None:
    model = ToyModel().eval()
    inputs, baseline = example_inputs()
    expected = torch.tensor([[-0.5922, -1.5497, -1.0067], [0.0000, -0.2219, -5.1991]])
    attr, delta = sa.IntegratedGradients(model).attribute(inputs, baseline, target=0,
                                                          return_convergence_delta=True)
    torch.testing.assert_close(attr, expected, atol=1e-4, rtol=0)
    assert delta.abs().max() < 1e-5
    attr, delta = sa.DeepLift(model).attribute(inputs, baseline, target=0,
                                               return_convergence_delta=True)
    torch.testing.assert_close(attr, expected, atol=1e-4, rtol=0)
    assert delta.abs().max() < 1e-6


class _Block(nn.Module):
    """A ResNet basic block; ``shared=True`` calls one in-place ReLU twice, as torchvision does."""

    def __init__(self, shared: bool) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.conv1 = nn.Conv2d(3, 3, 3, padding=1)
        self.conv2 = nn.Conv2d(3, 3, 3, padding=1)
        self.fc = nn.Linear(3 * 6 * 6, 4)
        self.shared = shared
        if shared:
            self.relu = nn.ReLU(inplace=True)
        else:
            self.relu_a, self.relu_b = nn.ReLU(), nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.relu if self.shared else self.relu_a
        second = self.relu if self.shared else self.relu_b
        out = first(self.conv1(x))
        out = second(self.conv2(out) + x)
        return self.fc(out.flatten(1))


def test_deeplift_on_block_reusing_inplace_relu_matches_captum_on_separate_relus() -> None:
    shared, separate = _Block(True).to(D).eval(), _Block(False).to(D).eval()
    separate.load_state_dict(shared.state_dict())
    x = torch.randn(3, 3, 6, 6, dtype=D)
    b = 0.1 * torch.randn(3, 3, 6, 6, dtype=D)
    ours, delta = sa.DeepLift(shared).attribute(x, b, target=[0, 1, 3],
                                                return_convergence_delta=True)
    theirs = ca.DeepLift(separate).attribute(x, b, target=[0, 1, 3])
    torch.testing.assert_close(ours, theirs, atol=1e-9, rtol=1e-7)
    assert delta.abs().max() < 1e-9
    assert not has_hooks(shared)
    with pytest.raises(RuntimeError):  # captum itself refuses the shared-ReLU model
        ca.DeepLift(shared).attribute(x, b, target=0)


def test_deeplift_relu_before_maxpool_keeps_completeness() -> None:
    """captum 0.9.0 loses completeness here (captum #1104/#1276); the axiom is the oracle."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.ReLU(),
                          nn.Flatten(), nn.Linear(4 * 4 * 4, 3)).to(D).eval()
    x = torch.randn(4, 2, 8, 8, dtype=D)
    b = 0.3 * torch.randn(4, 2, 8, 8, dtype=D)
    _, delta = sa.DeepLift(model).attribute(x, b, target=1, return_convergence_delta=True)
    assert delta.abs().max() < 1e-10


def test_deeplift_refuses_modules_without_a_rule() -> None:
    model = nn.Sequential(nn.Linear(4, 3), nn.LogSoftmax(dim=1)).to(D)
    with pytest.raises(ValueError, match="LogSoftmax"):
        sa.DeepLift(model).attribute(torch.randn(2, 4, dtype=D), target=0)
    assert not has_hooks(model)


def test_deeplift_gelu_gets_the_rescale_rule_and_keeps_completeness() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(5, 6), nn.GELU(), nn.Linear(6, 6), nn.SiLU(),
                          nn.Linear(6, 2)).to(D)
    x = torch.randn(3, 5, dtype=D)
    _, delta = sa.DeepLift(model).attribute(x, target=1, return_convergence_delta=True)
    assert delta.abs().max() < 1e-10


def test_class_hierarchy_mirrors_captum() -> None:
    assert issubclass(sa.DeepLiftShap, sa.DeepLift)
    for cls in (sa.Saliency, sa.InputXGradient, sa.IntegratedGradients, sa.GradientShap,
                sa.DeepLift, sa.GuidedBackprop, sa.Deconvolution):
        assert issubclass(cls, sa.GradientAttribution)
        assert issubclass(cls, sa.Attribution)
    assert issubclass(sa.LayerAttribution, sa.Attribution)
    assert issubclass(sa.NeuronAttribution, sa.Attribution)
    assert issubclass(sa.PerturbationAttribution, sa.Attribution)
    model = _linear()
    for cls in (sa.IntegratedGradients, sa.DeepLift, sa.GradientShap):
        assert cls(model).has_convergence_delta()
    assert not sa.Saliency(model).has_convergence_delta()
    assert sa.NoiseTunnel(sa.IntegratedGradients(model)).has_convergence_delta()
    assert sa.IntegratedGradients.get_name() == ca.IntegratedGradients.get_name()


@pytest.mark.parametrize("call, match", [
    (lambda ig, x: ig.attribute(x, n_steps=0), "n_steps"),
    (lambda ig, x: ig.attribute(x, method="simpson"), "method"),
    (lambda ig, x: ig.attribute(x, target=9), "target"),
    (lambda ig, x: ig.attribute(x, target=[0, 1]), "target"),
    (lambda ig, x: ig.attribute(x, baselines=torch.zeros(2, 7, dtype=D)), "baselines"),
    (lambda ig, x: ig.attribute(x, baselines=(0, 0)), "baselines"),
    (lambda ig, x: ig.attribute(x, internal_batch_size=0), "internal_batch_size"),
    (lambda ig, x: ig.attribute([x]), "inputs"),
    (lambda ig, x: ig.attribute(x), "target"),  # 4 outputs per example and no target
])
def test_argument_errors_name_the_argument(call, match: str) -> None:
    ig = sa.IntegratedGradients(_linear())
    with pytest.raises((ValueError, TypeError), match=match):
        call(ig, torch.randn(3, 7, dtype=D))


def test_noise_tunnel_argument_errors() -> None:
    nt = sa.NoiseTunnel(sa.Saliency(_linear()))
    x = torch.randn(2, 7, dtype=D)
    with pytest.raises(ValueError, match="nt_type"):
        nt.attribute(x, nt_type="smooth", target=0)
    with pytest.raises(ValueError, match="stdevs"):
        nt.attribute(x, stdevs=(0.1, 0.2), target=0)
    with pytest.raises(ValueError, match="nt_samples"):
        nt.attribute(x, nt_samples=0, target=0)


def test_integer_inputs_get_a_clear_error() -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Flatten(), nn.Linear(12, 2))
    with pytest.raises(TypeError, match="floating-point"):
        sa.Saliency(model).attribute(torch.tensor([[1, 2, 3]]), target=0)


def test_inputs_are_not_mutated() -> None:
    model = _linear()
    x = torch.randn(2, 7, dtype=D)
    sa.IntegratedGradients(model).attribute(x, target=0)
    sa.DeepLift(model).attribute(x, target=0)
    assert not x.requires_grad and x.grad is None


def test_tensor_and_tuple_targets() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 6), nn.Unflatten(1, (2, 3))).to(D)  # output (N, 2, 3)
    x = torch.randn(3, 4, dtype=D)
    ours = sa.IntegratedGradients(model).attribute(x, target=(1, 2))
    theirs = ca.IntegratedGradients(model).attribute(x, target=(1, 2))
    torch.testing.assert_close(ours, theirs)
    ours = sa.Saliency(model).attribute(x, target=[(0, 1), (1, 2), (0, 0)])
    theirs = ca.Saliency(model).attribute(x, target=[(0, 1), (1, 2), (0, 0)])
    torch.testing.assert_close(ours, theirs)
    m2 = _linear()
    torch.testing.assert_close(
        sa.IntegratedGradients(m2).attribute(x.new_ones(3, 7), target=torch.tensor([0, 3, 1])),
        ca.IntegratedGradients(m2).attribute(x.new_ones(3, 7), target=torch.tensor([0, 3, 1])))
