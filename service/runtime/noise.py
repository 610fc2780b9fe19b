"""The request's ``noise_tunnel`` option: checked against the limits and resolved into the
``NoiseOptions`` that ``algorithms.tunnel`` runs any entry with. The seed is the request's
``params.seed``, which every algorithm takes under a noise tunnel."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from .algorithms.entry import SEED, AlgorithmEntry
from .algorithms.tunnel import NT_TYPES, NoiseOptions
from .errors import InvalidInput, LimitExceeded
from .limits import Limits
from .request import NoiseTunnelSpec

DEFAULT_SAMPLES = 5   # the engine's nt_samples default
DEFAULT_STDEVS = 1.0  # the engine's stdevs default


def resolve(spec: NoiseTunnelSpec, entry: AlgorithmEntry, params: Mapping[str, Any],
            limits: Limits) -> tuple[NoiseOptions, dict[str, Any]]:
    """The noise options and the request's params without ``seed`` where the entry takes
    none (the seed then belongs to the tunnel alone)."""
    if entry.name == "NoiseTunnel":
        raise InvalidInput("noise_tunnel", "NoiseTunnel is a noise tunnel already; name its "
                           "base as the algorithm instead")
    kind = spec.type or "smoothgrad"
    if kind not in NT_TYPES:
        raise InvalidInput("noise_tunnel.type", f"{kind!r} is not a noise tunnel type", NT_TYPES)
    samples = spec.samples or DEFAULT_SAMPLES
    if samples > limits.max_nt_samples:
        raise LimitExceeded("noise_tunnel.samples", f"{samples} is above the limit "
                            f"{limits.max_nt_samples} (max_nt_samples)")
    stdevs = DEFAULT_STDEVS if spec.stdevs is None else spec.stdevs
    if not (math.isfinite(stdevs) and stdevs >= 0):
        raise InvalidInput("noise_tunnel.stdevs", f"must be a finite number >= 0, got {stdevs}")
    batch = spec.samples_batch_size or None
    rest = dict(params)
    # a stochastic entry resolves its own seed (see ``seeded_by``); the others give theirs here
    seed = SEED.default if entry.stochastic else SEED.coerce(rest.pop("seed", SEED.default),
                                                             limits)
    return NoiseOptions(kind, samples, float(stdevs), batch, seed), rest


def seeded_by(options: NoiseOptions, resolved: Mapping[str, Any]) -> NoiseOptions:
    """The options with the seed of an entry that has one (its resolved ``params.seed``)."""
    if "seed" in resolved:
        return replace(options, seed=int(resolved["seed"]))
    return options
