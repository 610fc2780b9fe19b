"""Kernel SHAP: Lime with the Shapley kernel, which makes the surrogate's coefficients
estimates of Shapley values."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import Tensor
from torch.distributions.categorical import Categorical

from ._common import as_tuple
from .lime import Lime
from .linear_model import LinearRegression


class KernelShap(Lime):
    """Samples: the full and the empty coalition first, then coalitions whose size is drawn
    with probability proportional to (F - 1) / (s (F - s)) and whose members are the ``s``
    largest of F normal draws, as Captum draws them; the full and empty coalitions weigh
    ``inf_weight``, all others 1; the surrogate is weighted least squares."""

    def __init__(self, forward_func: Callable) -> None:
        super().__init__(forward_func, interpretable_model=LinearRegression(),
                         similarity_func=self.kernel_shap_similarity_kernel,
                         perturb_func=self.kernel_shap_perturb_generator)
        self.inf_weight = 1_000_000.0

    def attribute(self, inputs: Tensor | tuple[Tensor, ...],  # type: ignore[override]
                  baselines: Any = None, target: Any = None, additional_forward_args: Any = None,
                  feature_mask: Tensor | tuple[Tensor, ...] | None = None, n_samples: int = 25,
                  perturbations_per_eval: int = 1, return_input_shape: bool = True,
                  show_progress: bool = False) -> Tensor | tuple[Tensor, ...]:
        from ._perturbation import feature_masks
        from .lime import _shift_to_zero

        n = feature_masks(_shift_to_zero(feature_mask), as_tuple(inputs), dense=False).n_features
        sizes = torch.arange(n, dtype=torch.float)
        probs = torch.tensor(float(n - 1)) / (sizes * (n - sizes))
        probs[0] = 0.0
        if n < 2:
            raise ValueError(f"KernelShap needs at least 2 features; `feature_mask` defines {n}")
        return self._attribute_kwargs(inputs, baselines, target, additional_forward_args,
                                      feature_mask, n_samples, perturbations_per_eval,
                                      return_input_shape, show_progress,
                                      num_select_distribution=Categorical(probs))

    def kernel_shap_similarity_kernel(self, _: Any, __: Any, interpretable_sample: Tensor,
                                      **kwargs: Any) -> Tensor:
        selected = int(interpretable_sample.sum())
        full = selected == 0 or selected == kwargs["num_interp_features"]
        return torch.tensor([self.inf_weight if full else 1.0])

    def kernel_shap_perturb_generator(self, original_inp: Any, **kwargs: Any) -> Iterator[Tensor]:
        device = as_tuple(original_inp)[0].device
        n = int(kwargs["num_interp_features"])
        dist: Categorical = kwargs["num_select_distribution"]
        yield torch.ones(1, n, dtype=torch.long, device=device)
        yield torch.zeros(1, n, dtype=torch.long, device=device)
        while True:
            size = dist.sample()
            draws = torch.randn(1, n)
            threshold = torch.kthvalue(draws, n - size).values.item()
            yield (draws > threshold).to(device=device).long()

    def _draw(self, xs, bases, masks, problems, n_samples, was_tuple, kwargs):  # type: ignore[no-untyped-def, override]
        if self.perturb_func != self.kernel_shap_perturb_generator or \
                type(self).kernel_shap_perturb_generator is not \
                KernelShap.kernel_shap_perturb_generator:
            return super()._draw(xs, bases, masks, problems, n_samples, was_tuple, kwargs)
        # The generator's draws without its per-sample overhead: per sample one multinomial
        # draw of the coalition size and one normal draw per feature, in the generator's
        # order; the thresholds are then taken for all samples at once.
        n = masks.n_features
        probs = kwargs["num_select_distribution"].probs.reshape(1, -1)
        draws = []
        for _ in range(problems):
            rows = [torch.ones(1, n), torch.zeros(1, n)][:n_samples]
            m = n_samples - len(rows)
            sizes = torch.empty(m, dtype=torch.long)
            normals = torch.empty(m, n)
            for i in range(m):
                sizes[i] = torch.multinomial(probs, 1, True)[0, 0]
                normals[i] = torch.randn(1, n)[0]
            if m:
                ordered = normals.sort(dim=1).values
                threshold = ordered.gather(1, (n - sizes - 1).view(-1, 1))
                rows.append((normals > threshold).float())
            draws.append(torch.cat(rows))
            self._fit_draws(n)
        return self._stack_draws(draws, xs)

    def _similarities(self, xs, bases, masks, batch, keep, problems, was_tuple, kwargs):  # type: ignore[no-untyped-def, override]
        if self.similarity_func != self.kernel_shap_similarity_kernel:
            return super()._similarities(xs, bases, masks, batch, keep, problems, was_tuple,
                                         kwargs)
        size = keep.sum(2)                                                 # (k, P)
        full = (size == 0) | (size == masks.n_features)
        return torch.where(full, self.inf_weight, 1.0).double()
