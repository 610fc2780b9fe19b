"""The executor: answers a batch of requests with one forward pass for every prediction, and
with fused engine calls for the explanations that can share one (same algorithm, params, input
shape, and reference set where the method takes one), with per-example targets and baselines.

Its stages are modules of their own: ``validate`` (a request becomes a work item or an error),
``predict`` (the batched forward and the targets), ``plan`` (memory per pass and the fused
groups), ``run`` (the engine calls, with deadlines and isolation) and ``respond`` (the Response).

Every request gets its own outcome: a Response or an ExplainError, whatever the batch holds. A
bad request fails alone; an engine failure in a fused group is retried request by request so
that only the request at fault fails, with its own error. Anything unexpected becomes that
request's ModelError and its traceback is logged.
"""

from __future__ import annotations

import pathlib
import time
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .algorithms import AlgorithmTable, default_table
from .baselines import BaselineResolver
from .cache import BaselineCache
from .errors import ExplainError, ModelError, internal
from .layers import measure
from .limits import Limits
from .plan import PassBudget, plan
from .predict import predict
from .request import Request
from .respond import Responder
from .run import GroupRunner
from .spec import ModelSpec
from .validate import Validator
from .work import Outcome, Outcomes, WorkItem, log, ms, unexpected


class Executor:
    """Prediction and explanation for one model; transport-free. ``table`` is the algorithm
    table it serves (the default table if None); the spec is checked against it here, so a
    spec enabling an algorithm the table lacks fails at load (SpecError naming the key), as
    does a spec layer naming a module the model lacks (``layers.measure``)."""

    def __init__(self, model: nn.Module, spec: ModelSpec, model_dir: str | pathlib.Path = ".",
                 limits: Limits | None = None, device: torch.device | str | None = None,
                 cache: BaselineCache | None = None, layer: nn.Module | None = None,
                 table: AlgorithmTable | None = None, channels_last: bool | None = None) -> None:
        self.spec = spec
        self.limits = limits or Limits.build(spec)
        self.table = table if table is not None else default_table()
        self.table.check_spec(spec, self.limits)
        first = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (
            first.device if first is not None else torch.device("cpu"))
        self.model = model.to(self.device).eval()
        if channels_last is None:
            channels_last = prefers_channels_last(self.model, spec)
        if channels_last:
            self.model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # 4-D tensors only; not in the stubs
        self.channels_last = channels_last
        self.dtype = first.dtype if first is not None else torch.float32
        self.layers = measure(self.model, spec, self.device, self.dtype)  # name -> LayerInfo
        self.cache = cache or BaselineCache()
        self.baselines = BaselineResolver(spec, model_dir, self.limits, self.cache,
                                          self._forward, self.device, self.dtype)
        self.budget = PassBudget(self._forward, self.limits)
        self.validator = Validator(spec, self.limits, self.table, self.baselines, self.budget,
                                   self.device, self.dtype, self.layers)
        self.runner = GroupRunner(self.model, spec, self.limits, self.budget, self.device, layer)
        self.responder = Responder(spec)

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
        outcomes: Outcomes = [r if isinstance(r, ExplainError) else None for r in requests]
        items: list[WorkItem] = []
        for pos, req in enumerate(requests):
            if isinstance(req, ExplainError):
                continue
            t0 = time.perf_counter()
            try:
                item = self.validator.prepare(pos, req)
            except Exception as e:
                outcomes[pos] = unexpected(e, req, "preprocess")
                continue
            item.timings.preprocess_ms = ms(t0)
            items.append(item)
        items = predict(items, outcomes, self._forward, self.spec, self.responder.predictions)
        for group in plan([i for i in items if i.req.explain], self.budget, outcomes):
            self.runner.run_isolated(group, outcomes)
        for item in items:  # per request, after the fused calls
            if item.req.explain:
                self.runner.measure(item, outcomes)
        for item in items:
            if outcomes[item.pos] is None:
                try:
                    outcomes[item.pos] = self.responder.respond(item)
                except Exception as e:
                    outcomes[item.pos] = unexpected(e, item.req, "postprocess")
        return [o if o is not None else ModelError("", "no outcome") for o in outcomes]

    def _forward(self, x: Tensor) -> Tensor:
        """The model's output as (rows, n_outputs)."""
        out = self.model(x)
        if not isinstance(out, Tensor):
            raise ModelError("", f"the model returned {type(out).__name__}, not a tensor")
        return out.reshape(out.shape[0], -1)


def prefers_channels_last(model: nn.Module, spec: ModelSpec) -> bool:
    """Whether the model's 4-D weights should be channels-last (NHWC): for image inputs
    ``(C, H, W)`` through 2-D convolutions. Convolutions then give channels-last activations
    (and gradients), which PyTorch's CPU kernels pool and convolve several times faster than
    NCHW on the batches fused explanations run (bench/README.md: digits' IG 0.61x the time,
    max-pooling 10x per row); answers differ by float rounding only. The inputs stay as they
    are: no copy per request."""
    return len(spec.input_shape) == 3 and any(isinstance(m, nn.Conv2d) for m in model.modules())


__all__ = ["Executor", "Outcome", "prefers_channels_last"]
