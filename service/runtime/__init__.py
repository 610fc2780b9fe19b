"""Serving logic with no transport: request model, validation, limits, the algorithm table,
baselines and their cache, and the predict+explain executor."""

from .algorithms import AlgorithmEntry, AlgorithmTable, BaselineMode, Param, default_table
from .cache import BaselineCache, CacheStats
from .errors import (
    DeadlineExceeded,
    ExplainError,
    InvalidInput,
    LimitExceeded,
    ModelError,
    UnknownAlgorithm,
)
from .executor import Executor, Outcome
from .limits import Limits
from .request import (
    BaselineKind,
    BaselineSpec,
    ImagePayload,
    OutputOptions,
    Request,
    Response,
    TabularPayload,
    TargetKind,
    TargetSpec,
    TensorPayload,
)
from .spec import ModelSpec, load_spec, parse_spec

__all__ = [
    "AlgorithmEntry", "AlgorithmTable", "BaselineCache", "BaselineKind", "BaselineMode", "BaselineSpec",
    "CacheStats", "DeadlineExceeded", "Executor", "ExplainError", "ImagePayload", "InvalidInput",
    "LimitExceeded", "Limits", "ModelError", "ModelSpec", "Outcome", "OutputOptions", "Param",
    "Request", "Response", "TabularPayload", "TargetKind", "TargetSpec",
    "TensorPayload", "UnknownAlgorithm", "default_table", "load_spec", "parse_spec",
]
