"""Tensors on the wire: the ``Tensor`` message (shape, dtype, little-endian data) <-> numpy
arrays, checked against the request's limits (errors name the field)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from service._proto.explain.v1 import explain_pb2 as pb
from service.runtime.errors import InvalidInput, LimitExceeded, shown

_DTYPES: dict[pb.DType, np.dtype[Any]] = {
    pb.DTYPE_UNSPECIFIED: np.dtype("<f4"), pb.FLOAT32: np.dtype("<f4"),
    pb.FLOAT64: np.dtype("<f8"), pb.FLOAT16: np.dtype("<f2"), pb.INT64: np.dtype("<i8"),
    pb.INT32: np.dtype("<i4"), pb.UINT8: np.dtype("u1"),
}
_NATIVE = {k: v.newbyteorder("=") for k, v in _DTYPES.items()}
_TO_PB = {np.dtype(v).newbyteorder("=").str: k for k, v in _DTYPES.items()
          if k != pb.DTYPE_UNSPECIFIED}


def tensor_from_proto(t: pb.Tensor, field: str, max_elements: int | None = None) -> np.ndarray:
    return tensor_from_fields(t.dtype, tuple(t.shape), t.data, field, max_elements)


def tensor_from_fields(dtype_number: pb.DType, shape: tuple[int, ...], data: bytes,
                       field: str, max_elements: int | None = None) -> np.ndarray:
    """A Tensor message's fields (``dtype`` enum number, ``shape`` Python ints, ``data``) as
    a native-endian array, checked (errors name ``field``)."""
    dtype = _DTYPES.get(dtype_number)
    if dtype is None:
        raise InvalidInput(f"{field}.dtype", f"unknown dtype {dtype_number}", pb.DType.keys())
    if len(shape) > 16:
        raise InvalidInput(f"{field}.shape", f"{len(shape)} dimensions; at most 16")
    if shape and min(shape) < 0:
        raise InvalidInput(f"{field}.shape", f"negative size in {shown(list(shape))}")
    elements = math.prod(shape)  # Python ints: no overflow
    cap = max_elements if max_elements is not None else 2**40
    if elements > cap or (shape and max(shape) > cap):
        raise LimitExceeded(f"{field}.shape", f"{shown(list(shape))} is above the limit "
                            f"{cap} elements (max_tensor_elements)")
    expected = elements * dtype.itemsize
    if len(data) != expected:
        raise InvalidInput(f"{field}.data", f"{len(data)} bytes, shape {list(shape)} of "
                           f"{pb.DType.Name(dtype_number)} needs {expected}")
    return np.frombuffer(data, dtype=dtype).reshape(shape).astype(_NATIVE[dtype_number])


def tensor_to_proto(a: np.ndarray) -> pb.Tensor:
    a = np.asarray(a)
    key = a.dtype.newbyteorder("=").str
    if key not in _TO_PB:
        a, key = a.astype(np.float32), np.dtype(np.float32).str
    le = a.astype(a.dtype.newbyteorder("<"), copy=False)
    return pb.Tensor(shape=list(a.shape), dtype=_TO_PB[key],
                     data=np.ascontiguousarray(le).tobytes())
