"""Validation: a request becomes a WorkItem (decoded input, resolved algorithm and params,
resolved baseline, pass memory checked) or an ExplainError naming the field at fault."""

from __future__ import annotations

from typing import Any

import torch

from . import metrics, noise
from .algorithms import AlgorithmEntry, AlgorithmTable, BaselineMode
from .algorithms.perturbation import features_of
from .baselines import BaselineResolver
from .errors import InvalidInput, LimitExceeded
from .layers import LayerInfo, resolve
from .limits import Limits
from .plan import PassBudget
from .preprocess import decode
from .request import BaselineKind, BaselineSpec, Request, TargetKind
from .spec import InputKind, ModelSpec
from .work import WorkItem, check_deadline


class Validator:
    def __init__(self, spec: ModelSpec, limits: Limits, table: AlgorithmTable,
                 baselines: BaselineResolver, budget: PassBudget, device: torch.device,
                 dtype: torch.dtype, layers: dict[str, LayerInfo] | None = None) -> None:
        self.spec, self.limits, self.table = spec, limits, table
        self.layers = layers or {}
        self.baselines, self.budget = baselines, budget
        self.device, self.dtype = device, dtype
        # by requested name: (its entry, the entry's defaults for this model)
        self._defaults: dict[str, tuple[AlgorithmEntry, dict[str, Any]]] = {}
        self._references = [n for n, d in spec.baselines.items() if d.kind == "reference_set"]

    def prepare(self, pos: int, req: Request) -> WorkItem:
        spec, limits = self.spec, self.limits
        check_deadline(req, limits)
        if req.stream_tokens or req.stream_part_tokens:
            raise InvalidInput("stream_part_tokens" if not req.stream_tokens else "stream_tokens",
                               f"streams a text model's token rows; model {spec.name!r} is not "
                               "a text model")
        x, shown = decode(req.inputs, spec, limits, self.device, shown=req.explain)
        item = WorkItem(pos, req, x if x.dtype == self.dtype else x.to(self.dtype), shown)
        self.check_target(req)
        k = req.outputs.top_features
        if k is not None and not 0 <= k <= limits.max_top_features:
            raise LimitExceeded("outputs.top_features", f"{k} is outside [0, "
                                f"{limits.max_top_features}] (max_top_features)")
        if req.max_batch_rows is not None and req.max_batch_rows < 1:
            raise InvalidInput("limits.max_batch_rows", "must be >= 1")
        if req.outputs.heatmap and spec.input_kind is InputKind.TABULAR:
            raise InvalidInput("outputs.heatmap", "heatmaps are for image-shaped inputs")
        if not req.explain:
            return item
        name = req.algorithm or spec.default_algorithm
        entry = item.entry = self.table.lookup(name, spec.algorithms)
        given = req.params
        if req.noise_tunnel is not None:
            item.noise, given = noise.resolve(req.noise_tunnel, entry, given, limits)
        defaults = self._defaults.get(name)
        if defaults is None or defaults[0] is not entry:  # the same for every request
            defaults = self._defaults[name] = (entry, entry.defaults(
                spec.input_kind.value, spec.default_params.get(name, {})))
        item.params = entry.resolve_params(given, defaults[1], limits)
        if item.noise is not None:
            item.noise = noise.seeded_by(item.noise, item.params)
        features = features_of(item.params, spec.input_shape)
        if features is not None and features[0] > limits.max_features:
            n, field = features
            raise LimitExceeded(field, f"{n} features is above the limit {limits.max_features}"
                                " (max_features); use larger "
                                + ("superpixels" if field == "params.superpixel" else
                                   "strides or windows"))
        metrics.check(req.outputs, limits, entry)
        item.layer = resolve(req.layer, entry, spec, self.layers, req.outputs.heatmap)
        self._baseline(item)
        self.budget.check(item)
        return item

    def _baseline(self, item: WorkItem) -> None:
        """The request's baseline, resolved (cached) and checked against what the method
        takes; a reference set the method shares across a group gets its group key."""
        entry = item.entry
        assert entry is not None
        mode = entry.baseline_mode(item.params)
        if mode is BaselineMode.NONE:
            return
        b = item.req.baseline
        refs = self._references
        if b.kind is BaselineKind.DEFAULT and mode is BaselineMode.REFERENCE_SET and refs:
            b = BaselineSpec(BaselineKind.REFERENCE_SET, name=refs[0])
        item.baseline, hit = self.baselines.resolve(b, item.x)
        item.timings.baseline_cache_hit = hit
        rows = item.baseline.tensor.shape[0]
        if mode is BaselineMode.PER_EXAMPLE and rows != 1:
            raise InvalidInput("baseline", f"{entry.name} takes one baseline per input; this "
                               f"baseline has {rows} rows")
        if rows < entry.min_reference_rows:
            raise InvalidInput("baseline", f"{entry.name} needs a reference set of at least "
                               f"{entry.min_reference_rows} rows, got {rows}", refs)
        if mode is BaselineMode.REFERENCE_SET:
            canon = self.baselines.canonical(b)
            item.baseline_key = (("input", item.pos) if self.baselines.is_input_dependent(canon)
                                 else canon.canonical())

    def check_target(self, req: Request) -> None:
        t, n = req.target, self.spec.n_classes
        if t.kind is TargetKind.INDEX and not 0 <= t.index < max(n, 1):
            raise InvalidInput("target.index", f"{t.index} is outside [0, {n - 1}]")
        if t.kind is TargetKind.LABEL and self.spec.class_index(t.label) is None:
            raise InvalidInput("target.label", f"unknown label {t.label!r}",
                               self.spec.class_names)
        if t.kind is TargetKind.TOP_K:
            cap = min(self.limits.max_top_k, n)
            if t.k < 1:
                raise InvalidInput("target.top_k", f"must be >= 1, got {t.k}")
            if n == 0:
                raise InvalidInput("target.top_k", "this model names no classes")
            if t.k > cap:
                raise LimitExceeded("target.top_k", f"{t.k} is above the limit {cap} "
                                    "(max_top_k, number of classes)")
