"""The serving error hierarchy. Every error names the offending request field and, where the
choice is closed, the allowed values. Transports map these to statuses (service.wire.errors)."""

from __future__ import annotations

from collections.abc import Iterable


class ExplainError(Exception):
    """Base class: ``field`` is a dotted request path such as ``params.n_steps``."""

    code = "EXPLAIN_ERROR"

    def __init__(self, field: str, message: str, allowed: Iterable[str] = ()) -> None:
        self.field = field
        self.allowed = tuple(str(a) for a in allowed)
        self.detail = message
        text = f"{field}: {message}" if field else message
        if self.allowed:
            text += f" (allowed: {', '.join(self.allowed)})"
        super().__init__(text)

    @property
    def message(self) -> str:
        return str(self)


class InvalidInput(ExplainError):
    """The request is malformed or inconsistent with the model."""

    code = "INVALID_INPUT"


class UnknownAlgorithm(InvalidInput):
    """The algorithm is not registered or not enabled for this model."""

    code = "UNKNOWN_ALGORITHM"


class LimitExceeded(InvalidInput):
    """A request value is above the configured limit."""

    code = "LIMIT_EXCEEDED"


class ModelError(ExplainError):
    """The model or the engine failed on a valid request."""

    code = "MODEL_ERROR"


class DeadlineExceeded(ExplainError):
    """The request's deadline passed before it could be answered."""

    code = "DEADLINE_EXCEEDED"
