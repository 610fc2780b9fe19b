"""The one place that converts protobuf / protobuf-JSON <-> runtime types and maps runtime
errors to HTTP statuses and gRPC codes. Used by the handler, the gateway and the client."""

from .convert import (
    reply_to_bytes,
    request_from_body,
    request_from_dict,
    request_from_proto,
    request_from_serialized,
    response_from_json,
    response_from_proto,
    response_to_json,
    response_to_proto,
    spec_to_proto,
    tensor_from_proto,
    tensor_to_proto,
)
from .errors import (
    error_to_json,
    error_to_proto,
    grpc_code,
    http_status,
    json_field,
    public,
    status_phrase,
)

__all__ = [
    "reply_to_bytes",
    "error_to_json", "error_to_proto", "grpc_code", "http_status", "json_field", "public",
    "request_from_body",
    "request_from_dict", "request_from_proto", "request_from_serialized", "response_from_json",
    "response_from_proto", "response_to_json", "response_to_proto", "spec_to_proto",
    "status_phrase", "tensor_from_proto", "tensor_to_proto",
]
