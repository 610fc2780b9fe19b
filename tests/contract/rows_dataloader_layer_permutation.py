"""Contract rows for DataLoaderAttribution and LayerFeaturePermutation.

DataLoaderAttribution rows feed the row's examples through a DataLoader (batches of 3, the
model's extra argument as a need_forward element) and compare with captum's on the same
loader; deterministic, so exact up to float rounding. LayerFeaturePermutation draws its
permutations from torch's global generator in captum's order: identical under the same seed.
"""

from __future__ import annotations

from typing import Any

import captum.attr as ca
import torch
from torch.utils.data import DataLoader, TensorDataset

import service.attribution as sa

from . import models_layer, models_perturbation  # noqa: F401  (register the models)
from .models import ModelSpec
from .rows_layer import layer_case
from .rows_perturbation import MODELS_ALL, _const, group_mask
from .table import Case, extra


class OverLoader:
    """Runs a DataLoaderAttribution over a DataLoader of the row's inputs."""

    def __init__(self, lib: Any, model: Any) -> None:
        self.dl_attr = lib.DataLoaderAttribution(lib.FeatureAblation(model))

    def attribute(self, inputs, additional_forward_args=None, batch_size: int = 3, **kwargs):
        xs = inputs if isinstance(inputs, tuple) else (inputs,)
        args = tuple(additional_forward_args or ())
        loader = DataLoader(TensorDataset(*xs, *args), batch_size=batch_size)
        roles = (0,) * len(xs) + (1,) * len(args)
        return self.dl_attr.attribute(loader, input_roles=roles, **kwargs)


def _column(spec: ModelSpec):
    """A ``reduce`` keeping one output per example (column 1 of a multi-output model)."""
    col = min(1, spec.n_outputs - 1)

    def reduce(accum, output, inputs):
        out = output[:, col] if output.dim() == 2 else output
        return out if accum is None else torch.cat([accum, out])

    return reduce


def _dl(spec: ModelSpec, rows: list[int], **more) -> dict:
    return {"reduce": _column(spec), **extra(spec, rows), **more}


def _mean_metric(spec: ModelSpec, rows: list[int]) -> dict:
    return _dl(spec, rows, to_metric=lambda acc: acc.mean(0, keepdim=True),
               feature_mask=group_mask(spec, rows), perturbations_per_pass=4)


ROWS: list[Case] = []
# one feature per scalar (a traversal each) only on the small inputs; images go by groups
for _m in ("linear", "mlp", "two_input"):
    ROWS.append(Case("DataLoaderAttribution", _m, lambda m: OverLoader(sa, m),
                     lambda m: OverLoader(ca, m), _dl))
for _m in MODELS_ALL:
    ROWS += [
        Case("DataLoaderAttribution-groups-baselines-ppp3", _m, lambda m: OverLoader(sa, m),
             lambda m: OverLoader(ca, m),
             lambda s, r: _dl(s, r, feature_mask=group_mask(s, r), baselines=_const(s, 0.25),
                              perturbations_per_pass=3)),
        # one metric for the whole dataset: one attribution row, not one per example
        Case("DataLoaderAttribution-mean-metric", _m, lambda m: OverLoader(sa, m),
             lambda m: OverLoader(ca, m), _mean_metric, batch_equals_singles=False),
    ]


def _lfp(spec: ModelSpec, rows: list[int], **more) -> dict:
    """No target: captum 0.9.0's LayerFeaturePermutation selects a target twice and fails for
    any target; all outputs of each example are attributed (rows example-major, flattened)."""
    return {**extra(spec, rows), **more}


def _lfp_groups(spec: ModelSpec, rows: list[int]) -> dict:
    """The CNN's conv2 output grouped by channel (6 features), 4 permutations per pass."""
    mask = torch.arange(6).view(1, 6, 1, 1).expand(1, 6, 4, 4).clone()
    return _lfp(spec, rows, layer_mask=mask, perturbations_per_eval=4)


def _column_model(model, col: int = 1):
    return lambda *args: model(*args)[:, col]


class TargetOne:
    """Our LayerFeaturePermutation asked for target 1."""

    def __init__(self, model, layer) -> None:
        self.lfp = sa.LayerFeaturePermutation(model, layer)

    def attribute(self, inputs, **kwargs):
        return self.lfp.attribute(inputs, target=1, **kwargs)


for _m in ("mlp", "cnn", "text", "tuple_layer"):
    ROWS.append(layer_case("LayerFeaturePermutation", _m, sa.LayerFeaturePermutation,
                           ca.LayerFeaturePermutation, _lfp, sampled=True))
ROWS += [
    layer_case("LayerFeaturePermutation-channels-ppe4", "cnn", sa.LayerFeaturePermutation,
               ca.LayerFeaturePermutation, _lfp_groups, sampled=True),
    # a target (ours selects it once): the oracle is captum's on the model's column 1
    layer_case("LayerFeaturePermutation-target", "mlp", TargetOne,
               lambda m, layer: ca.LayerFeaturePermutation(_column_model(m), layer), _lfp,
               sampled=True),
]
