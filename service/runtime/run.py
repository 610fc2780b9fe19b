"""Running fused groups: one engine call per group for every (request, target) row (a seeded
method: one call per row, each from the request's seed), sliced to the rows-per-pass budget,
under a forward pre-hook that stops the call once the earliest deadline of the group passed.
A failing group is retried so that only the request at fault fails, with its own error."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import numpy as np
import torch
from torch import Tensor, nn

from .algorithms import AlgorithmEntry, BaselineMode, BuildContext
from .errors import DeadlineExceeded, ExplainError, InvalidInput, ModelError
from .limits import Limits
from .plan import PassBudget
from .spec import ModelSpec
from .work import Outcomes, WorkItem, check_deadline, expires_at, log, ms, unexpected


class _Expired(Exception):
    """Raised from the deadline hook inside an engine call: some request's deadline passed."""


@contextlib.contextmanager
def seeded(seed: int | None, device: torch.device) -> Iterator[None]:
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


class GroupRunner:
    def __init__(self, model: nn.Module, spec: ModelSpec, limits: Limits, budget: PassBudget,
                 device: torch.device, layer: nn.Module | None = None) -> None:
        self.model, self.spec, self.limits, self.budget = model, spec, limits, budget
        self.device, self.layer = device, layer

    @contextlib.contextmanager
    def _deadline_hook(self, group: list[WorkItem]) -> Iterator[None]:
        """Before every forward pass of the model inside the block: raise _Expired once the
        earliest deadline of the group has passed."""
        first = min(expires_at(i.req, self.limits) for i in group)

        def check(module: nn.Module, args: object) -> None:
            if time.monotonic() > first:
                raise _Expired()

        handle = self.model.register_forward_pre_hook(check)
        try:
            yield
        finally:
            handle.remove()

    def run_isolated(self, group: list[WorkItem], outcomes: Outcomes) -> None:
        """Runs the group's fused engine call; when it fails, requests whose deadline passed
        fail with DeadlineExceeded and the others run again (a failure other than a deadline:
        one by one), so that only the request at fault fails, with its own error."""
        try:
            with self._deadline_hook(group):
                self.run_group(group)
            return
        except _Expired:
            alive = []
            for i in group:
                try:
                    check_deadline(i.req, self.limits)
                    alive.append(i)
                except DeadlineExceeded as e:
                    outcomes[i.pos] = e
            if len(alive) == len(group):  # the clock moved on between hook and check
                for i in group:
                    outcomes[i.pos] = DeadlineExceeded("deadline_ms", "passed while computing")
                return
            if alive:
                self.run_isolated(alive, outcomes)
        except Exception as e:
            if len(group) == 1:
                outcomes[group[0].pos] = self._engine_error(e, group[0])
                return
            for i in group:
                self.run_isolated([i], outcomes)

    @staticmethod
    def _engine_error(e: Exception, i: WorkItem) -> ExplainError:
        """The outcome of an engine call that failed for this request alone. The engine
        checks its arguments with ValueError (Captum's habit): a request whose parameters the
        engine refuses is the caller's mistake (400), named by the engine's message."""
        if isinstance(e, ValueError) and not isinstance(e, ExplainError):
            log.warning("the engine refused request %r (%s)", i.req.request_id,
                        i.entry.name if i.entry else "", exc_info=e)
            name = i.entry.name if i.entry else "the algorithm"
            return InvalidInput("params", f"{name} refused these parameters: {e}")
        return unexpected(e, i.req, "explain")

    def run_group(self, group: list[WorkItem]) -> None:
        """One engine call for every (request, target) row of the group."""
        entry = group[0].entry
        assert entry is not None
        params = group[0].params
        mode = entry.baseline_mode(params)
        rows = [(i, t) for i in group for t in i.targets]
        inputs = torch.cat([i.x for i, _ in rows])  # (rows, *shape)
        targets = [t for _, t in rows]
        baselines: Tensor | None = None
        if mode is not BaselineMode.NONE:
            tensors = [i.baseline.tensor for i, _ in rows if i.baseline is not None]
            if len(tensors) != len(rows):
                raise ModelError("baseline", f"{entry.name}: a request has no baseline")
            # PER_EXAMPLE: (rows, *shape); REFERENCE_SET: the group's (K, *shape)
            baselines = torch.cat(tensors) if mode is BaselineMode.PER_EXAMPLE else tensors[0]
        ctx = BuildContext(model=self.model, layer=self._layer(entry))
        t0 = time.perf_counter()
        seed = params.get("seed") if entry.stochastic else None
        budget = self.budget.chunk_rows(group[0])
        # Methods that do not chunk themselves run in slices that keep each pass within the
        # rows budget (a reference set of K rows costs K rows per example). A seeded method
        # runs one row per call, each from the request's seed: its random draws are made per
        # call, so a row's answer then depends on its input, target, baseline, params and
        # seed alone, not on the request's other topK targets nor on the rows budget.
        per_example = (baselines.shape[0] if baselines is not None
                       and mode is BaselineMode.REFERENCE_SET else 1)
        step = (1 if seed is not None else len(rows) if entry.chunk_param
                else max(1, budget // max(1, per_example)))
        parts = []
        engine = entry.make(ctx, params) if seed is None else None
        for s in range(0, len(rows), step):
            b = (baselines[s:s + step] if baselines is not None
                 and mode is BaselineMode.PER_EXAMPLE else baselines)
            with seeded(seed, self.device):
                call = engine if engine is not None else entry.make(ctx, params)
                part = entry.execute(call, inputs[s:s + step], b, targets[s:s + step],
                                     params, budget)
            parts.append(part[0] if isinstance(part, tuple) else part)
        attr = parts[0] if len(parts) == 1 else torch.cat(parts)
        if not isinstance(attr, Tensor) or attr.shape[0] != len(rows):
            raise ModelError("algorithm", f"{entry.name} returned an unexpected result")
        took = ms(t0)
        attr = attr.detach()
        for i in group:
            i.attributions = []
        for (i, _), row in zip(rows, attr):
            i.attributions.append(row)
        for i in group:
            i.timings.explain_ms = took
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
