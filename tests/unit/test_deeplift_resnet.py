"""DeepLift on the bundled resnet18 (service.nets.ResNet18 with model_store's seeded weights,
built in-process and cast to float64): completeness of DeepLift, DeepLiftShap, LayerDeepLift and
NeuronDeepLift through the stem (Conv -> BN -> ReLU -> MaxPool2d(3, 2, 1): overlapping windows)
and the residual blocks (one in-place ReLU called twice per block), and the stem against the
hand-written rule of test_deeplift_oracle.

Kept fast: 2 images of 3x32x32 (the architecture accepts it: conv1 -> 16x16, the stem's
MaxPool -> 8x8, layer4 -> 1x1 before the average pool) and 3 reference images; the hand-written
check runs at 3x16x16 on one image.
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import service.attribution as sa
from model_store import resnet18

from .test_deeplift_oracle import hand_deeplift

REL = 1e-6
DT = torch.float64


@pytest.fixture(scope="module")
def net() -> nn.Module:
    return resnet18.build().model.to(DT).eval()


def _images(n: int, size: int, salt: int) -> Tensor:
    g = torch.Generator().manual_seed(salt)
    return torch.randn(n, 3, size, size, generator=g, dtype=DT)


def _assert_complete(total: Tensor, expected: Tensor, what: str) -> None:
    err = (total - expected).abs()
    assert bool((err <= REL * expected.abs() + 1e-12).all()), (
        f"{what}: attributions sum to {total.tolist()}, F(x) - F(x') = {expected.tolist()}")


def test_deeplift_complete_on_resnet18(net: nn.Module) -> None:
    x = _images(2, 32, 1)
    zeros = torch.zeros_like(x)  # the served "zeros" baseline (ImageNet mean once normalised)
    target = [3, 7]
    attrs, delta = sa.DeepLift(net).attribute(x, zeros, target=target,
                                              return_convergence_delta=True)
    with torch.no_grad():
        diff = (net(x) - net(zeros))[torch.arange(2), target]
    _assert_complete(attrs.flatten(1).sum(1), diff, "DeepLift")
    assert bool((delta.abs() <= REL * diff.abs()).all())


def test_deeplift_shap_complete_on_resnet18(net: nn.Module) -> None:
    x, refs = _images(2, 32, 2), 0.5 * _images(3, 32, 3)
    attrs = sa.DeepLiftShap(net).attribute(x, refs, target=5)
    with torch.no_grad():
        diff = net(x)[:, 5] - net(refs)[:, 5].mean()
    _assert_complete(attrs.flatten(1).sum(1), diff, "DeepLiftShap")


def test_layer_and_neuron_deeplift_complete_on_resnet18(net: nn.Module) -> None:
    x, xb = _images(2, 32, 4), 0.3 * _images(2, 32, 5)
    layer_attrs = sa.LayerDeepLift(net, net.layer1).attribute(x, xb, target=1)
    with torch.no_grad():
        diff = net(x)[:, 1] - net(xb)[:, 1]
    _assert_complete(layer_attrs.flatten(1).sum(1), diff, "LayerDeepLift(layer1)")

    neuron = (4, 3, 5)  # a neuron of the stem's MaxPool output (64, 8, 8)
    attrs = sa.NeuronDeepLift(net, net.maxpool).attribute(x, neuron, xb)
    seen: list[Tensor] = []
    handle = net.maxpool.register_forward_hook(lambda m, a, out: seen.append(out))
    with torch.no_grad():
        net(x)
        net(xb)
    handle.remove()
    _assert_complete(attrs.flatten(1).sum(1), seen[0][:, 4, 3, 5] - seen[1][:, 4, 3, 5],
                     "NeuronDeepLift(maxpool)")


def test_resnet18_stem_matches_hand_rule(net: nn.Module) -> None:
    """NeuronDeepLift of neurons of the stem's MaxPool output against the hand-written rule on
    conv1 -> bn1 -> relu -> maxpool, at 3x16x16 (64 channels of 8x8 -> 4x4 after the pool)."""
    x, xb = _images(1, 16, 6), 0.3 * _images(1, 16, 7)
    stem = [net.conv1, net.bn1, nn.ReLU(), net.maxpool]
    for neuron in ((17, 3, 0), (63, 1, 2)):
        ours = sa.NeuronDeepLift(net, net.maxpool).attribute(x, neuron, xb)
        seed = torch.zeros(64, 4, 4, dtype=DT)
        seed[neuron] = 1.0
        m, h, hb = hand_deeplift(stem, x[0], xb[0], seed)
        torch.testing.assert_close(ours[0], (h - hb) * m, atol=1e-10, rtol=0)
