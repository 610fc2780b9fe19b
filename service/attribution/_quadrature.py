"""Integration nodes and weights on [0, 1] for path methods, computed once per (method, n)."""

from __future__ import annotations

from enum import Enum
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor


class Method(str, Enum):
    GAUSS_LEGENDRE = "gausslegendre"
    RIEMANN_LEFT = "riemann_left"
    RIEMANN_RIGHT = "riemann_right"
    RIEMANN_MIDDLE = "riemann_middle"
    RIEMANN_TRAPEZOID = "riemann_trapezoid"


METHODS = tuple(m.value for m in Method)


def parse_method(method: str) -> Method:
    try:
        return Method(method)
    except ValueError:
        raise ValueError(f"`method` must be one of {', '.join(METHODS)}; got {method!r}") from None


@lru_cache(maxsize=256)
def nodes(method: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(alphas, weights), float64 arrays of length ``n``; weights sum to 1."""
    m = parse_method(method)
    if m is Method.GAUSS_LEGENDRE:
        if n < 1:
            raise ValueError(f"`n_steps` must be >= 1 for gausslegendre, got {n}")
        x, w = np.polynomial.legendre.leggauss(n)
        alphas, weights = 0.5 * (1.0 + x), 0.5 * w
    else:
        if n < 2:
            raise ValueError(f"`n_steps` must be >= 2 for {m.value}, got {n}")
        weights = np.full(n, 1.0 / n)
        if m is Method.RIEMANN_TRAPEZOID:
            weights[0] /= 2
            weights[-1] /= 2
            alphas = np.linspace(0.0, 1.0, n)
        elif m is Method.RIEMANN_LEFT:
            alphas = np.linspace(0.0, 1.0 - 1.0 / n, n)
        elif m is Method.RIEMANN_RIGHT:
            alphas = np.linspace(1.0 / n, 1.0, n)
        else:
            alphas = np.linspace(1.0 / (2 * n), 1.0 - 1.0 / (2 * n), n)
    alphas.setflags(write=False)
    weights.setflags(write=False)
    return alphas, weights


@lru_cache(maxsize=256)
def nodes_tensor(method: str, n: int, dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor]:
    alphas, weights = nodes(method, n)
    return (torch.from_numpy(alphas.copy()).to(dtype=dtype, device=device),
            torch.from_numpy(weights.copy()).to(dtype=dtype, device=device))
