"""The one place that converts protobuf / protobuf-JSON <-> runtime types and maps runtime
errors to HTTP statuses and gRPC codes. Used by the handler, the gateway and the client."""

from .convert import (
    request_from_body,
    request_from_dict,
    request_from_proto,
    request_from_serialized,
    response_from_json,
    response_to_json,
    response_to_proto,
    tensor_from_proto,
    tensor_to_proto,
)
from .errors import (
    error_to_json,
    error_to_proto,
    grpc_code,
    grpc_code_of,
    http_status,
    status_phrase,
)
from .spec import handler_reply, spec_to_proto

__all__ = [
    "error_to_json", "error_to_proto", "grpc_code", "grpc_code_of",
    "handler_reply", "http_status", "request_from_body",
    "request_from_dict", "request_from_proto", "request_from_serialized", "response_from_json",
    "response_to_json", "response_to_proto", "spec_to_proto", "status_phrase",
    "tensor_from_proto", "tensor_to_proto",
]
