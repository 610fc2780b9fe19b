"""The executor: answers a batch of requests with one forward pass for every prediction, and
with fused engine calls for the explanations that can share one (same algorithm, params, input
shape, and reference set where the method takes one), with per-example targets and baselines.

Every request gets its own outcome: a Response or an ExplainError, whatever the batch holds. A
bad request fails alone; an engine failure in a fused group is retried request by request so
that only the request at fault fails, with its own error. Anything unexpected becomes that
request's ModelError and its traceback is logged. Deadlines are checked before each request's
work and before every forward pass of the engine (a scoped forward pre-hook on the model), and a
request whose smallest possible pass would need more saved-activation memory than
``max_pass_bytes`` is refused before it runs.
"""

from __future__ import annotations

import contextlib
import logging
import math
import pathlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from service.attribution._batching import bytes_per_row

from . import postprocess
from .baselines import BaselineResolver
from .cache import BaselineCache, CachedBaseline
from .errors import (
    DeadlineExceeded,
    ExplainError,
    InvalidInput,
    LimitExceeded,
    ModelError,
    internal,
)
from .heatmap import heatmap_png
from .limits import Limits
from .preprocess import decode
from .registry import REGISTRY, AlgorithmEntry, BaselineMode, BuildContext, lookup
from .request import (
    BaselineKind,
    BaselineSpec,
    ClassScore,
    Prediction,
    Request,
    Response,
    TargetExplanation,
    TargetKind,
    Timings,
)
from .spec import InputKind, ModelSpec

Outcome = Response | ExplainError
log = logging.getLogger(__name__)
MIB = 1024 * 1024


class _Expired(Exception):
    """Raised from the deadline hook inside an engine call: some request's deadline passed."""


def _ms(t0: float) -> float:
    return (time.perf_counter() - t0) * 1e3


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Seed torch and numpy for one call, restoring the global random state afterwards."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    state = np.random.get_state()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


@dataclass
class _Item:
    """One valid request on its way through the batch."""

    pos: int
    req: Request
    x: Tensor                 # (1, *shape)
    shown: np.ndarray         # (numel,) values as the caller sent them
    entry: AlgorithmEntry | None = None
    params: dict[str, Any] = field(default_factory=dict)
    targets: list[int] = field(default_factory=list)
    output: Tensor | None = None  # (n_outputs,)
    baseline: CachedBaseline | None = None
    baseline_key: tuple | None = None
    attributions: list[Tensor] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)


class Executor:
    """Prediction and explanation for one model; transport-free."""

    def __init__(self, model: nn.Module, spec: ModelSpec, model_dir: str | pathlib.Path = ".",
                 limits: Limits | None = None, device: torch.device | str | None = None,
                 cache: BaselineCache | None = None, layer: nn.Module | None = None) -> None:
        self.spec = spec
        self.limits = limits or Limits.build(spec)
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.model = model.to(self.device).eval()
        self.dtype = first.dtype if first is not None else torch.float32
        self.cache = cache or BaselineCache()
        self.layer = layer
        self.baselines = BaselineResolver(spec, model_dir, self.limits, self.cache,
                                          self._forward, self.device, self.dtype)
        self.names = postprocess.feature_names(spec)
        self._bytes_per_row: dict[tuple, float] = {}

    # -- public ----------------------------------------------------------------------------

    def run(self, requests: Sequence[Request | ExplainError]) -> list[Outcome]:
        """One outcome per request, in order; never raises. ``requests`` may hold decode
        errors already."""
        try:
            return self._run(requests)
        except Exception:
            log.exception("batch of %d failed as a whole; answering request by request",
                          len(requests))
        outcomes: list[Outcome] = []
        for r in requests:
            try:
                outcomes.extend(self._run([r]))
            except Exception as e:
                log.exception("request %s failed", getattr(r, "request_id", "?"))
                outcomes.append(internal(e))
        return outcomes

    def _run(self, requests: Sequence[Request | ExplainError]) -> list[Outcome]:
        outcomes: list[Outcome | None] = [r if isinstance(r, ExplainError) else None
                                          for r in requests]
        items: list[_Item] = []
        for pos, req in enumerate(requests):
            if isinstance(req, ExplainError):
                continue
            t0 = time.perf_counter()
            try:
                item = self._prepare(pos, req)
            except ExplainError as e:
                outcomes[pos] = e
                continue
            except Exception as e:
                outcomes[pos] = self._unexpected(e, req, "preprocess")
                continue
            item.timings.preprocess_ms = _ms(t0)
            items.append(item)
        items = self._predict(items, outcomes)
        explain = [i for i in items if i.req.explain]
        explain = self._explain(explain, outcomes)
        for item in items:
            if outcomes[item.pos] is None:
                try:
                    outcomes[item.pos] = self._respond(item)
                except ExplainError as e:
                    outcomes[item.pos] = e
                except Exception as e:
                    outcomes[item.pos] = self._unexpected(e, item.req, "postprocess")
        return [o if o is not None else ModelError("", "no outcome") for o in outcomes]

    def _engine_error(self, e: Exception, i: _Item) -> ExplainError:
        """The outcome of an engine call that failed for this request alone. The engine
        checks its arguments with ValueError (Captum's habit): a request whose parameters the
        engine refuses is the caller's mistake (400), named by the engine's message."""
        if isinstance(e, ValueError) and not isinstance(e, ExplainError):
            log.warning("the engine refused request %r (%s)", i.req.request_id,
                        i.entry.name if i.entry else "", exc_info=e)
            name = i.entry.name if i.entry else "the algorithm"
            return InvalidInput("params", f"{name} refused these parameters: {e}")
        return self._unexpected(e, i.req, "explain")

    @staticmethod
    def _unexpected(e: Exception, req: Request, stage: str) -> ExplainError:
        """An exception that is not an ExplainError: logged with its traceback, answered as
        a ModelError."""
        if isinstance(e, ExplainError):
            return e
        log.error("%s failed for request %r (algorithm %s)", stage, req.request_id,
                  req.algorithm, exc_info=e)
        return internal(e, stage)

    # -- stages ------------------------------------------------------------------------------

    def _forward(self, x: Tensor) -> Tensor:
        out = self.model(x)
        if not isinstance(out, Tensor):
            raise ModelError("", f"the model returned {type(out).__name__}, not a tensor")
        return out.reshape(out.shape[0], -1)

    def _deadline_ms(self, req: Request) -> int:
        """The request's deadline, capped by (and by default) ``max_deadline_ms``."""
        cap = self.limits.max_deadline_ms
        return min(req.deadline_ms, cap) if req.deadline_ms and req.deadline_ms > 0 else cap

    def _expires_at(self, req: Request) -> float:
        return req.received_at + self._deadline_ms(req) / 1e3

    def _check_deadline(self, req: Request) -> None:
        waited = (time.monotonic() - req.received_at) * 1e3
        if waited > self._deadline_ms(req):
            raise DeadlineExceeded("deadline_ms", f"{waited:.0f} ms passed, the deadline "
                                   f"was {self._deadline_ms(req)} ms")

    @contextlib.contextmanager
    def _deadline_hook(self, group: list[_Item]) -> Iterator[None]:
        """Before every forward pass of the model inside the block: raise _Expired once the
        earliest deadline of the group has passed."""
        first = min(self._expires_at(i.req) for i in group)

        def check(module: nn.Module, args: object) -> None:
            if time.monotonic() > first:
                raise _Expired()

        handle = self.model.register_forward_pre_hook(check)
        try:
            yield
        finally:
            handle.remove()

    def _row_bytes(self, x: Tensor) -> float:
        """Saved-activation bytes per row of one backward-taping pass, measured once per
        input shape."""
        key = tuple(x.shape[1:])
        if key not in self._bytes_per_row:
            self._bytes_per_row[key] = bytes_per_row(self._forward, x[:1])
        return self._bytes_per_row[key]

    def _prepare(self, pos: int, req: Request) -> _Item:
        spec, limits = self.spec, self.limits
        self._check_deadline(req)
        x, shown = decode(req.inputs, spec, limits, self.device)
        item = _Item(pos, req, x.to(self.dtype), shown)
        self._check_target(req)
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
        item.entry = lookup(name, spec.algorithms)
        item.params = item.entry.resolve_params(req.params, spec.default_params.get(name, {}),
                                                limits)
        mode = item.entry.baseline_mode(item.params)
        if mode is not BaselineMode.NONE:
            b = req.baseline
            if b.kind is BaselineKind.DEFAULT and mode is BaselineMode.REFERENCE_SET:
                refs = [n for n, d in spec.baselines.items() if d.kind == "reference_set"]
                if refs:
                    b = BaselineSpec(BaselineKind.REFERENCE_SET, name=refs[0])
            item.baseline, hit = self.baselines.resolve(b, item.x)
            item.timings.baseline_cache_hit = hit
            rows = item.baseline.tensor.shape[0]
            if mode is BaselineMode.PER_EXAMPLE and rows != 1:
                raise InvalidInput("baseline", f"{item.entry.name} takes one baseline per "
                                   f"input; this baseline has {rows} rows")
            if rows < item.entry.min_reference_rows:
                raise InvalidInput("baseline", f"{item.entry.name} needs a reference set of at "
                                   f"least {item.entry.min_reference_rows} rows, got {rows}",
                                   [n for n, d in spec.baselines.items()
                                    if d.kind == "reference_set"])
            if mode is BaselineMode.REFERENCE_SET:
                canon = self.baselines.canonical(b)
                item.baseline_key = (("input", pos) if self.baselines.is_input_dependent(canon)
                                     else canon.canonical())
        self._check_pass_memory(item)
        return item

    def _min_pass_rows(self, i: _Item) -> int:
        """Rows the smallest engine pass of this request holds: a reference set of K rows is
        evaluated K rows per example in one pass."""
        assert i.entry is not None
        if (i.entry.baseline_mode(i.params) is BaselineMode.REFERENCE_SET
                and i.baseline is not None):
            return int(i.baseline.tensor.shape[0])
        return 1

    def _check_pass_memory(self, i: _Item) -> None:
        if i.entry is None:
            return
        per_row = self._row_bytes(i.x)
        rows = self._min_pass_rows(i)
        need = rows * per_row
        if need > self.limits.max_pass_bytes:
            raise LimitExceeded("baseline" if rows > 1 else "inputs",
                                f"one engine pass needs about {need / MIB:.0f} MiB ({rows} rows "
                                f"x {per_row / MIB:.1f} MiB), above the limit "
                                f"{self.limits.max_pass_bytes / MIB:.0f} MiB (max_pass_bytes)")

    def _check_target(self, req: Request) -> None:
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

    def _targets(self, req: Request, output: Tensor) -> list[int]:
        t = req.target
        kind = t.kind
        if kind is TargetKind.DEFAULT:
            d = self.spec.default_target
            if d.lstrip("-").isdigit():
                return [int(d)]
            if self.spec.class_index(d) is not None:
                return [int(self.spec.class_index(d))]  # type: ignore[arg-type]
            kind = TargetKind.PREDICTED
        if kind is TargetKind.PREDICTED:
            return [int(output.argmax())]
        if kind is TargetKind.INDEX:
            return [t.index]
        if kind is TargetKind.LABEL:
            return [int(self.spec.class_index(t.label))]  # type: ignore[arg-type]
        return [int(i) for i in output.topk(t.k).indices]

    def _predict(self, items: list[_Item], outcomes: list[Outcome | None]) -> list[_Item]:
        """One forward pass for every prediction; on failure, one pass per request."""
        if not items:
            return items
        t0 = time.perf_counter()
        try:
            with torch.no_grad():
                outs = self._forward(torch.cat([i.x for i in items]))
            if outs.shape[0] != len(items):
                raise ModelError("", f"the model gave {outs.shape[0]} rows for {len(items)}")
            ms = _ms(t0)
            for i, out in zip(items, outs):
                i.output, i.timings.predict_ms = out, ms
        except Exception:
            for i in items:
                t1 = time.perf_counter()
                try:
                    with torch.no_grad():
                        i.output = self._forward(i.x)[0]
                    i.timings.predict_ms = _ms(t1)
                except Exception as e:
                    outcomes[i.pos] = self._unexpected(e, i.req, "predict")
        for i in items:
            if outcomes[i.pos] is not None:
                continue
            try:
                if not bool(torch.isfinite(i.output).all()):  # type: ignore[arg-type]
                    raise InvalidInput("inputs", "the model's output on this input is not "
                                       "finite (values too large?)")
                i.targets = self._targets(i.req, i.output)  # type: ignore[arg-type]
            except Exception as e:
                outcomes[i.pos] = self._unexpected(e, i.req, "predict")
        return [i for i in items if outcomes[i.pos] is None]

    def _group_key(self, i: _Item) -> tuple:
        assert i.entry is not None
        key: tuple = (i.entry.name, tuple(sorted(i.params.items())), tuple(i.x.shape),
                      self._chunk_rows(i), i.baseline_key)
        if not i.entry.fusable:
            key += (("request", i.pos),)
        return key

    def _chunk_rows(self, i: _Item) -> int:
        """Rows per engine pass: the server's limit, the client's hint, and as many rows as
        ``max_pass_bytes`` holds (never below the request's smallest pass)."""
        hint = i.req.max_batch_rows
        rows = min(self.limits.max_batch_rows, hint) if hint else self.limits.max_batch_rows
        fit = int(self.limits.max_pass_bytes // max(1.0, self._row_bytes(i.x)))
        return max(1, self._min_pass_rows(i), min(rows, fit))

    def _explain(self, items: list[_Item], outcomes: list[Outcome | None]) -> list[_Item]:
        groups: dict[tuple, list[_Item]] = {}
        for i in items:
            try:
                self._check_deadline(i.req)
                key = self._group_key(i)
            except Exception as e:
                outcomes[i.pos] = self._unexpected(e, i.req, "explain")
                continue
            groups.setdefault(key, []).append(i)
        for group in groups.values():
            self._run_isolated(group, outcomes)
        return [i for i in items if outcomes[i.pos] is None]

    def _run_isolated(self, group: list[_Item], outcomes: list[Outcome | None]) -> None:
        """Runs the group's fused engine call; when it fails, requests whose deadline passed
        fail with DeadlineExceeded and the others run again (a failure other than a deadline:
        one by one), so that only the request at fault fails, with its own error."""
        try:
            with self._deadline_hook(group):
                self._run_group(group)
            return
        except _Expired:
            alive = []
            for i in group:
                try:
                    self._check_deadline(i.req)
                    alive.append(i)
                except DeadlineExceeded as e:
                    outcomes[i.pos] = e
            if len(alive) == len(group):  # the clock moved on between hook and check
                for i in group:
                    outcomes[i.pos] = DeadlineExceeded("deadline_ms", "passed while computing")
                return
            if alive:
                self._run_isolated(alive, outcomes)
        except Exception as e:
            if len(group) == 1:
                outcomes[group[0].pos] = self._engine_error(e, group[0])
                return
            for i in group:
                self._run_isolated([i], outcomes)

    def _run_group(self, group: list[_Item]) -> None:
        """One engine call for every (request, target) row of the group."""
        entry = group[0].entry
        assert entry is not None
        params = group[0].params
        mode = entry.baseline_mode(params)
        rows = [(i, t) for i in group for t in i.targets]
        inputs = torch.cat([i.x for i, _ in rows])  # (rows, *shape)
        targets = [t for _, t in rows]
        if mode is BaselineMode.PER_EXAMPLE:
            baselines = torch.cat([i.baseline.tensor for i, _ in rows])  # type: ignore[union-attr]
        elif mode is BaselineMode.REFERENCE_SET:
            baselines = group[0].baseline.tensor  # type: ignore[union-attr]
        else:
            baselines = None
        ctx = BuildContext(model=self.model, layer=self._layer(entry))
        t0 = time.perf_counter()
        seed = params.get("seed") if entry.stochastic else None
        budget = self._chunk_rows(group[0])
        # Methods that do not chunk themselves run in slices that keep each pass within the
        # rows budget (a reference set of K rows costs K rows per example).
        per_example = baselines.shape[0] if mode is BaselineMode.REFERENCE_SET else 1
        step = len(rows) if entry.chunk_param else max(1, budget // max(1, per_example))
        parts = []
        with _seeded(seed, self.device):
            engine = entry.build(ctx, params)
            for s in range(0, len(rows), step):
                b = baselines[s:s + step] if mode is BaselineMode.PER_EXAMPLE else baselines
                part = entry.execute(engine, inputs[s:s + step], b, targets[s:s + step],
                                     params, budget)
                parts.append(part[0] if isinstance(part, tuple) else part)
        attr = parts[0] if len(parts) == 1 else torch.cat(parts)
        if not isinstance(attr, Tensor) or attr.shape[0] != len(rows):
            raise ModelError("algorithm", f"{entry.name} returned an unexpected result")
        ms = _ms(t0)
        attr = attr.detach()
        for i in group:
            i.attributions = []
        for (i, _), row in zip(rows, attr):
            i.attributions.append(row)
        for i in group:
            i.timings.explain_ms = ms
            i.timings.fused_group_size = len(group)

    def _layer(self, entry: AlgorithmEntry) -> nn.Module | None:
        if not entry.needs_layer:
            return None
        if self.layer is not None:
            return self.layer
        path = self.spec.cam_layer
        if not path:
            raise InvalidInput("algorithm", f"{entry.name} needs a layer; this model's spec "
                               "names no cam_layer")
        try:
            return self.model.get_submodule(path)
        except AttributeError as e:
            raise ModelError("algorithm", f"spec cam_layer {path!r} is not a module") from e

    def _respond(self, i: _Item) -> Response:
        t0 = time.perf_counter()
        out = i.output
        assert out is not None
        spec, req = self.spec, i.req
        labels = spec.class_names

        def label(k: int) -> str:
            return labels[k] if k < len(labels) else str(k)

        logits = out.detach().double().cpu()
        if spec.output_kind == "classification":
            probs = torch.softmax(logits, dim=0)
        else:
            probs = torch.zeros_like(logits)
        top_n = min(5, logits.shape[0])
        order = logits.topk(top_n).indices.tolist()
        best = order[0]
        prediction = Prediction(
            index=best, label=label(best), probability=float(probs[best]),
            top=[ClassScore(k, label(k), float(probs[k]), float(logits[k])) for k in order],
            output=out.detach().cpu().float().numpy())
        explanations = []
        if req.explain:
            entry = i.entry
            assert entry is not None
            k_feat = (req.outputs.top_features if req.outputs.top_features is not None
                      else spec.top_k_features)
            if len(i.attributions) != len(i.targets):
                raise ModelError("algorithm", f"{entry.name} gave {len(i.attributions)} "
                                 f"attributions for {len(i.targets)} targets")
            for t, a in zip(i.targets, i.attributions):
                a_np = a.cpu().double().numpy()
                if a_np.size != math.prod(spec.input_shape) or not np.isfinite(a_np).all():
                    raise InvalidInput("inputs", f"{entry.name} gave non-finite or misshapen "
                                       "attributions for this input (values too large?)")
                inst = float(logits[t])
                base = (float(i.baseline.outputs[:, t].double().mean())
                        if i.baseline is not None else 0.0)
                err = (postprocess.approximation_error(entry.name, entry.completeness, i.params,
                                                       a_np, i.x, inst - base)
                       if i.baseline is not None else None)
                if not (math.isfinite(base) and (err is None or math.isfinite(err))):
                    raise InvalidInput("baseline", "the model's output on the baseline is not "
                                       "finite")
                same_shape = a_np.size == len(self.names)
                signed = postprocess.is_signed(entry.name, i.params)
                why = (postprocess.unsigned_note(entry.name)
                       if req.outputs.reasons and spec.reasons and not signed else "")
                explanations.append(TargetExplanation(
                    target=t, label=label(t),
                    attributions=a.cpu().float().numpy() if req.outputs.attributions else None,
                    instance_output=inst, baseline_output=base, approximation_error=err,
                    top_features=(postprocess.top_features(a_np, i.shown, self.names, k_feat)
                                  if same_shape else []),
                    heatmap_png=heatmap_png(a_np) if req.outputs.heatmap else None,
                    reasons=(postprocess.reasons(a_np, i.shown, _flat(i.x), _reference(i),
                                                 spec, max(k_feat, 1))
                             if req.outputs.reasons and same_shape and signed else []),
                    reasons_note=why))
        i.timings.postprocess_ms = _ms(t0)
        i.timings.total_ms = (time.monotonic() - req.received_at) * 1e3
        return Response(model=spec.name, model_version=spec.version,
                        request_id=req.request_id,
                        algorithm=(i.entry.name if i.entry is not None else ""),
                        prediction=prediction, explanations=explanations, timings=i.timings)


def _flat(t: Tensor) -> np.ndarray:
    return t.detach().reshape(-1).cpu().double().numpy()


def _reference(i: _Item) -> np.ndarray | None:
    """The baseline the attributions were measured from, (numel,): its row, or the mean of a
    reference set's rows; None for methods without a baseline."""
    if i.baseline is None:
        return None
    b = i.baseline.tensor
    return _flat(b.reshape(b.shape[0], -1).double().mean(0))


__all__ = ["Executor", "Outcome", "REGISTRY"]
