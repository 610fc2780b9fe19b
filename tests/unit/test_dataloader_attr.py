"""DataLoaderAttribution against captum's (same dataloader, same options) and a closed form."""

from __future__ import annotations

import math

import captum.attr as ca
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import service.attribution as sa


def _data(n: int = 7) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    return TensorDataset(
        torch.randn(n, 3, generator=g, dtype=torch.float64),
        torch.randn(n, 2, 2, generator=g, dtype=torch.float64),
        torch.randint(0, 4, (n, 1), generator=g),                      # an integer element
    )


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.lin = nn.Linear(8, 2).double()

    def forward(self, a, b, c=None):
        parts = [a, b.flatten(1)] + ([] if c is None else [c.double()])
        h = torch.cat(parts, 1)
        return torch.tanh(self.lin(nn.functional.pad(h, (0, 8 - h.shape[1]))))


def _mean_and_max(accum, output, inputs):
    s, n, m = accum if accum is not None else (0.0, 0, None)
    top = output.max(0).values
    return s + output.sum(0), n + output.shape[0], top if m is None else torch.maximum(m, top)


def _metric(accum):
    s, n, m = accum
    return torch.cat([s / n, m])                                       # (4,)


CASES = {
    "default": {},
    "masks-shared-ids": {"feature_mask": (torch.tensor([[0, 1, 1]]),
                                          torch.tensor([[[2, 0], [3, 3]]]),
                                          torch.tensor([[2]]))},
    "absent-ids-ppp3": {"feature_mask": (torch.tensor([[0, 5, 5]]), torch.tensor([[[2, 2], [0, 0]]]),
                                         torch.tensor([[7]])), "perturbations_per_pass": 3},
    "baselines": {"baselines": (torch.tensor([[0.5, -1.0, 2.0]], dtype=torch.float64), 0.25, 1.5)},
    "reduce-metric": {"reduce": _mean_and_max, "to_metric": _metric, "perturbations_per_pass": 4},
    "scalar-metric": {"to_metric": lambda acc: acc.sum()},
    "matrix-metric": {"to_metric": lambda acc: acc[:3]},
    "roles": {"input_roles": (0, 2, 1)},
    "roles-two-attr": {"input_roles": (0, 0, 2), "baselines": (0.1, -0.2)},
}


@pytest.mark.parametrize("return_input_shape", [True, False])
@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_matches_captum(case: str, return_input_shape: bool) -> None:
    kw = dict(CASES[case], return_input_shape=return_input_shape)
    model = Net()
    loader = DataLoader(_data(), batch_size=3)
    ours = sa.DataLoaderAttribution(sa.FeatureAblation(model)).attribute(loader, **kw)
    theirs = ca.DataLoaderAttribution(ca.FeatureAblation(model)).attribute(loader, **kw)
    ours_t = ours if isinstance(ours, tuple) else (ours,)
    theirs_t = theirs if isinstance(theirs, tuple) else (theirs,)
    assert type(ours) is type(theirs) and len(ours_t) == len(theirs_t)
    for o, t in zip(ours_t, theirs_t):
        assert o.shape == t.shape
        torch.testing.assert_close(o, t.to(o.dtype), atol=1e-12, rtol=1e-10)


def test_closed_form_for_a_linear_model_and_a_mean_metric() -> None:
    # f(x) = x @ w; metric = mean over the dataset; ablating feature j to b changes the metric
    # by w_j * (mean_j - b)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(10, 4, generator=g, dtype=torch.float64)
    w = torch.randn(4, generator=g, dtype=torch.float64)
    b = torch.tensor([[0.5, -0.5, 1.0, 0.0]], dtype=torch.float64)
    loader = DataLoader(x, batch_size=4)                                   # yields bare tensors
    attr = sa.DataLoaderAttribution(sa.FeatureAblation(lambda t: t @ w)).attribute(
        loader, baselines=b, to_metric=lambda acc: acc.mean())
    assert isinstance(attr, torch.Tensor) and attr.shape == (1, 4)
    torch.testing.assert_close(attr[0], w * (x.mean(0) - b[0]), atol=1e-12, rtol=0)


class CountingLoader:
    """An iterable over fixed batches that counts its traversals."""

    def __init__(self, batches) -> None:
        self.batches, self.traversals = batches, 0

    def __iter__(self):
        self.traversals += 1
        return iter(self.batches)


@pytest.mark.parametrize("per_pass", [1, 2, 5, 9])
def test_one_traversal_per_pass_of_features(per_pass: int) -> None:
    data = _data()
    loader = CountingLoader([tuple(t[i:i + 3] for t in data.tensors) for i in range(0, 7, 3)])
    calls = []
    model = Net()

    def forward(*xs):
        calls.append(1)
        return model(*xs)

    attr = sa.DataLoaderAttribution(sa.FeatureAblation(forward)).attribute(
        loader, perturbations_per_pass=per_pass)
    n_features = 3 + 4 + 1
    # one look at the first batch, one traversal unperturbed, then the passes of features
    assert loader.traversals == 2 + math.ceil(n_features / per_pass)
    assert len(calls) == 3 * (1 + n_features)            # a forward per batch and perturbation
    # the metric: 7 examples x 2 outputs concatenated
    assert [a.shape for a in attr] == [(14, 3), (14, 2, 2), (14, 1)]


def test_bad_arguments_name_the_field() -> None:
    loader = DataLoader(_data(), batch_size=3)
    dl = sa.DataLoaderAttribution(sa.FeatureAblation(Net()))
    with pytest.raises(AssertionError, match="attr_method"):
        sa.DataLoaderAttribution(sa.FeaturePermutation(Net()))
    with pytest.raises(AssertionError, match="input_roles"):
        dl.attribute(loader, input_roles=(0, 1))
    with pytest.raises(ValueError, match=r"input_roles.*need_attr"):
        dl.attribute(loader, input_roles=(1, 2, 2))
    # rows that differ: a per-example mask (identical rows collapse to one shared mask)
    with pytest.raises(ValueError, match=r"feature_mask\[0\]. has 3 rows"):
        dl.attribute(loader, feature_mask=(torch.arange(9).reshape(3, 3),
                                           torch.zeros(1, 2, 2, dtype=torch.long),
                                           torch.zeros(1, 1, dtype=torch.long)))
    with pytest.raises(ValueError, match=r"baselines\[1\]"):
        dl.attribute(loader, baselines=(0.0, torch.zeros(3, 2, 2), 0))
    with pytest.raises(AssertionError, match="must be a Tensor"):
        dl.attribute(loader, to_metric=lambda acc: float(acc.sum()))
    with pytest.raises(ValueError, match="perturbations_per_pass"):
        dl.attribute(loader, perturbations_per_pass=0)
    with pytest.raises(ValueError, match="no batch"):
        dl.attribute([])
    with pytest.raises(NotImplementedError):
        dl.attribute_future()


def test_input_role_values_are_captums() -> None:
    from captum.attr._core.dataloader_attr import InputRole as TheirRole
    for name in ("need_attr", "need_forward", "no_forward"):
        assert getattr(sa.InputRole, name) == getattr(TheirRole, name)


def test_progress_counts_traversals(capsys) -> None:
    loader = DataLoader(_data(), batch_size=4)
    sa.DataLoaderAttribution(sa.FeatureAblation(Net())).attribute(
        loader, perturbations_per_pass=3, show_progress=True)
    err = capsys.readouterr().err
    assert "4/4" in err                        # 1 unperturbed + ceil(8 / 3) passes of features
