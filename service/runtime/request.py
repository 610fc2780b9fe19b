"""Transport-free request and response types: what a transport decodes into and encodes from."""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Union

import numpy as np


@dataclass(frozen=True)
class ImagePayload:
    data: bytes  # PNG or JPEG bytes


@dataclass(frozen=True)
class TensorPayload:
    array: np.ndarray = field(compare=False)


@dataclass(frozen=True)
class TabularPayload:
    features: dict[str, float] = field(compare=False)


@dataclass(frozen=True)
class TextPayload:
    """A prompt for a text model; its words are the features."""

    text: str


@dataclass(frozen=True)
class TemplatePayload:
    """A prompt as a ``{name}`` template; its slots are the features (``baselines``: the text a
    removed slot takes, default "")."""

    template: str
    values: dict[str, str] = field(compare=False)
    baselines: dict[str, str] = field(default_factory=dict, compare=False)


Payload = Union[ImagePayload, TensorPayload, TabularPayload, TextPayload, TemplatePayload]


class TargetKind(str, Enum):
    DEFAULT = "default"  # the spec's default_target
    PREDICTED = "predicted"
    INDEX = "index"
    LABEL = "label"
    TOP_K = "top_k"


@dataclass(frozen=True)
class TargetSpec:
    kind: TargetKind = TargetKind.DEFAULT
    index: int = 0
    label: str = ""
    k: int = 1


class BaselineKind(str, Enum):
    DEFAULT = "default"  # the spec's default baseline
    NAMED = "named"
    ZEROS = "zeros"
    CONSTANT = "constant"
    BLUR = "blur"
    DATASET_MEAN = "dataset_mean"
    UNIFORM = "uniform"
    REFERENCE_SET = "reference_set"
    TENSOR = "tensor"


@dataclass(frozen=True)
class BaselineSpec:
    kind: BaselineKind = BaselineKind.DEFAULT
    name: str = ""
    value: float = 0.0
    sigma: float = 0.0
    low: float = 0.0
    high: float = 0.0
    seed: int = 0
    array: np.ndarray | None = field(default=None, compare=False, repr=False)

    def canonical(self) -> tuple:
        """A hashable description: equal for baselines that resolve to the same tensor (for
        input-independent kinds)."""
        if self.kind is BaselineKind.TENSOR and self.array is not None:
            a = np.ascontiguousarray(self.array)
            digest = hashlib.sha1(a.tobytes()).hexdigest()
            return (self.kind.value, a.shape, str(a.dtype), digest)
        if self.kind is BaselineKind.UNIFORM:
            return (self.kind.value, self.low, self.high, self.seed)
        if self.kind is BaselineKind.CONSTANT:
            return (self.kind.value, self.value)
        if self.kind is BaselineKind.BLUR:
            return (self.kind.value, self.sigma)
        return (self.kind.value, self.name)


@dataclass(frozen=True)
class OutputOptions:
    attributions: bool = True
    top_features: int | None = None  # None: the spec's top_k_features
    heatmap: bool = False
    reasons: bool = True
    metrics: tuple[str, ...] = ()  # names of explanation metrics to compute (runtime.metrics)
    metric_samples: int = 0        # perturbations per metric; 0: the server default


@dataclass(frozen=True)
class NoiseTunnelSpec:
    """A request's noise tunnel around its algorithm, as sent (runtime.noise checks it)."""

    type: str = ""                 # "" = smoothgrad
    samples: int = 0               # 0 = the default
    stdevs: float | None = None    # None = the default
    samples_batch_size: int = 0    # 0 = the server's choice


@dataclass(frozen=True)
class LayerSelector:
    """The layer a layer or neuron method runs on: ``name`` from the spec's layers ("" = its
    default layer), attributions to the layer's input instead of its output, and the neuron
    (an index into the layer's per-example tensor; neuron methods only)."""

    name: str = ""
    attribute_to_layer_input: bool = False
    neuron: tuple[int, ...] = ()

    @property
    def given(self) -> bool:
        return self != LayerSelector()


@dataclass
class Request:
    """One caller's request. ``explain`` says which kind of answer the caller asked for."""

    inputs: Payload | None
    explain: bool
    algorithm: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # frozen: one shared default each (building them took 2 of a prediction's ~50 us)
    target: TargetSpec = TargetSpec()
    baseline: BaselineSpec = BaselineSpec()
    outputs: OutputOptions = OutputOptions()
    noise_tunnel: NoiseTunnelSpec | None = None
    layer: LayerSelector = LayerSelector()
    max_batch_rows: int | None = None
    deadline_ms: int | None = None
    request_id: str = ""
    model: str = ""
    received_at: float = field(default_factory=time.monotonic)
    target_text: str = ""  # text models: the answer to explain ("" = generate)
    max_new_tokens: int = 0  # text models: 0 = the limit max_new_tokens
    stream_tokens: bool = False  # text models: send token_attr in parts (TextExecutor.run)
    stream_part_tokens: int = 0  # answer tokens per part (0: within max_stream_parts)


@dataclass
class ClassScore:
    index: int
    label: str
    probability: float
    logit: float


@dataclass
class Prediction:
    index: int
    label: str
    probability: float
    top: list[ClassScore]
    output: np.ndarray


@dataclass
class Feature:
    name: str
    value: float
    attribution: float


@dataclass
class TargetExplanation:
    target: int
    label: str
    attributions: np.ndarray | None
    instance_output: float
    baseline_output: float
    approximation_error: float | None
    top_features: list[Feature] = field(default_factory=list)
    heatmap_png: bytes | None = None
    reasons: list[str] = field(default_factory=list)
    reasons_note: str = ""  # why reasons is empty (an unsigned method), else ""
    metrics: dict[str, float] = field(default_factory=dict)  # OutputOptions.metrics, by name
    attributed_to: str = "input"  # input | layer_output | layer_input: what attributions index
    layer: str = ""  # the layer's friendly name, for methods that run on a layer


@dataclass
class TextExplanation:
    """Why a text model gave an answer: ``seq_attr`` (n_features,) to the whole answer,
    ``token_attr`` (n_output_tokens, n_features) per answer token (None for Lime/KernelShap)."""

    generated: str
    output_tokens: list[str]
    input_features: list[str]
    seq_attr: np.ndarray
    token_attr: np.ndarray | None
    heatmap_png: bytes | None = None
    token_row_offset: int = 0  # the answer token of token_attr's first row (a part: > 0)


@dataclass
class Timings:
    preprocess_ms: float = 0.0
    predict_ms: float = 0.0
    explain_ms: float = 0.0
    postprocess_ms: float = 0.0
    total_ms: float = 0.0
    fused_group_size: int = 0
    baseline_cache_hit: bool = False


@dataclass
class Response:
    model: str
    model_version: str
    request_id: str
    algorithm: str
    prediction: Prediction
    explanations: list[TargetExplanation] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    text: TextExplanation | None = None
    partial: bool = False  # one part of a streamed answer (Request.stream_tokens), not the answer
    part_index: int = 0  # the part's place in its stream (the final: the number of partials)
