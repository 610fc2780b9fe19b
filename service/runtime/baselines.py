"""Resolving a request's BaselineSpec to tensors in model space: (1, *shape) for per-example
baselines, (K, *shape) for reference sets. Input-independent baselines go through the cache."""

from __future__ import annotations

import math
import pathlib
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .cache import BaselineCache, CachedBaseline
from .errors import InvalidInput, LimitExceeded
from .limits import Limits
from .request import BaselineKind, BaselineSpec
from .spec import BaselineDef, InputKind, ModelSpec

FIELD = "baseline"


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur over the last two dims of (N, C, H, W): the normalised kernel of
    radius max(1, ceil(3 sigma)), with the edge pixels repeated outward (replicate padding by
    the whole radius, also when it is wider than the image), so that every output pixel is a
    weighted average of the input's and a constant image stays constant."""
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()                                      # (2 * radius + 1,)
    n, c, h, w = x.shape
    y = x.reshape(n * c, 1, h, w)
    y = F.pad(y, (radius, radius, radius, radius), mode="replicate")  # (n*c, 1, h+2r, w+2r)
    y = F.conv2d(y, k.view(1, 1, -1, 1))
    y = F.conv2d(y, k.view(1, 1, 1, -1))
    return y.reshape(n, c, h, w)


class BaselineResolver:
    """Turns BaselineSpecs into CachedBaseline entries for one model."""

    def __init__(self, spec: ModelSpec, model_dir: str | pathlib.Path, limits: Limits,
                 cache: BaselineCache, forward: Callable[[Tensor], Tensor],
                 device: torch.device, dtype: torch.dtype = torch.float32) -> None:
        self.spec = spec
        self.model_dir = pathlib.Path(model_dir)
        self.limits = limits
        self.cache = cache
        self.forward = forward
        self.device = device
        self.dtype = dtype
        self.shape = tuple(spec.input_shape)
        self._default = BaselineSpec(BaselineKind.NAMED, name=spec.default_baseline)
        self._key_tail = (self.shape, str(dtype), str(device))

    def default_spec(self) -> BaselineSpec:
        return self._default

    def canonical(self, b: BaselineSpec) -> BaselineSpec:
        """Spellings of one spec baseline become one (named) spec, so they share a cache key."""
        if b.kind is BaselineKind.DEFAULT:
            return self.default_spec()
        if b.kind is BaselineKind.DATASET_MEAN:
            name = next((n for n, d in self.spec.baselines.items()
                         if n in ("mean", "dataset_mean") and d.kind == "tensor"), None)
            if name is None:
                raise InvalidInput(f"{FIELD}.dataset_mean", "this model ships no dataset mean",
                                   self.spec.baselines)
            return BaselineSpec(BaselineKind.NAMED, name=name)
        if b.kind is BaselineKind.REFERENCE_SET:
            refs = [n for n, d in self.spec.baselines.items() if d.kind == "reference_set"]
            name = b.name or (refs[0] if refs else "")
            if name not in refs:
                raise InvalidInput(f"{FIELD}.reference_set",
                                   f"no reference set {name!r} in this model", refs)
            return BaselineSpec(BaselineKind.NAMED, name=name)
        return b

    def is_input_dependent(self, b: BaselineSpec) -> bool:
        return b.kind is BaselineKind.BLUR

    def key(self, b: BaselineSpec) -> tuple:
        return (self.spec.name, self.spec.version, b.canonical(), *self._key_tail)

    def resolve(self, b: BaselineSpec, x: Tensor | None = None) -> tuple[CachedBaseline, bool]:
        """The baseline tensor and the model's outputs on it; True when it came from the cache.
        ``x`` (1, *shape) is needed for input-dependent kinds (blur)."""
        b = self.canonical(b)
        if self.is_input_dependent(b):
            if x is None:
                raise InvalidInput(FIELD, "a blurred baseline needs the input")
            return self._entry(self._blur(x, b.sigma)), False
        return self.cache.get_or_compute(self.key(b), lambda: self._entry(self._tensor(b)))

    def _entry(self, t: Tensor) -> CachedBaseline:
        if not bool(torch.isfinite(t).all()):
            raise InvalidInput(FIELD, f"is not finite in the model's dtype ({self.dtype})")
        with torch.no_grad():
            out = self.forward(t)
        return CachedBaseline(tensor=t, outputs=out.reshape(t.shape[0], -1).detach())

    def _full(self, value: float) -> Tensor:
        return torch.full((1, *self.shape), float(value), device=self.device, dtype=self.dtype)

    def _blur(self, x: Tensor, sigma: float) -> Tensor:
        if self.spec.input_kind is InputKind.TABULAR or x.dim() != 4:
            raise InvalidInput(f"{FIELD}.blur", "a blurred baseline needs an image-shaped input "
                               "(C, H, W)")
        if sigma < 0 or not math.isfinite(sigma):
            raise InvalidInput(f"{FIELD}.blur.sigma", f"must be >= 0, got {sigma}")
        if sigma > self.limits.max_blur_sigma:
            raise LimitExceeded(f"{FIELD}.blur.sigma", f"{sigma:g} is above the limit "
                                f"{self.limits.max_blur_sigma} (max_blur_sigma)")
        sigma = sigma or max(x.shape[-2:]) / 8.0
        return gaussian_blur(x, sigma).detach()

    def _tensor(self, b: BaselineSpec) -> Tensor:
        kind = b.kind
        if kind is BaselineKind.ZEROS:
            return self._full(0.0)
        if kind is BaselineKind.CONSTANT:
            if not math.isfinite(b.value) or abs(b.value) > torch.finfo(self.dtype).max:
                raise InvalidInput(f"{FIELD}.constant", f"must be finite in the model's dtype "
                                   f"({self.dtype}), got {b.value:g}")
            return self._full(b.value)
        if kind is BaselineKind.UNIFORM:
            low, high = (b.low, b.high) if (b.low, b.high) != (0.0, 0.0) else (0.0, 1.0)
            if not (math.isfinite(low) and math.isfinite(high) and high > low):
                raise InvalidInput(f"{FIELD}.uniform", f"needs low < high, got [{low}, {high})")
            gen = torch.Generator().manual_seed(int(b.seed) % 2**63)
            t = torch.rand((1, *self.shape), generator=gen, dtype=torch.float64)
            if not math.isfinite(high - low):
                raise InvalidInput(f"{FIELD}.uniform", f"high - low overflows: [{low}, {high})")
            return (low + (high - low) * t).to(device=self.device, dtype=self.dtype)
        if kind is BaselineKind.TENSOR:
            return self._explicit(b.array)
        if kind is BaselineKind.NAMED:
            d = self.spec.baselines.get(b.name)
            if d is None:
                raise InvalidInput(f"{FIELD}.named", f"unknown baseline {b.name!r}",
                                   self.spec.baselines)
            return self._definition(b.name, d, f"{FIELD}.named")
        raise InvalidInput(FIELD, f"unsupported baseline kind {kind.value!r}")

    def _definition(self, name: str, d: BaselineDef, field: str) -> Tensor:
        if d.kind == "zeros":
            return self._full(0.0)
        if d.kind == "constant":
            return self._full(d.value)
        if d.kind in ("tensor", "reference_set"):
            if not d.file:
                raise InvalidInput(field, f"spec baseline {name!r} has no file")
            t = torch.load(self.model_dir / d.file, map_location="cpu", weights_only=True)
            return self._explicit(t.numpy() if isinstance(t, Tensor) else np.asarray(t), field)
        raise InvalidInput(field, f"spec baseline {name!r} has unsupported kind {d.kind!r}",
                           ("zeros", "constant", "tensor", "reference_set"))

    def _explicit(self, array: np.ndarray | None, field: str = f"{FIELD}.tensor") -> Tensor:
        if array is None:
            raise InvalidInput(field, "no tensor given")
        a = np.asarray(array)
        if tuple(a.shape) == self.shape:
            a = a[None]
        if a.ndim != len(self.shape) + 1 or tuple(a.shape[1:]) != self.shape:
            raise InvalidInput(field, f"shape {list(a.shape)} does not match the input "
                               f"(1, {', '.join(map(str, self.shape))}) or (K, ...)")
        if a.shape[0] > self.limits.max_reference_rows:
            raise LimitExceeded(field, f"{a.shape[0]} rows is above the limit "
                                f"{self.limits.max_reference_rows} (max_reference_rows)")
        t = torch.as_tensor(np.ascontiguousarray(a)).to(device=self.device, dtype=self.dtype)
        if not torch.isfinite(t).all():
            raise InvalidInput(field, "holds non-finite values")
        return t
