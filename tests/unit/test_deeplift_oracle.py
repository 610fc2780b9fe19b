"""DeepLift checked against a hand-written Rescale rule, layer by layer, on small
Conv / ReLU / MaxPool / Linear nets in float64 (no captum, no autograd, no hooks).

The oracle, for one example ``x`` and its baseline ``x'``:

1. runs every layer forward on ``x`` and on ``x'`` separately and keeps both activations;
2. writes each layer's multiplier matrix ``M`` (layer output size x layer input size), so that
   ``M @ (h - h') = f(h) - f(h')`` (summation-to-delta, DeepLift paper eq. 1):

   * Linear / Conv (affine): ``M`` is the weight matrix; a Conv's is read off by applying the
     convolution (without bias) to every basis vector of its input space.
   * Flatten: the identity; BatchNorm (eval): diagonal, its per-channel factor.
   * ReLU (Rescale rule): diagonal, ``M_ii = (relu(h_i) - relu(h'_i)) / (h_i - h'_i)``, and
     ``relu'(h_i)`` where ``|h_i - h'_i| < eps``.
   * MaxPool (the max-pool rule Captum's ``maxpool`` implements, with DeepLift's
     "difference-from-reference goes to the max" idea): for every output position ``j`` with
     window ``W_j``, ``a_j`` is the argmax of ``h`` over ``W_j`` and ``b_j`` that of ``h'``
     (first maximum in scanning order, padding never wins), ``y_j = h[a_j]``,
     ``y'_j = h'[b_j]``. The difference ``y_j - y'_j`` is split in two credits:
     ``max(y_j, y'_j) - y'_j`` to position ``a_j`` and ``y_j - max(y_j, y'_j)`` to ``b_j``; each
     credit divided by its position's ``h_i - h'_i`` is that position's entry in row ``j``:
     ``M[j, a_j] += (max(y, y') - y') / (h[a_j] - h'[a_j])``,
     ``M[j, b_j] += (y - max(y, y')) / (h[b_j] - h'[b_j])``. Overlapping windows that share a
     position *add* their entries. Where ``|h_i - h'_i| < eps`` the entry is the gradient at
     ``h``: ``M[j, i] = [i == a_j]``. Every row then satisfies
     ``sum_i M[j, i] (h_i - h'_i) = y_j - y'_j``.
3. multiplies the matrices from the target down: ``m = e_t^T M_L ... M_1``; the attribution is
   ``(x - x') * m``.
"""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import service.attribution as sa

EPS = 1e-10
TOL = 1e-10
DT = torch.float64
CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
POOLS = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)
BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _tup(v, n: int) -> tuple[int, ...]:
    return tuple(v) if isinstance(v, (tuple, list)) else (v,) * n


def _forward(layer: nn.Module, h: Tensor) -> Tensor:
    """One layer on one example (no batch dimension), written out."""
    if isinstance(layer, nn.Linear):
        return layer.weight @ h + layer.bias
    if isinstance(layer, nn.Flatten):
        return h.reshape(-1)
    if isinstance(layer, nn.ReLU):
        return h.clamp(min=0)
    if isinstance(layer, BATCHNORMS):
        shape = (-1, *([1] * (h.dim() - 1)))
        return ((h - layer.running_mean.view(shape)) * _scale(layer).view(shape)
                + layer.bias.detach().view(shape))
    if isinstance(layer, CONVS):
        conv = (F.conv1d, F.conv2d, F.conv3d)[CONVS.index(type(layer))]
        return conv(h[None], layer.weight, layer.bias, layer.stride, layer.padding)[0]
    if isinstance(layer, POOLS):
        return _pool_by_hand(layer, h, h)[0]
    raise TypeError(type(layer).__name__)


def _windows(layer: nn.Module, spatial: tuple[int, ...]):
    """(output multi-index, [input multi-indices in scanning order]) of every pooling window."""
    n = len(spatial)
    k, s = _tup(layer.kernel_size, n), _tup(layer.stride or layer.kernel_size, n)
    p, d = _tup(layer.padding, n), _tup(layer.dilation, n)
    sizes = []
    for L, kk, ss, pp, dd in zip(spatial, k, s, p, d):
        span = L + 2 * pp - dd * (kk - 1) - 1
        o = (-(-span // ss) if layer.ceil_mode else span // ss) + 1
        if layer.ceil_mode and (o - 1) * ss >= L + pp:  # last window must start inside
            o -= 1
        sizes.append(o)
    for out in itertools.product(*(range(o) for o in sizes)):
        per_dim = [[o * ss - pp + dd * t for t in range(kk)
                    if 0 <= o * ss - pp + dd * t < L]
                   for o, ss, pp, dd, kk, L in zip(out, s, p, d, k, spatial)]
        yield out, list(itertools.product(*per_dim))


def _argmax(h: Tensor, positions: list[tuple[int, ...]]) -> tuple[int, ...]:
    best = positions[0]
    for q in positions[1:]:
        if h[q] > h[best]:
            best = q
    return best


def _pool_by_hand(layer: nn.Module, h: Tensor, hb: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(y, y', M) for one example: the pooled values and the max-pool rule's matrix."""
    c, spatial = h.shape[0], tuple(h.shape[1:])
    wins = list(_windows(layer, spatial))
    out_shape = (c, *tuple(max(o[i] for o, _ in wins) + 1 for i in range(len(spatial))))
    y, yb = h.new_zeros(out_shape), h.new_zeros(out_shape)
    M = h.new_zeros(out_shape + tuple(h.shape))
    for ch in range(c):
        hc, hbc = h[ch], hb[ch]
        for out, positions in wins:
            a, b = _argmax(hc, positions), _argmax(hbc, positions)
            ya, yr = hc[a], hbc[b]
            top = max(ya, yr)
            row = M[(ch, *out)][ch]
            for pos, credit in ((a, top - yr), (b, ya - top)):
                dx = hc[pos] - hbc[pos]
                if abs(dx) >= EPS:
                    row[pos] += credit / dx
            if abs(hc[a] - hbc[a]) < EPS:
                row[a] += 1.0
            y[(ch, *out)], yb[(ch, *out)] = ya, yr
    return y, yb, M.reshape(y.numel(), h.numel())


def _scale(layer: nn.Module) -> Tensor:
    """An eval-mode BatchNorm's per-channel factor, (C,)."""
    return layer.weight.detach() / torch.sqrt(layer.running_var + layer.eps)


def _times_matrix(layer: nn.Module, h: Tensor, hb: Tensor, m: Tensor) -> Tensor:
    """m @ M for the row vector(s) m (k, layer output size), M the layer's multiplier matrix
    (output size x input size) for the pair (h, h'). Diagonal matrices are applied
    elementwise."""
    if isinstance(layer, nn.Linear):
        return m @ layer.weight.detach()
    if isinstance(layer, nn.Flatten):
        return m
    if isinstance(layer, BATCHNORMS):
        per_channel = _scale(layer).view(-1, *([1] * (h.dim() - 1))).expand_as(h)
        return m * per_channel.reshape(1, -1)
    if isinstance(layer, nn.ReLU):
        dx = (h - hb).reshape(-1)
        dy = (h.clamp(min=0) - hb.clamp(min=0)).reshape(-1)
        small = dx.abs() < EPS
        diag = torch.where(small, (h.reshape(-1) > 0).to(DT), dy / torch.where(small, 1.0, dx))
        return m * diag
    if isinstance(layer, CONVS):
        conv = (F.conv1d, F.conv2d, F.conv3d)[CONVS.index(type(layer))]
        basis = torch.eye(h.numel(), dtype=DT).reshape(h.numel(), *h.shape)
        cols = conv(basis, layer.weight.detach(), None, layer.stride, layer.padding)
        return m @ cols.reshape(h.numel(), -1).T
    if isinstance(layer, POOLS):
        return m @ _pool_by_hand(layer, h, hb)[2]
    raise TypeError(type(layer).__name__)


def hand_deeplift(layers: list[nn.Module], x: Tensor, xb: Tensor, seed: Tensor,
                  at: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """(multipliers, h, h') at the input of ``layers[at]`` for one example, seeded with the
    row vector ``seed`` at the network's output."""
    hs, hbs = [x], [xb]
    with torch.no_grad():
        for layer in layers:
            hs.append(_forward(layer, hs[-1]))
            hbs.append(_forward(layer, hbs[-1]))
        m = seed.reshape(1, -1)
        for i in reversed(range(at, len(layers))):
            m = _times_matrix(layers[i], hs[i], hbs[i], m)
    return m.reshape(hs[at].shape), hs[at], hbs[at]


# ---------------------------------------------------------------------------------------------
# the nets


def _net(*layers: nn.Module) -> nn.Sequential:
    torch.manual_seed(len(layers))
    return nn.Sequential(*layers).to(DT).eval()


NETS = {
    # ResNet's stem: overlapping windows, padding
    "stem": (lambda: _net(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
                          nn.Flatten(), nn.Linear(64, 3)), (3, 8, 8)),
    # MaxPool before ReLU, then a second (non-overlapping) pool after a ReLU
    "pool-relu-pool": (lambda: _net(nn.Conv2d(2, 3, 3), nn.MaxPool2d(3, 2), nn.ReLU(),
                                    nn.Conv2d(3, 4, 2, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                    nn.Flatten(), nn.Linear(16, 3)), (2, 9, 9)),
    "non-overlapping": (lambda: _net(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Flatten(), nn.Linear(27, 2)), (1, 8, 8)),
    "1d-ceil": (lambda: _net(nn.Conv1d(2, 3, 3), nn.ReLU(),
                             nn.MaxPool1d(4, 2, padding=1, ceil_mode=True), nn.Flatten(),
                             nn.Linear(18, 2)), (2, 13)),
    "1d-dilated": (lambda: _net(nn.Conv1d(1, 2, 2), nn.MaxPool1d(3, 1, dilation=2), nn.ReLU(),
                                nn.Flatten(), nn.Linear(14, 2)), (1, 12)),
    "2d-ceil": (lambda: _net(nn.Conv2d(1, 2, 2), nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
                             nn.ReLU(), nn.Flatten(), nn.Linear(50, 2)), (1, 9, 9)),
    "3d": (lambda: _net(nn.Conv3d(1, 2, 2), nn.ReLU(), nn.MaxPool3d(2, 1, padding=1),
                        nn.Flatten(), nn.Linear(2 * 5 ** 3, 2)), (1, 5, 5, 5)),
    "linear-relu": (lambda: _net(nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 2)), (5,)),
    # one ReLU module called twice per forward (Captum raises a RuntimeError on this model)
    "reused-relu": (lambda: _reused_relu(), (3,)),
}


def _reused_relu() -> nn.Sequential:
    relu = nn.ReLU()
    return _net(nn.Linear(3, 4), relu, nn.Linear(4, 3), relu)


def _data(shape: tuple[int, ...], n: int, salt: int) -> Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(salt), dtype=DT)


def _baselines(kind: str, x: Tensor) -> Tensor:
    return torch.zeros_like(x) if kind == "zero" else 0.7 * _data(tuple(x.shape[1:]),
                                                                 x.shape[0], 99)


def _one_hot(n: int, i: int) -> Tensor:
    e = torch.zeros(n, dtype=DT)
    e[i] = 1.0
    return e


@pytest.mark.parametrize("baseline", ["zero", "random"])
@pytest.mark.parametrize("name", list(NETS))
def test_deeplift_matches_hand_rule(name: str, baseline: str) -> None:
    build, shape = NETS[name]
    net = build()
    x = _data(shape, 3, 5)
    xb = _baselines(baseline, x)
    n_out = net(x).shape[1]
    target = [i % n_out for i in range(3)]
    ours, delta = sa.DeepLift(net).attribute(x, xb, target=target, return_convergence_delta=True)
    for i, t in enumerate(target):
        m, h, hb = hand_deeplift(list(net), x[i], xb[i], _one_hot(n_out, t))
        expected = (h - hb) * m
        # the oracle itself keeps completeness
        with torch.no_grad():
            diff = (net(x[i:i + 1]) - net(xb[i:i + 1]))[0, t]
        assert abs(expected.sum() - diff) < 1e-10 * max(1.0, abs(diff))
        torch.testing.assert_close(ours[i], expected, atol=TOL, rtol=0)
    assert delta.abs().max() < 1e-10


@pytest.mark.parametrize("name", ["stem", "pool-relu-pool", "3d"])
def test_deeplift_shap_matches_hand_rule(name: str) -> None:
    build, shape = NETS[name]
    net = build()
    x, dist = _data(shape, 2, 6), 0.5 * _data(shape, 3, 7)
    ours = sa.DeepLiftShap(net).attribute(x, dist, target=1)
    n_out = net(x).shape[1]
    for i in range(2):
        per_base = []
        for j in range(3):
            m, h, hb = hand_deeplift(list(net), x[i], dist[j], _one_hot(n_out, 1))
            per_base.append((h - hb) * m)
        torch.testing.assert_close(ours[i], torch.stack(per_base).mean(0), atol=TOL, rtol=0)


@pytest.mark.parametrize("name,at", [("stem", 2), ("stem", 1), ("pool-relu-pool", 3),
                                     ("pool-relu-pool", 6)])
def test_layer_deeplift_matches_hand_rule(name: str, at: int) -> None:
    """LayerDeepLift on the input of ``net[at]`` (a ReLU, a MaxPool or a Linear)."""
    build, shape = NETS[name]
    net = build()
    x = _data(shape, 2, 8)
    xb = _baselines("random", x)
    ours = sa.LayerDeepLift(net, net[at]).attribute(x, xb, target=0,
                                                   attribute_to_layer_input=True)
    n_out = net(x).shape[1]
    for i in range(2):
        m, h, hb = hand_deeplift(list(net), x[i], xb[i], _one_hot(n_out, 0), at=at)
        torch.testing.assert_close(ours[i], (h - hb) * m, atol=TOL, rtol=0)


@pytest.mark.parametrize("name,at,neuron", [("stem", 3, (1, 2, 3)), ("pool-relu-pool", 5, (2, 1, 0))])
def test_neuron_deeplift_matches_hand_rule(name: str, at: int, neuron: tuple) -> None:
    """NeuronDeepLift of one neuron of ``net[at - 1]``'s output (the input of ``net[at]``)."""
    build, shape = NETS[name]
    net = build()
    x = _data(shape, 2, 9)
    xb = _baselines("random", x)
    ours = sa.NeuronDeepLift(net, net[at - 1]).attribute(x, neuron, xb)
    head = list(net)[:at]
    for i in range(2):
        out = x[i]
        for layer in head:
            out = _forward(layer, out)
        seed = torch.zeros_like(out)
        seed[neuron] = 1.0
        m, h, hb = hand_deeplift(head, x[i], xb[i], seed)
        torch.testing.assert_close(ours[i], (h - hb) * m, atol=TOL, rtol=0)


def test_pool_windows_match_torch() -> None:
    """The oracle's windows give torch's pooled values (shapes, padding, ceil_mode, dilation)."""
    for name in NETS:
        build, shape = NETS[name]
        for layer in build():
            if isinstance(layer, POOLS):
                h = _data((2, *shape[1:]), 1, 4)[0]
                torch.testing.assert_close(_pool_by_hand(layer, h, h)[0], layer(h[None])[0],
                                           atol=0, rtol=0)
