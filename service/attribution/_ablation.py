"""A minimal feature-ablation loop for the layer and neuron ablation methods.

Stand-in until the perturbation family's ``FeatureAblation`` lands on main (then
``LayerFeatureAblation`` and ``NeuronFeatureAblation`` should run on it): each feature (an
element, or a group of a mask) is set to its baseline, ``perturbations_per_eval`` features per
forward pass, under ``torch.inference_mode()``; its attribution is the drop of the per-example
output, spread over the feature's elements.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from ._batching import spans
from ._common import Inputs, check_positive_int, tensorize_baselines

# forward(inputs, n) -> one value per row for inputs stacked as n perturbed copies of the batch
StackedForward = Callable[[Inputs, int], Tensor]


def _features(x: Tensor, mask: Tensor | None, name: str) -> tuple[Tensor, list[int]]:
    """(feature id per element, broadcast to x's shape; the feature ids to ablate)."""
    if mask is None:
        ids = torch.arange(x[0].numel(), device=x.device).view(1, *x.shape[1:]).expand_as(x)
        return ids, list(range(x[0].numel()))
    if not isinstance(mask, Tensor) or mask.is_floating_point():
        raise TypeError(f"`{name}` must be an integer tensor of feature ids")
    if mask.dim() != x.dim() or mask.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"`{name}` has shape {tuple(mask.shape)}; it must broadcast to "
                         f"{tuple(x.shape)} with a first dimension of 1 or {x.shape[0]}")
    try:
        ids = mask.to(x.device).expand_as(x)
    except RuntimeError:
        raise ValueError(f"`{name}` of shape {tuple(mask.shape)} does not broadcast to "
                         f"{tuple(x.shape)}") from None
    return ids, list(range(int(mask.min()), int(mask.max()) + 1))


def ablation(forward: StackedForward, inputs: Inputs, baselines: tuple, masks: tuple,
             perturbations_per_eval: int, mask_name: str = "feature_mask") -> Inputs:
    """Per input tensor: attribution = output(inputs) - output(feature set to baseline)."""
    check_positive_int(perturbations_per_eval, "perturbations_per_eval")
    bt = tensorize_baselines(inputs, baselines)
    batch = inputs[0].shape[0]
    with torch.inference_mode():
        start_out = forward(inputs, 1).reshape(batch)
        attrs = []
        for i, (x, b, m) in enumerate(zip(inputs, bt, masks)):
            ids, features = _features(x, m, mask_name)
            b = b.to(dtype=x.dtype, device=x.device).expand_as(x)
            total = torch.zeros(x.shape, dtype=start_out.dtype, device=x.device)
            for lo, hi in spans(len(features), perturbations_per_eval):
                chunk = features[lo:hi]
                n = len(chunk)
                stacked = []
                for j, y in enumerate(inputs):
                    if j != i:
                        stacked.append(y.repeat(n, *([1] * (y.dim() - 1))))
                        continue
                    ablated = [torch.where(ids == f, b, x) for f in chunk]
                    stacked.append(torch.cat(ablated))  # (n * B, ...) feature-major
                out = forward(tuple(stacked), n).reshape(n, batch)
                drop = start_out.unsqueeze(0) - out  # (n, B)
                for k, f in enumerate(chunk):
                    sel = (ids == f).to(total.dtype)
                    total += drop[k].view(-1, *([1] * (x.dim() - 1))) * sel
            attrs.append(total)
    return tuple(a.clone() for a in attrs)  # out of inference mode: usable as normal tensors
