"""Serving logic with no transport: request model, validation, limits, the algorithm table,
baselines and their cache, and the predict+explain executor.

The names below are loaded on first use (PEP 562), so that a light submodule
(``service.runtime.errors``, used by the gRPC gateway) does not import torch with the package.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "algorithms": ("AlgorithmEntry", "AlgorithmTable", "BaselineMode", "Family", "Param",
                   "default_table"),
    "cache": ("BaselineCache", "CacheStats"),
    "errors": ("DeadlineExceeded", "ExplainError", "InvalidInput", "LimitExceeded", "ModelError",
               "UnknownAlgorithm"),
    "executor": ("Executor", "Outcome"),
    "layers": ("LayerInfo",),
    "limits": ("Limits",),
    "request": ("BaselineKind", "BaselineSpec", "ImagePayload", "LayerSelector", "OutputOptions",
                "Request",
                "Response", "TabularPayload", "TargetKind", "TargetSpec", "TensorPayload"),
    "spec": ("ModelSpec", "load_spec", "parse_spec"),
}
_MODULE = {name: module for module, names in _WHERE.items() for name in names}

__all__ = sorted(_MODULE)


def __getattr__(name: str) -> Any:
    module = _MODULE.get(name)
    if module is None:  # a submodule (``wire.rows``), as an eager package would have it
        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as e:
            if e.name != f"{__name__}.{name}":
                raise  # the submodule exists but needs something missing
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
