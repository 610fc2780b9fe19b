"""Where a handler's time goes, by stage, without changing the served code: ``StageClock``
wraps named functions (module attributes or class methods) with wall-clock timers and charges
each call's time to its stage *exclusively* (a nested stage's time is not counted twice: time
in ``ParseDict`` called from ``decode_row`` counts as protobuf-JSON mapping, the rest of
``decode_row`` as decoding). Used in-process by bench/service_throughput.py and inside a
TorchServe worker by bench/profiled_handler.py. A target that no longer exists is skipped and
listed in ``missing`` (the served code moved on; the table then says so).

The timers cost about a microsecond per wrapped call, small next to the stages they time.
"""

from __future__ import annotations

import functools
import importlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any

# (stage, "module:attribute[.attribute]"), outermost first. The stage names are the columns of
# bench/README.md's profile table.
TARGETS: tuple[tuple[str, str], ...] = (
    # names are patched where the caller looks them up (``from x import f`` copies f)
    ("decode: other", "handlers.explain_handler:decode_row"),
    ("decode: other", "service.wire.rows:request_from_body"),
    ("decode: JSON checks", "service.wire.convert:_check_json"),
    ("decode: JSON checks", "service.wire.convert:_check_types"),
    ("decode: protobuf-JSON mapping", "google.protobuf.json_format:ParseDict"),
    ("decode: protobuf binary", "service.wire.rows:request_from_serialized"),
    ("decode: protobuf-JSON mapping", "service.wire.convert:parse_dict"),
    ("decode: proto to request", "service.wire.convert:request_from_proto"),
    ("validate: other", "service.runtime.validate:Validator.prepare"),
    ("validate: tensor/PNG decode", "service.runtime.validate:decode"),
    ("validate: baseline (cached)", "service.runtime.validate:Validator._baseline"),
    ("predict: checks", "service.runtime.executor:predict"),
    ("predict: forward", "service.runtime.executor:Executor._forward"),
    ("engine", "service.runtime.run:GroupRunner.run_isolated"),
    ("respond: batch predictions", "service.runtime.respond:Responder.predictions"),
    ("respond: build response", "service.runtime.respond:Responder.respond"),
    ("encode: other", "handlers.explain_handler:encode_outcome"),
    ("encode: JSON dumps", "service.wire.rows:response_to_json"),
    ("encode: prediction answer as text", "service.wire.convert:prediction_json"),
    ("encode: response to proto", "service.wire.convert:response_to_proto"),
    ("encode: protobuf-JSON mapping", "google.protobuf.json_format:MessageToDict"),
    ("encode: protobuf-JSON mapping", "service.wire.convert:message_to_dict"),
    ("encode: protobuf binary", "service.wire.rows:reply_to_bytes"),
)


class StageClock:
    def __init__(self, targets: tuple[tuple[str, str], ...] = TARGETS) -> None:
        self.targets = targets
        self.totals: dict[str, float] = defaultdict(float)  # stage -> exclusive seconds
        self.calls: dict[str, int] = defaultdict(int)
        self.missing: list[str] = []
        self._stack: list[list[Any]] = []  # [stage, start, child seconds]
        self._undo: list[tuple[object, str, object]] = []

    def _wrap(self, stage: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        stack, totals, calls = self._stack, self.totals, self.calls
        clock = time.perf_counter

        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            frame = [stage, clock(), 0.0]
            stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                stack.pop()
                took = clock() - frame[1]
                totals[stage] += took - frame[2]
                calls[stage] += 1
                if stack:
                    stack[-1][2] += took
        return timed

    def install(self) -> StageClock:
        for stage, target in self.targets:
            module_name, _, path = target.partition(":")
            try:
                owner: Any = importlib.import_module(module_name)
                *parents, attr = path.split(".")
                for p in parents:
                    owner = getattr(owner, p)
                original = owner.__dict__[attr] if isinstance(owner, type) else getattr(owner, attr)
            except (ImportError, AttributeError, KeyError):
                self.missing.append(target)
                continue
            self._undo.append((owner, attr, original))
            setattr(owner, attr, self._wrap(stage, original))
        return self

    def remove(self) -> None:
        for owner, attr, original in reversed(self._undo):
            setattr(owner, attr, original)
        self._undo.clear()

    def reset(self) -> None:
        self.totals.clear()
        self.calls.clear()

    def stage(self, name: str) -> _Timed:
        """A block timed as one stage (``with clock.stage("handler"): ...``)."""
        return _Timed(self, name)

    def snapshot(self) -> dict[str, float]:
        return dict(self.totals)


class _Timed:
    def __init__(self, clock: StageClock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.clock._stack.append([self.name, time.perf_counter(), 0.0])

    def __exit__(self, *exc: object) -> None:
        frame = self.clock._stack.pop()
        took = time.perf_counter() - frame[1]
        self.clock.totals[self.name] += took - frame[2]
        self.clock.calls[self.name] += 1
        if self.clock._stack:
            self.clock._stack[-1][2] += took


def shares(totals: dict[str, float]) -> Iterator[tuple[str, float, float]]:
    """(stage, seconds, share of the sum) in TARGETS order, then any other stage."""
    order = list(dict.fromkeys([s for s, _ in TARGETS] + sorted(totals)))
    whole = sum(totals.values()) or 1.0
    for s in order:
        if s in totals:
            yield s, totals[s], totals[s] / whole
