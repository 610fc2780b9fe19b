"""The serving error hierarchy. Every error names the offending request field and, where the
choice is closed, the allowed values. Transports map these to statuses (service.wire.errors).

Fields are dotted paths in the request's protobuf field names (``target.top_k``); the wire layer
spells them as the caller's JSON does (``target.topK``). Messages echo client text, so every part
is capped in length: an error can never grow with the request that caused it."""

from __future__ import annotations

from collections.abc import Iterable

MAX_FIELD_CHARS = 120
MAX_DETAIL_CHARS = 400
MAX_ALLOWED = 40


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, marked with "..." when cut."""
    return text if len(text) <= limit else text[: max(0, limit - 3)] + "..."


def shown(value: object, limit: int = 60) -> str:
    """A client value as it may appear in a message: its repr, clipped."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails must not turn a refusal into a crash
        text = f"<{type(value).__name__}>"
    return clip(text, limit)


class ExplainError(Exception):
    """Base class: ``field`` is a dotted request path such as ``params.n_steps``."""

    code = "EXPLAIN_ERROR"

    def __init__(self, field: str, message: str, allowed: Iterable[str] = ()) -> None:
        self.field = clip(str(field), MAX_FIELD_CHARS)
        values = [clip(str(a), 60) for a in allowed]
        if len(values) > MAX_ALLOWED:
            values = [*values[:MAX_ALLOWED], "..."]
        self.allowed = tuple(values)
        self.detail = clip(" ".join(str(message).split()), MAX_DETAIL_CHARS)
        super().__init__(self.field, self.detail)

    def __str__(self) -> str:
        text = f"{self.field}: {self.detail}" if self.field else self.detail
        if self.allowed:
            text += f" (allowed: {', '.join(self.allowed)})"
        return text

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


def internal(e: BaseException, where: str = "") -> ModelError:
    """An unexpected exception as the ModelError the caller gets (its type and a clipped
    message; the traceback goes to the log, not to the caller)."""
    if isinstance(e, ExplainError) and isinstance(e, ModelError):
        return e
    text = clip(" ".join(str(e).split()), 200)
    prefix = f"{where} failed: " if where else ""
    return ModelError("", f"{prefix}internal error ({type(e).__name__}: {text})")
