"""The one place that converts protobuf / protobuf-JSON <-> runtime types and maps runtime
errors to HTTP statuses and gRPC codes. Used by the handler, the gateway and the client.

The names below are loaded on first use (PEP 562), so that the gRPC gateway's light submodule
(``service.wire.messages``) does not import the converters, and with them torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "convert": ("reply_to_bytes", "request_from_body", "request_from_dict", "request_from_proto",
                "request_from_serialized", "response_from_json", "response_from_proto",
                "response_to_bytes", "response_to_json", "response_to_proto", "spec_to_proto"),
    "tensors": ("tensor_from_fields", "tensor_from_proto", "tensor_to_proto"),
    "errors": ("error_to_json", "error_to_proto", "grpc_code", "http_status", "json_field",
               "public", "status_phrase"),
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
