"""Weighted linear surrogate models solved in torch, for Lime and KernelShap.

Each model offers Captum's interpretable-model interface (``fit(DataLoader)`` then
``representation()``, the coefficients as (1, n_features)) and ``solve`` for a batch of
independent problems at once, which Lime uses to fit one surrogate per example in one go.
Objectives are scikit-learn's, so results agree with Captum's sklearn-backed defaults:
weighted means are removed first (an intercept is fitted) and sample weights are normalised.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor


class LinearModel:
    """Base: ``solve(x (P, n, F), y (P, n), w (P, n)) -> (coef (P, F), intercept (P,))``."""

    def __init__(self) -> None:
        self.coef_: Tensor | None = None
        self.intercept_: Tensor | None = None

    def solve(self, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError(f"{type(self).__name__} does not implement solve()")

    def fit(self, train_data: Any, **kwargs: Any) -> dict:
        """Fits on every batch of a DataLoader of (x, y) or (x, y, weight)."""
        xs, ys, ws = [], [], []
        for batch in train_data:
            if len(batch) not in (2, 3):
                raise ValueError("`train_data` batches must be (x, y) or (x, y, weight)")
            xs.append(batch[0])
            ys.append(batch[1])
            ws.append(batch[2] if len(batch) == 3 else torch.ones_like(batch[1]))
        x, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
        coef, intercept = self.solve(x.unsqueeze(0), y.reshape(1, -1), w.reshape(1, -1))
        self.coef_, self.intercept_ = coef[0].to(x.dtype), intercept[0].to(x.dtype)
        return {}

    def representation(self) -> Tensor:
        if self.coef_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted: call fit() first")
        return self.coef_.reshape(1, -1)


def _centered(x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """float64 data with weighted means removed; weights normalised to sum to one."""
    x, y, w = x.double(), y.double(), w.double()
    if bool((w < 0).any()):
        raise ValueError("sample weights (similarities) must be non-negative")
    wn = w / w.sum(1, keepdim=True).clamp_min(torch.finfo(w.dtype).tiny)   # (P, n)
    x_mean = torch.einsum("pn,pnf->pf", wn, x)
    y_mean = (wn * y).sum(1)
    return x - x_mean.unsqueeze(1), y - y_mean.unsqueeze(1), wn, x_mean, y_mean


def _finite(*data: Tensor) -> Tensor:
    """(P,) whether every value of problem p is finite in each of ``data`` (P, ...)."""
    ok = torch.ones(data[0].shape[0], dtype=torch.bool, device=data[0].device)
    for t in data:
        ok &= torch.isfinite(t).flatten(1).all(1)
    return ok


class LinearRegression(LinearModel):
    """Weighted least squares with an intercept (minimum-norm when rank-deficient):
    sklearn.linear_model.LinearRegression. A problem holding a non-finite value (a model's
    output overflowed on a perturbation) gets NaN coefficients, the others their solution:
    LAPACK would fail the whole batch on it."""

    def solve(self, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        xc, yc, wn, x_mean, y_mean = _centered(x, y, w)
        root = wn.sqrt().unsqueeze(2)
        a, b = root * xc, root * yc.unsqueeze(2)                          # (P, n, F), (P, n, 1)
        driver = "gelsd" if x.device.type == "cpu" else None
        ok = _finite(a, b)
        if bool(ok.all()):
            coef = torch.linalg.lstsq(a, b, driver=driver).solution.squeeze(2)  # (P, F)
        else:
            coef = torch.full((a.shape[0], a.shape[2]), float("nan"), dtype=a.dtype,
                              device=a.device)                              # (P, F)
            if bool(ok.any()):
                coef[ok] = torch.linalg.lstsq(a[ok], b[ok], driver=driver).solution.squeeze(2)
        return coef, y_mean - (x_mean * coef).sum(1)


class Lasso(LinearModel):
    """Weighted Lasso with an intercept: minimises
    1/2 * sum_i w_i (y_i - x_i b - c)^2 / sum(w) + alpha * |b|_1 (sklearn.linear_model.Lasso),
    by cyclic coordinate descent on the weighted Gram matrix, all problems at once."""

    def __init__(self, alpha: float = 1.0, max_iter: int = 1000, tol: float = 1e-10) -> None:
        super().__init__()
        if not isinstance(alpha, (int, float)) or alpha < 0:
            raise ValueError(f"`alpha` must be a number >= 0, got {alpha!r}")
        self.alpha, self.max_iter, self.tol = float(alpha), max_iter, tol

    def solve(self, x: Tensor, y: Tensor, w: Tensor) -> tuple[Tensor, Tensor]:
        xc, yc, wn, x_mean, y_mean = _centered(x, y, w)
        ok = _finite(xc, yc, wn)  # a problem with a non-finite value: NaN, not 1000 sweeps
        row = ok.view(-1, 1)                                               # (P, 1)
        if not bool(ok.all()):
            xc = torch.where(row.unsqueeze(2), xc, 0.0)
            yc, wn = torch.where(row, yc, 0.0), torch.where(row, wn, 0.0)
        gram = torch.einsum("pn,pnf,png->pfg", wn, xc, xc)                 # (P, F, F)
        corr = torch.einsum("pn,pnf,pn->pf", wn, xc, yc)                   # (P, F)
        diag = gram.diagonal(dim1=1, dim2=2)
        safe = torch.where(diag > 0, diag, torch.ones_like(diag))
        coef = torch.zeros_like(corr)
        n_features = corr.shape[1]
        for _ in range(self.max_iter):
            before = coef.clone()
            for j in range(n_features):
                rho = corr[:, j] - (gram[:, j] * coef).sum(1) + diag[:, j] * coef[:, j]
                shrunk = rho.sign() * (rho.abs() - self.alpha).clamp_min(0)
                coef[:, j] = torch.where(diag[:, j] > 0, shrunk / safe[:, j], 0.0)
            step = (coef - before).abs().max()
            if float(step) <= self.tol * max(float(coef.abs().max()), 1.0):
                break
        coef = torch.where(row, coef, float("nan"))
        return coef, y_mean - (x_mean * coef).sum(1)
