"""NoiseTunnel: SmoothGrad, SmoothGrad-squared and VarGrad over any attribution method.

The random stream is Captum's: baseline rows drawn with numpy's global generator, noise with
torch's, in the same order, so a seeded run gives Captum's numbers.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ._base import Attribution, GradientAttribution
from ._common import (
    Inputs,
    as_tuple,
    check_baselines,
    check_distribution,
    check_positive_int,
    expand_args,
    expand_target_rows,
    format_args,
    format_baselines,
    format_output,
    is_tuple,
)


class NoiseTunnelType(str, Enum):
    smoothgrad = "smoothgrad"
    smoothgrad_sq = "smoothgrad_sq"
    vargrad = "vargrad"


SUPPORTED_NOISE_TUNNEL_TYPES = [t.value for t in NoiseTunnelType]


def _expand_kwargs(kwargs: dict, n: int, inputs: Inputs, draw_from_distrib: bool) -> dict:
    """Per-example keyword arguments repeated for ``n`` noisy copies of every example."""
    out = dict(kwargs)
    if "additional_forward_args" in out:
        out["additional_forward_args"] = expand_args(format_args(out["additional_forward_args"]),
                                                     n, interleave=True)
    if "target" in out:
        out["target"] = expand_target_rows(out["target"], n)
    if "baselines" in out:
        bs = format_baselines(out["baselines"], inputs)
        if draw_from_distrib:
            check_distribution(inputs, bs)
            batch = inputs[0].shape[0]
            bs = tuple(
                b[np.random.choice(b.shape[0], n * batch).tolist()] if isinstance(b, Tensor) else b
                for b in bs
            )
        else:
            check_baselines(inputs, bs)
            bs = tuple(
                b.repeat_interleave(n, dim=0)
                if isinstance(b, Tensor) and b.shape[0] == x.shape[0] and b.shape[0] > 1 else b
                for x, b in zip(inputs, bs)
            )
        out["baselines"] = bs
    if "feature_mask" in out and out["feature_mask"] is not None:
        fm = out["feature_mask"]
        fms = tuple(m.repeat_interleave(n, dim=0) if m.shape[0] > 1 else m for m in as_tuple(fm))
        out["feature_mask"] = fms if isinstance(fm, tuple) else fms[0]
    return out


def _noisy(inputs: Inputs, stdevs: tuple[float, ...], n: int) -> Inputs:
    out = []
    for x, sd in zip(inputs, stdevs):
        size = (x.shape[0] * n, *x.shape[1:])
        noise = torch.normal(0, torch.tensor(sd, device=x.device).repeat(size))
        out.append(x.detach().repeat_interleave(n, dim=0) + noise)
    return tuple(out)


class NoiseTunnel(Attribution):
    """Averages the attributions of ``attribution_method`` over Gaussian-noised copies of the
    inputs (``smoothgrad``), their squares (``smoothgrad_sq``) or their variance (``vargrad``)."""

    def __init__(self, attribution_method: Attribution) -> None:
        if not isinstance(attribution_method, Attribution):
            raise TypeError("`attribution_method` must be an Attribution instance")
        super().__init__(attribution_method.forward_func)
        self.attribution_method = attribution_method
        self.is_delta_supported = attribution_method.has_convergence_delta()
        self.is_gradient_method = isinstance(attribution_method, GradientAttribution)

    @property
    def multiplies_by_inputs(self) -> bool:
        return self.attribution_method.multiplies_by_inputs

    def has_convergence_delta(self) -> bool:
        return self.is_delta_supported

    def attribute(self, inputs, nt_type: str = "smoothgrad", nt_samples: int = 5,
                  nt_samples_batch_size: int | None = None,
                  stdevs: float | tuple[float, ...] = 1.0,
                  draw_baseline_from_distrib: bool = False, **kwargs: Any):
        if nt_type not in SUPPORTED_NOISE_TUNNEL_TYPES:
            raise ValueError(f"`nt_type` must be one of {', '.join(SUPPORTED_NOISE_TUNNEL_TYPES)}; "
                             f"got {nt_type!r}")
        check_positive_int(nt_samples, "nt_samples")
        if nt_samples_batch_size is not None:
            check_positive_int(nt_samples_batch_size, "nt_samples_batch_size")
        was_tuple = is_tuple(inputs)
        xs = as_tuple(inputs)
        sds = self._stdevs(stdevs, len(xs))
        want_delta = bool(kwargs.get("return_convergence_delta", False))
        per_pass = nt_samples if nt_samples_batch_size is None else min(nt_samples,
                                                                        nt_samples_batch_size)
        n_full, remainder = divmod(nt_samples, per_pass)

        sums: list[Tensor] = []
        sq_sums: list[Tensor] = []
        deltas: list[Tensor] = []
        attr_was_tuple = was_tuple

        def accumulate(noisy: Inputs, call_kwargs: dict, n: int) -> None:
            nonlocal sums, sq_sums, attr_was_tuple
            out = self.attribution_method.attribute(noisy if was_tuple else noisy[0],
                                                    **call_kwargs)
            if self.is_delta_supported and want_delta:
                out, delta = out
                deltas.append(delta)
            attr_was_tuple = is_tuple(out)
            with torch.no_grad():
                # (B * n, ...) example-major -> (B, n, ...)
                grouped = [p.reshape(p.shape[0] // n, n, *p.shape[1:])
                           for p in as_tuple(out, "attributions")]
                s = [g.sum(1) for g in grouped]
                sq = [(g * g).sum(1) for g in grouped]
            sums = s if not sums else [a + b for a, b in zip(sums, s)]
            sq_sums = sq if not sq_sums else [a + b for a, b in zip(sq_sums, sq)]

        # Captum's random order: the full passes share one baseline draw made before their
        # noise; the remainder pass draws its noise before its baselines.
        full_kwargs = _expand_kwargs(kwargs, per_pass, xs, draw_baseline_from_distrib)
        for _ in range(n_full):
            accumulate(_noisy(xs, sds, per_pass), full_kwargs, per_pass)
        if remainder:
            noisy = _noisy(xs, sds, remainder)
            accumulate(noisy, _expand_kwargs(kwargs, remainder, xs, draw_baseline_from_distrib),
                       remainder)

        with torch.no_grad():
            mean = [s / nt_samples for s in sums]
            mean_sq = [q / nt_samples for q in sq_sums]
            if nt_type == NoiseTunnelType.smoothgrad:
                attrs = mean
            elif nt_type == NoiseTunnelType.smoothgrad_sq:
                attrs = mean_sq
            else:
                attrs = [q - m * m for m, q in zip(mean, mean_sq)]
        result = format_output(attr_was_tuple, tuple(attrs))
        if self.is_delta_supported and want_delta:
            return result, torch.cat(deltas, dim=0)
        return result

    @staticmethod
    def _stdevs(stdevs: Any, n_inputs: int) -> tuple[float, ...]:
        if isinstance(stdevs, tuple):
            if len(stdevs) != n_inputs:
                raise ValueError(f"`stdevs` has {len(stdevs)} values for {n_inputs} input tensors")
            values = stdevs
        else:
            values = (stdevs,) * n_inputs
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
                raise ValueError(f"`stdevs` must be non-negative numbers, got {stdevs!r}")
        return tuple(float(v) for v in values)
