"""A noise tunnel around any entry: the entry's engine object wrapped in the engine's
``NoiseTunnel`` and run through the entry's own run function, so that every servable algorithm
(whatever its run function does before and after ``attribute``) gets SmoothGrad, SmoothGrad-sq
and VarGrad without code of its own. The ``NoiseTunnel`` entry and the request's
``noise_tunnel`` option both run through ``execute`` here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from torch import Tensor

from service import attribution as A

from ..errors import InvalidInput
from .entry import AlgorithmEntry, BaselineMode, OnLayer

NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")


@dataclass(frozen=True)
class NoiseOptions:
    """A resolved noise tunnel (checked by ``service.runtime.noise``)."""

    type: str = "smoothgrad"
    samples: int = 5
    stdevs: float = 1.0
    samples_batch_size: int | None = None  # noisy copies per call; None: as many as fit
    seed: int = 0

    @property
    def signed(self) -> bool:
        """smoothgrad keeps the inner method's sign; smoothgrad_sq and vargrad are magnitudes."""
        return self.type == "smoothgrad"


class _Tunnelled:
    """The entry's engine object as its run function sees it: ``attribute`` goes through
    NoiseTunnel with the options; every other attribute is the inner object's."""

    def __init__(self, inner: Any, options: NoiseOptions, copies: int,
                 from_distribution: bool) -> None:
        self._inner, self._tunnel = inner, A.NoiseTunnel(inner)
        self._options, self._copies = options, copies
        self._from_distribution = from_distribution

    def attribute(self, inputs: Any, **kwargs: Any) -> Any:
        o = self._options
        # NoiseTunnel's own `stdevs` is the tunnel's: the inner method's (GradientShap's) can
        # only keep its default 0 (as with the engine's NoiseTunnel)
        own = kwargs.pop("stdevs", 0.0)
        if own:
            raise InvalidInput("params.stdevs", f"must be 0 under a noise tunnel (got {own}); "
                               "the tunnel's noiseTunnel.stdevs is the noise")
        return self._tunnel.attribute(
            inputs, nt_type=o.type, nt_samples=o.samples, nt_samples_batch_size=self._copies,
            stdevs=o.stdevs, draw_baseline_from_distrib=self._from_distribution, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def copies_per_call(options: NoiseOptions, rows: int, chunk_rows: int) -> int:
    """Noisy copies of each example per engine call: ``samples_batch_size`` (all samples when
    None), lowered so that ``rows`` (examples x rows each example costs) x copies fit in
    ``chunk_rows`` (never below 1)."""
    want = min(options.samples_batch_size or options.samples, options.samples)
    return max(1, min(want, chunk_rows // max(1, rows)))


def execute(entry: AlgorithmEntry, engine: Any, options: NoiseOptions, inputs: Tensor,
            baselines: Tensor | None, targets: list[int], params: dict[str, Any],
            chunk_rows: int, per_example: int = 1) -> Tensor:
    """``entry.execute`` with ``engine`` inside a NoiseTunnel. ``inputs`` (rows, *shape);
    ``per_example``: rows one example costs in a pass (K for a reference set of K rows).
    A reference-set method draws one reference per noisy copy (Captum's
    ``draw_baseline_from_distrib``). The entry's run function gets the rows budget divided by
    the copies, unless it hands the budget to an engine that chunks by rows itself."""
    copies = copies_per_call(options, inputs.shape[0] * per_example, chunk_rows)
    from_distribution = entry.baseline_mode(params) is BaselineMode.REFERENCE_SET
    wrapped: Any
    if isinstance(engine, OnLayer):   # the layer keywords stay outside, for the run function
        wrapped = OnLayer(_Tunnelled(engine.engine, options, copies, from_distribution),
                          engine.kwargs, engine.shape)
    else:
        wrapped = _Tunnelled(engine, options, copies, from_distribution)
    inner_rows = chunk_rows if entry.chunk_param else max(1, chunk_rows // copies)
    return entry.execute(wrapped, inputs, baselines, targets, params, inner_rows)
