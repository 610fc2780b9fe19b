"""The neuron family: attributions, in the input's shape, of one neuron of a layer the request
names (``layer.neuron``: its index in the layer's per-example output, or input with
``attributeToLayerInput``). The engine takes one neuron per call, so requests fuse only with
requests for the same neuron. They explain the neuron, not a class: only NeuronConductance
(the neuron's share of the target's score) takes the target."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from service import attribution as A

from .entry import AlgorithmEntry, BaselineMode, Family, OnLayer, Param
from .gradient import _METHODS
from .perturbation import _PPE, _SUPERPIXEL, _per_eval, feature_mask


def _neuron(name: str, engine: type, **kw: Any) -> AlgorithmEntry:
    kw.setdefault("targeted", False)
    return AlgorithmEntry(name=name, engine=engine, family=Family.NEURON, **kw)


def _ablation_run(engine: Any, inputs: Tensor, baselines: Tensor | None, targets: list[int],
                  params: dict[str, Any], chunk_rows: int) -> Tensor:
    assert isinstance(engine, OnLayer)
    kwargs: dict[str, Any] = dict(engine.kwargs)
    if baselines is not None:
        kwargs["baselines"] = baselines
    return engine.engine.attribute(
        inputs, **kwargs, feature_mask=feature_mask(inputs, params["superpixel"]),
        perturbations_per_eval=_per_eval(params, inputs, chunk_rows))


_N_STEPS = Param("n_steps", int, 32, minimum=1, limit="max_n_steps")

ENTRIES = (
    _neuron("NeuronGradient", A.NeuronGradient),
    _neuron("NeuronIntegratedGradients", A.NeuronIntegratedGradients,
            params=(_N_STEPS, Param("method", str, "gausslegendre", choices=_METHODS)),
            baselines=BaselineMode.PER_EXAMPLE, chunk_param="internal_batch_size"),
    _neuron("NeuronConductance", A.NeuronConductance, targeted=True,
            params=(_N_STEPS, Param("method", str, "riemann_trapezoid", choices=_METHODS)),
            baselines=BaselineMode.PER_EXAMPLE, chunk_param="internal_batch_size"),
    _neuron("NeuronDeepLift", A.NeuronDeepLift, baselines=BaselineMode.PER_EXAMPLE),
    _neuron("NeuronDeepLiftShap", A.NeuronDeepLiftShap, baselines=BaselineMode.REFERENCE_SET,
            min_reference_rows=2),
    _neuron("NeuronGradientShap", A.NeuronGradientShap,
            params=(Param("n_samples", int, 5, minimum=1, limit="max_n_samples"),
                    Param("stdevs", float, 0.0, minimum=0.0)),
            baselines=BaselineMode.REFERENCE_SET, stochastic=True, fusable=False),
    _neuron("NeuronGuidedBackprop", A.NeuronGuidedBackprop),
    _neuron("NeuronDeconvolution", A.NeuronDeconvolution),
    _neuron("NeuronFeatureAblation", A.NeuronFeatureAblation, params=(_SUPERPIXEL, _PPE),
            baselines=BaselineMode.PER_EXAMPLE, run=_ablation_run),
)
