"""Decoding a request's inputs to the model's (1, *shape) float tensor. Also returns each
feature's value as the caller sent it (raw tabular values, decoded pixels), for top_features."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np
import torch
from torch import Tensor

from .errors import InvalidInput, LimitExceeded, shown
from .limits import Limits
from .request import ImagePayload, Payload, TabularPayload, TensorPayload
from .spec import InputKind, ModelSpec

FIELD = "inputs"


_NOTHING_SHOWN = np.zeros(0)


def decode(payload: Payload | None, spec: ModelSpec, limits: Limits,
           device: torch.device, shown: bool = True) -> tuple[Tensor, np.ndarray]:
    """(x (1, *shape) float32 on ``device``, shown values (prod(shape),) float64: empty for a
    tensor or image when not ``shown``, as a prediction needs none)."""
    if payload is None:
        raise InvalidInput(FIELD, "no input given", ("image", "tensor", "tabular"))
    if isinstance(payload, ImagePayload):
        x = _image(payload.data, spec, limits)
        values = x.reshape(-1).astype(np.float64) if shown else _NOTHING_SHOWN
    elif isinstance(payload, TensorPayload):
        x = _tensor(payload.array, spec)
        values = x.reshape(-1).astype(np.float64) if shown else _NOTHING_SHOWN
    elif isinstance(payload, TabularPayload):
        x, values = _tabular(payload.features, spec)
    else:  # a prompt (inputs.text / inputs.template) sent to a model that is not a text model
        raise InvalidInput(FIELD, f"model {spec.name!r} takes {spec.input_kind.value} inputs, "
                           "not prompts", ("image", "tensor", "tabular"))
    return torch.from_numpy(np.ascontiguousarray(x[None], dtype=np.float32)).to(device), values


def _image(data: bytes, spec: ModelSpec, limits: Limits) -> np.ndarray:
    from PIL import Image

    if spec.input_kind is not InputKind.IMAGE or spec.image is None:
        raise InvalidInput(f"{FIELD}.image", f"model {spec.name!r} takes {spec.input_kind.value} "
                           "inputs, not images")
    if len(data) > limits.max_body_bytes:
        raise LimitExceeded(f"{FIELD}.image", f"{len(data)} bytes is above the limit "
                            f"{limits.max_body_bytes} (max_body_bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > limits.max_image_pixels:
                raise LimitExceeded(f"{FIELD}.image", f"{w}x{h} = {w * h} pixels is above the "
                                    f"limit {limits.max_image_pixels} (max_image_pixels)")
            if img.format not in ("PNG", "JPEG"):
                raise InvalidInput(f"{FIELD}.image", f"format {img.format} is not accepted",
                                   ("PNG", "JPEG"))
            converted = img.convert(spec.image.mode)
            if converted.size != spec.image.size:
                converted = converted.resize(spec.image.size, Image.Resampling.BILINEAR)
            a = np.asarray(converted, dtype=np.float32)
    except (LimitExceeded, InvalidInput):
        raise
    except Exception as e:  # PIL raises many types for undecodable bytes
        reason = "not a PNG/JPEG image" if "identify image" in str(e) else str(e)
        raise InvalidInput(f"{FIELD}.image", f"cannot decode image bytes: {reason}") from e
    a = a / spec.image.scale
    if spec.image.invert:
        a = 1.0 - a
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)  # (C, H, W)
    mean = np.asarray(spec.image.mean, dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec.image.std, dtype=np.float32).reshape(-1, 1, 1)
    a = (a - mean) / std
    if tuple(a.shape) != tuple(spec.input_shape):
        raise InvalidInput(f"{FIELD}.image", f"decoded to shape {list(a.shape)}, the model "
                           f"takes {list(spec.input_shape)}")
    return a


def _tensor(array: np.ndarray, spec: ModelSpec) -> np.ndarray:
    a = np.asarray(array)
    shape = tuple(spec.input_shape)
    if tuple(a.shape) == (1, *shape):
        a = a[0]
    if tuple(a.shape) != shape:
        raise InvalidInput(f"{FIELD}.tensor.shape", f"got {list(a.shape)}, the model takes "
                           f"{list(shape)} (or [1, {', '.join(map(str, shape))}])")
    if a.dtype == np.float32:
        a = a.copy()  # the request's own (the engine must not see a caller's array change)
    else:
        with np.errstate(over="ignore", invalid="ignore"):
            a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InvalidInput(f"{FIELD}.tensor.data", "holds non-finite values (or values outside "
                           "float32's range)")
    return a


def _tabular(features: dict[str, float], spec: ModelSpec) -> tuple[np.ndarray, np.ndarray]:
    if spec.input_kind is not InputKind.TABULAR:
        raise InvalidInput(f"{FIELD}.tabular", f"model {spec.name!r} takes "
                           f"{spec.input_kind.value} inputs, not named features")
    names = spec.feature_names
    index = {n: i for i, n in enumerate(names)}
    unknown = [n for n in features if n not in index]
    if unknown:
        raise InvalidInput(f"{FIELD}.tabular.features[{shown(unknown[0])}]",
                           "unknown feature name",
                           names if len(names) <= 40 else (*names[:40], "..."))
    # Features not given take a neutral value: the scaler's mean (0 after scaling), else 0.
    raw = (np.asarray(spec.scaler.mean, dtype=np.float64) if spec.scaler is not None
           else np.zeros(len(names)))
    raw = raw.copy()
    for name, value in features.items():
        if (isinstance(value, bool) or not isinstance(value, (int, float))
                or not math.isfinite(value)):
            raise InvalidInput(f"{FIELD}.tabular.features[{shown(name)}]",
                               f"must be a finite number, got {shown(value)}")
        raw[index[name]] = float(value)
    x = raw
    with np.errstate(over="ignore", invalid="ignore"):
        if spec.scaler is not None:
            x = (raw - np.asarray(spec.scaler.mean)) / np.asarray(spec.scaler.std)
        x32 = x.reshape(spec.input_shape).astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(x32.reshape(-1)))
    if bad.size:
        name = names[int(bad[0])]
        raise InvalidInput(f"{FIELD}.tabular.features[{shown(name)}]",
                           f"{raw[int(bad[0])]:g} is outside the range the model takes "
                           "(float32 after scaling)")
    return x32, raw
