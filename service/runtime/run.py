"""Running fused groups: one engine call per group for every (request, target) row (a seeded
method or a noise tunnel: one call per row, each from the request's seed), sliced to the
rows-per-pass budget, under a forward pre-hook that stops the call once the earliest deadline of
the group passed. A failing group is retried so that only the request at fault fails, with its
own error. A request's noise tunnel wraps its engine object in the one ``attribute`` path; the
metrics a request asks for run after the fused calls, per request, under the same deadline
hook."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from service import attribution as A

from . import metrics
from .algorithms import AlgorithmEntry, BaselineMode, BuildContext, Family, tunnel
from .algorithms.tunnel import NoiseOptions
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


def attribute(entry: AlgorithmEntry, engine: Any, inputs: Tensor, baselines: Tensor | None,
              mode: BaselineMode, targets: list[int], params: dict[str, Any], budget: int,
              noise: NoiseOptions | None = None) -> Tensor:
    """The attributions (rows, *shape) of ``engine`` for ``inputs`` (rows, *shape), with
    ``baselines`` (rows, *shape) per example or a reference set (K, *shape), and, with
    ``noise``, inside a noise tunnel. Methods that do not chunk themselves run in slices that
    keep each pass within ``budget`` rows (a reference set of K rows costs K rows per example,
    a noise tunnel its noisy copies per call)."""
    rows = inputs.shape[0]
    per_example = (baselines.shape[0] if baselines is not None
                   and mode is BaselineMode.REFERENCE_SET else 1)
    copies = tunnel.copies_per_call(noise, rows * per_example, budget) if noise else 1
    step = rows if entry.chunk_param else max(1, budget // copies // per_example)
    parts = []
    for s in range(0, rows, step):
        b = (baselines[s:s + step] if baselines is not None
             and mode is BaselineMode.PER_EXAMPLE else baselines)
        if noise is None:
            part = entry.execute(engine, inputs[s:s + step], b, targets[s:s + step], params,
                                 budget)
        else:
            part = tunnel.execute(entry, engine, noise, inputs[s:s + step], b,
                                  targets[s:s + step], params, budget, per_example)
        parts.append(part[0] if isinstance(part, tuple) else part)
    return parts[0] if len(parts) == 1 else torch.cat(parts)


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
        ctx = self._context(group[0])
        t0 = time.perf_counter()
        noise = group[0].noise  # a request with a noise tunnel is alone in its group
        seed = noise.seed if noise is not None else (params.get("seed") if entry.stochastic
                                                     else None)
        budget = self.budget.chunk_rows(group[0])
        if seed is None:
            attr = attribute(entry, entry.make(ctx, params), inputs, baselines, mode, targets,
                             params, budget)
        else:
            # One row per call, each from the request's seed: the random draws are made per
            # call, so a row's answer depends on its input, target, baseline, params and seed
            # alone, not on the request's other topK targets nor on the rows budget.
            parts = []
            for r in range(len(rows)):
                b = (baselines[r:r + 1] if baselines is not None
                     and mode is BaselineMode.PER_EXAMPLE else baselines)
                with seeded(seed, self.device):
                    parts.append(attribute(entry, entry.make(ctx, params), inputs[r:r + 1], b,
                                           mode, targets[r:r + 1], params, budget, noise))
            attr = torch.cat(parts)
        if not isinstance(attr, Tensor) or attr.shape[0] != len(rows):
            raise ModelError("algorithm", f"{entry.name} returned an unexpected result")
        took = ms(t0)
        attr = attr.detach()
        for i in group:
            i.attributions = []
        for (i, _), row in zip(rows, attr):
            i.attributions.append(row)
        if entry.family is Family.LAYER and ctx.layer is not None:
            self._layer_values(group, ctx)
        for i in group:
            i.timings.explain_ms = took
            i.timings.fused_group_size = len(group)

    def measure(self, i: WorkItem, outcomes: Outcomes) -> None:
        """The metrics the request asked for (``outputs.metrics``), on its returned
        attributions: extra passes after its engine call, under its own deadline; a failure
        is this request's outcome."""
        names = metrics.requested(i.req.outputs)
        if not names or i.entry is None or outcomes[i.pos] is not None:
            return
        try:
            with self._deadline_hook([i]):
                i.metrics = self._measure(i, names)
        except _Expired:
            outcomes[i.pos] = DeadlineExceeded("deadline_ms", "passed while computing metrics")
        except Exception as e:
            outcomes[i.pos] = self._engine_error(e, i)

    def _measure(self, i: WorkItem, names: tuple[str, ...]) -> list[dict[str, float]]:
        """Per target, metric name -> value. Every metric starts from the request's seed
        (the noise tunnel's, or ``params.seed``, else 0)."""
        entry, params = i.entry, i.params
        assert entry is not None
        mode = entry.baseline_mode(params)
        n_targets = len(i.targets)
        rows = i.x.repeat(n_targets, *([1] * (i.x.dim() - 1)))    # (T, *shape)
        attrs = torch.stack(i.attributions)                       # (T, *shape)
        base = i.baseline.tensor if i.baseline is not None else None
        budget = self.budget.chunk_rows(i)
        n = metrics.samples(i.req.outputs, self.limits)
        seed = i.noise.seed if i.noise is not None else int(params.get("seed", 0))
        engine = entry.make(self._context(i), params)

        def forward(x: Tensor) -> Tensor:
            return self.model(x).reshape(x.shape[0], -1)          # (rows, n_outputs)

        def explain(inputs: Tensor | tuple[Tensor, ...], target: list[int]) -> Tensor:
            x = inputs[0] if isinstance(inputs, tuple) else inputs  # (rows, *shape)
            b = (base.expand(x.shape[0], *base.shape[1:])
                 if base is not None and mode is BaselineMode.PER_EXAMPLE else base)
            return attribute(entry, engine, x, b, mode, target, params, budget, i.noise)

        if "infidelity" in names and attrs.shape != rows.shape:
            raise InvalidInput("outputs.metrics", f"infidelity needs attributions of the "
                               f"input's shape; {entry.name} gives {tuple(attrs.shape[1:])}",
                               ["sensitivity"])
        out: list[dict[str, float]] = [{} for _ in i.targets]
        for name in names:
            with seeded(seed, self.device):
                values = (metrics.infidelity(forward, rows, attrs, i.targets, n, budget)
                          if name == "infidelity"
                          else metrics.sensitivity(explain, rows, i.targets, n, budget))
            for d, v in zip(out, values.reshape(-1).tolist()):
                d[name] = float(v)
        return out

    def _layer_values(self, group: list[WorkItem], ctx: BuildContext) -> None:
        """The layer tensor each request's layer attributions are about (what their top
        features show as values): one forward for the group."""
        assert ctx.layer is not None
        with torch.no_grad():
            values = A.LayerActivation(self.model, ctx.layer).attribute(
                torch.cat([i.x for i in group]), attribute_to_layer_input=ctx.layer_input)
        values = values[0] if isinstance(values, tuple) else values  # (requests, *layer shape)
        for i, v in zip(group, values.detach()):
            i.layer_values = [v]

    def _context(self, i: WorkItem) -> BuildContext:
        """What the group's engine is built with: the model and the request's layer choice (the
        runner's ``layer`` module, when given, in place of the chosen one)."""
        choice = i.layer
        if choice is None:
            if i.entry is not None and i.entry.needs_layer:
                raise InvalidInput("layer.name", f"{i.entry.name} needs a layer; this model's "
                                   "spec names none")
            return BuildContext(model=self.model)
        try:
            module = (self.layer if self.layer is not None
                      else self.model.get_submodule(choice.info.module))
        except AttributeError as e:
            raise ModelError("layer.name", f"layer {choice.info.name}'s module "
                             f"{choice.info.module!r} is not in the model") from e
        return BuildContext(model=self.model, layer=module, layer_input=choice.to_input,
                            neuron=choice.neuron, layer_shape=choice.shape)
