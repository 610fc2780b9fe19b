"""Serving logic with no transport: request model, validation, limits, the algorithm registry,
baselines and their cache, and the predict+explain executor."""

from . import registry_more  # noqa: F401  (registers the perturbation and CAM entries)
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
from .registry import REGISTRY, AlgorithmEntry, BaselineMode, Param, register
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
    "AlgorithmEntry", "BaselineCache", "BaselineKind", "BaselineMode", "BaselineSpec",
    "CacheStats", "DeadlineExceeded", "Executor", "ExplainError", "ImagePayload", "InvalidInput",
    "LimitExceeded", "Limits", "ModelError", "ModelSpec", "Outcome", "OutputOptions", "Param",
    "REGISTRY", "Request", "Response", "TabularPayload", "TargetKind", "TargetSpec",
    "TensorPayload", "UnknownAlgorithm", "load_spec", "parse_spec", "register",
]
