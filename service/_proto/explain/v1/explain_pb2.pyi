from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    FLOAT32: _ClassVar[DType]
    FLOAT64: _ClassVar[DType]
    FLOAT16: _ClassVar[DType]
    INT64: _ClassVar[DType]
    INT32: _ClassVar[DType]
    UINT8: _ClassVar[DType]
DTYPE_UNSPECIFIED: DType
FLOAT32: DType
FLOAT64: DType
FLOAT16: DType
INT64: DType
INT32: DType
UINT8: DType

class Tensor(_message.Message):
    __slots__ = ("shape", "dtype", "data")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    data: bytes
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., data: _Optional[bytes] = ...) -> None: ...

class TabularInput(_message.Message):
    __slots__ = ("features",)
    class FeaturesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    FEATURES_FIELD_NUMBER: _ClassVar[int]
    features: _containers.ScalarMap[str, float]
    def __init__(self, features: _Optional[_Mapping[str, float]] = ...) -> None: ...

class Input(_message.Message):
    __slots__ = ("image", "tensor", "tabular", "text", "template")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    TABULAR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    tensor: Tensor
    tabular: TabularInput
    text: str
    template: TextTemplate
    def __init__(self, image: _Optional[bytes] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ..., tabular: _Optional[_Union[TabularInput, _Mapping]] = ..., text: _Optional[str] = ..., template: _Optional[_Union[TextTemplate, _Mapping]] = ...) -> None: ...

class TextTemplate(_message.Message):
    __slots__ = ("template", "values", "baselines")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    class BaselinesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    template: str
    values: _containers.ScalarMap[str, str]
    baselines: _containers.ScalarMap[str, str]
    def __init__(self, template: _Optional[str] = ..., values: _Optional[_Mapping[str, str]] = ..., baselines: _Optional[_Mapping[str, str]] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("predicted", "index", "label", "top_k")
    PREDICTED_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    predicted: bool
    index: int
    label: str
    top_k: int
    def __init__(self, predicted: _Optional[bool] = ..., index: _Optional[int] = ..., label: _Optional[str] = ..., top_k: _Optional[int] = ...) -> None: ...

class BlurBaseline(_message.Message):
    __slots__ = ("sigma",)
    SIGMA_FIELD_NUMBER: _ClassVar[int]
    sigma: float
    def __init__(self, sigma: _Optional[float] = ...) -> None: ...

class UniformNoiseBaseline(_message.Message):
    __slots__ = ("low", "high", "seed")
    LOW_FIELD_NUMBER: _ClassVar[int]
    HIGH_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    low: float
    high: float
    seed: int
    def __init__(self, low: _Optional[float] = ..., high: _Optional[float] = ..., seed: _Optional[int] = ...) -> None: ...

class Baseline(_message.Message):
    __slots__ = ("named", "zeros", "constant", "blur", "dataset_mean", "uniform", "reference_set", "tensor")
    NAMED_FIELD_NUMBER: _ClassVar[int]
    ZEROS_FIELD_NUMBER: _ClassVar[int]
    CONSTANT_FIELD_NUMBER: _ClassVar[int]
    BLUR_FIELD_NUMBER: _ClassVar[int]
    DATASET_MEAN_FIELD_NUMBER: _ClassVar[int]
    UNIFORM_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_SET_FIELD_NUMBER: _ClassVar[int]
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    named: str
    zeros: bool
    constant: float
    blur: BlurBaseline
    dataset_mean: bool
    uniform: UniformNoiseBaseline
    reference_set: str
    tensor: Tensor
    def __init__(self, named: _Optional[str] = ..., zeros: _Optional[bool] = ..., constant: _Optional[float] = ..., blur: _Optional[_Union[BlurBaseline, _Mapping]] = ..., dataset_mean: _Optional[bool] = ..., uniform: _Optional[_Union[UniformNoiseBaseline, _Mapping]] = ..., reference_set: _Optional[str] = ..., tensor: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class OutputOptions(_message.Message):
    __slots__ = ("attributions", "top_features", "heatmap", "reasons", "metrics", "metric_samples")
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    TOP_FEATURES_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    METRIC_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    attributions: bool
    top_features: int
    heatmap: bool
    reasons: bool
    metrics: _containers.RepeatedScalarFieldContainer[str]
    metric_samples: int
    def __init__(self, attributions: _Optional[bool] = ..., top_features: _Optional[int] = ..., heatmap: _Optional[bool] = ..., reasons: _Optional[bool] = ..., metrics: _Optional[_Iterable[str]] = ..., metric_samples: _Optional[int] = ...) -> None: ...

class NoiseTunnelOptions(_message.Message):
    __slots__ = ("type", "samples", "stdevs", "samples_batch_size")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    STDEVS_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    type: str
    samples: int
    stdevs: float
    samples_batch_size: int
    def __init__(self, type: _Optional[str] = ..., samples: _Optional[int] = ..., stdevs: _Optional[float] = ..., samples_batch_size: _Optional[int] = ...) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_batch_rows",)
    MAX_BATCH_ROWS_FIELD_NUMBER: _ClassVar[int]
    max_batch_rows: int
    def __init__(self, max_batch_rows: _Optional[int] = ...) -> None: ...

class LayerSelector(_message.Message):
    __slots__ = ("name", "attribute_to_layer_input", "neuron")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTE_TO_LAYER_INPUT_FIELD_NUMBER: _ClassVar[int]
    NEURON_FIELD_NUMBER: _ClassVar[int]
    name: str
    attribute_to_layer_input: bool
    neuron: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., attribute_to_layer_input: _Optional[bool] = ..., neuron: _Optional[_Iterable[int]] = ...) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("model", "model_version", "inputs", "algorithm", "params", "target", "baseline", "outputs", "limits", "deadline_ms", "request_id", "noise_tunnel", "layer", "target_text", "max_new_tokens", "stream_tokens", "stream_part_tokens")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    BASELINE_FIELD_NUMBER: _ClassVar[int]
    OUTPUTS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    DEADLINE_MS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    NOISE_TUNNEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    TARGET_TEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_NEW_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STREAM_TOKENS_FIELD_NUMBER: _ClassVar[int]
    STREAM_PART_TOKENS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    inputs: Input
    algorithm: str
    params: _struct_pb2.Struct
    target: Target
    baseline: Baseline
    outputs: OutputOptions
    limits: Limits
    deadline_ms: int
    request_id: str
    noise_tunnel: NoiseTunnelOptions
    layer: LayerSelector
    target_text: str
    max_new_tokens: int
    stream_tokens: bool
    stream_part_tokens: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., inputs: _Optional[_Union[Input, _Mapping]] = ..., algorithm: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., baseline: _Optional[_Union[Baseline, _Mapping]] = ..., outputs: _Optional[_Union[OutputOptions, _Mapping]] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., deadline_ms: _Optional[int] = ..., request_id: _Optional[str] = ..., noise_tunnel: _Optional[_Union[NoiseTunnelOptions, _Mapping]] = ..., layer: _Optional[_Union[LayerSelector, _Mapping]] = ..., target_text: _Optional[str] = ..., max_new_tokens: _Optional[int] = ..., stream_tokens: _Optional[bool] = ..., stream_part_tokens: _Optional[int] = ...) -> None: ...

class ClassScore(_message.Message):
    __slots__ = ("index", "label", "probability", "logit")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    LOGIT_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    probability: float
    logit: float
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ..., probability: _Optional[float] = ..., logit: _Optional[float] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("index", "label", "probability", "top", "output")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TOP_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    probability: float
    top: _containers.RepeatedCompositeFieldContainer[ClassScore]
    output: Tensor
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ..., probability: _Optional[float] = ..., top: _Optional[_Iterable[_Union[ClassScore, _Mapping]]] = ..., output: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class Feature(_message.Message):
    __slots__ = ("name", "value", "attribution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: float
    attribution: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[float] = ..., attribution: _Optional[float] = ...) -> None: ...

class TargetExplanation(_message.Message):
    __slots__ = ("target", "label", "attributions", "instance_output", "baseline_output", "approximation_error", "top_features", "heatmap_png", "reasons", "reasons_note", "metrics", "attributed_to", "layer")
    class MetricsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    TARGET_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTIONS_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    BASELINE_OUTPUT_FIELD_NUMBER: _ClassVar[int]
    APPROXIMATION_ERROR_FIELD_NUMBER: _ClassVar[int]
    TOP_FEATURES_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_PNG_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    REASONS_NOTE_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTED_TO_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    target: int
    label: str
    attributions: Tensor
    instance_output: float
    baseline_output: float
    approximation_error: float
    top_features: _containers.RepeatedCompositeFieldContainer[Feature]
    heatmap_png: bytes
    reasons: _containers.RepeatedScalarFieldContainer[str]
    reasons_note: str
    metrics: _containers.ScalarMap[str, float]
    attributed_to: str
    layer: str
    def __init__(self, target: _Optional[int] = ..., label: _Optional[str] = ..., attributions: _Optional[_Union[Tensor, _Mapping]] = ..., instance_output: _Optional[float] = ..., baseline_output: _Optional[float] = ..., approximation_error: _Optional[float] = ..., top_features: _Optional[_Iterable[_Union[Feature, _Mapping]]] = ..., heatmap_png: _Optional[bytes] = ..., reasons: _Optional[_Iterable[str]] = ..., reasons_note: _Optional[str] = ..., metrics: _Optional[_Mapping[str, float]] = ..., attributed_to: _Optional[str] = ..., layer: _Optional[str] = ...) -> None: ...

class Timings(_message.Message):
    __slots__ = ("preprocess_ms", "predict_ms", "explain_ms", "postprocess_ms", "total_ms", "fused_group_size", "baseline_cache_hit")
    PREPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    PREDICT_MS_FIELD_NUMBER: _ClassVar[int]
    EXPLAIN_MS_FIELD_NUMBER: _ClassVar[int]
    POSTPROCESS_MS_FIELD_NUMBER: _ClassVar[int]
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    FUSED_GROUP_SIZE_FIELD_NUMBER: _ClassVar[int]
    BASELINE_CACHE_HIT_FIELD_NUMBER: _ClassVar[int]
    preprocess_ms: float
    predict_ms: float
    explain_ms: float
    postprocess_ms: float
    total_ms: float
    fused_group_size: int
    baseline_cache_hit: bool
    def __init__(self, preprocess_ms: _Optional[float] = ..., predict_ms: _Optional[float] = ..., explain_ms: _Optional[float] = ..., postprocess_ms: _Optional[float] = ..., total_ms: _Optional[float] = ..., fused_group_size: _Optional[int] = ..., baseline_cache_hit: _Optional[bool] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("model", "model_version", "request_id", "algorithm", "prediction", "explanations", "timings", "error", "text", "partial", "part_index")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    EXPLANATIONS_FIELD_NUMBER: _ClassVar[int]
    TIMINGS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    PART_INDEX_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    request_id: str
    algorithm: str
    prediction: Prediction
    explanations: _containers.RepeatedCompositeFieldContainer[TargetExplanation]
    timings: Timings
    error: Error
    text: TextExplanation
    partial: bool
    part_index: int
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., request_id: _Optional[str] = ..., algorithm: _Optional[str] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., explanations: _Optional[_Iterable[_Union[TargetExplanation, _Mapping]]] = ..., timings: _Optional[_Union[Timings, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., text: _Optional[_Union[TextExplanation, _Mapping]] = ..., partial: _Optional[bool] = ..., part_index: _Optional[int] = ...) -> None: ...

class TextExplanation(_message.Message):
    __slots__ = ("generated", "output_tokens", "input_features", "seq_attr", "token_attr", "heatmap_png", "token_row_offset")
    GENERATED_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_TOKENS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    SEQ_ATTR_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ATTR_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_PNG_FIELD_NUMBER: _ClassVar[int]
    TOKEN_ROW_OFFSET_FIELD_NUMBER: _ClassVar[int]
    generated: str
    output_tokens: _containers.RepeatedScalarFieldContainer[str]
    input_features: _containers.RepeatedScalarFieldContainer[str]
    seq_attr: _containers.RepeatedScalarFieldContainer[float]
    token_attr: Tensor
    heatmap_png: bytes
    token_row_offset: int
    def __init__(self, generated: _Optional[str] = ..., output_tokens: _Optional[_Iterable[str]] = ..., input_features: _Optional[_Iterable[str]] = ..., seq_attr: _Optional[_Iterable[float]] = ..., token_attr: _Optional[_Union[Tensor, _Mapping]] = ..., heatmap_png: _Optional[bytes] = ..., token_row_offset: _Optional[int] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "field", "message", "allowed", "http_status", "grpc_code")
    CODE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_FIELD_NUMBER: _ClassVar[int]
    HTTP_STATUS_FIELD_NUMBER: _ClassVar[int]
    GRPC_CODE_FIELD_NUMBER: _ClassVar[int]
    code: str
    field: str
    message: str
    allowed: _containers.RepeatedScalarFieldContainer[str]
    http_status: int
    grpc_code: str
    def __init__(self, code: _Optional[str] = ..., field: _Optional[str] = ..., message: _Optional[str] = ..., allowed: _Optional[_Iterable[str]] = ..., http_status: _Optional[int] = ..., grpc_code: _Optional[str] = ...) -> None: ...

class ExplainReply(_message.Message):
    __slots__ = ("response", "error", "spec")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    SPEC_FIELD_NUMBER: _ClassVar[int]
    response: ExplainResponse
    error: Error
    spec: ModelSpec
    def __init__(self, response: _Optional[_Union[ExplainResponse, _Mapping]] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., spec: _Optional[_Union[ModelSpec, _Mapping]] = ...) -> None: ...

class ParamInfo(_message.Message):
    __slots__ = ("name", "type", "default_value", "choices", "minimum", "maximum")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_VALUE_FIELD_NUMBER: _ClassVar[int]
    CHOICES_FIELD_NUMBER: _ClassVar[int]
    MINIMUM_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: str
    default_value: str
    choices: _containers.RepeatedScalarFieldContainer[str]
    minimum: float
    maximum: float
    def __init__(self, name: _Optional[str] = ..., type: _Optional[str] = ..., default_value: _Optional[str] = ..., choices: _Optional[_Iterable[str]] = ..., minimum: _Optional[float] = ..., maximum: _Optional[float] = ...) -> None: ...

class AlgorithmInfo(_message.Message):
    __slots__ = ("name", "params", "baselines", "family")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    FAMILY_FIELD_NUMBER: _ClassVar[int]
    name: str
    params: _containers.RepeatedCompositeFieldContainer[ParamInfo]
    baselines: str
    family: str
    def __init__(self, name: _Optional[str] = ..., params: _Optional[_Iterable[_Union[ParamInfo, _Mapping]]] = ..., baselines: _Optional[str] = ..., family: _Optional[str] = ...) -> None: ...

class LayerInfo(_message.Message):
    __slots__ = ("name", "module", "output_shape", "input_shape")
    NAME_FIELD_NUMBER: _ClassVar[int]
    MODULE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    name: str
    module: str
    output_shape: _containers.RepeatedScalarFieldContainer[int]
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, name: _Optional[str] = ..., module: _Optional[str] = ..., output_shape: _Optional[_Iterable[int]] = ..., input_shape: _Optional[_Iterable[int]] = ...) -> None: ...

class ModelSpec(_message.Message):
    __slots__ = ("name", "version", "description", "purpose", "input_kind", "input_shape", "feature_names", "class_names", "algorithms", "default_algorithm", "baselines", "default_baseline", "batch_size", "max_batch_delay_ms", "limits", "layers", "text")
    class LimitsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    PURPOSE_FIELD_NUMBER: _ClassVar[int]
    INPUT_KIND_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    FEATURE_NAMES_FIELD_NUMBER: _ClassVar[int]
    CLASS_NAMES_FIELD_NUMBER: _ClassVar[int]
    ALGORITHMS_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_ALGORITHM_FIELD_NUMBER: _ClassVar[int]
    BASELINES_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_BASELINE_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    description: str
    purpose: str
    input_kind: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    feature_names: _containers.RepeatedScalarFieldContainer[str]
    class_names: _containers.RepeatedScalarFieldContainer[str]
    algorithms: _containers.RepeatedCompositeFieldContainer[AlgorithmInfo]
    default_algorithm: str
    baselines: _containers.RepeatedScalarFieldContainer[str]
    default_baseline: str
    batch_size: int
    max_batch_delay_ms: int
    limits: _containers.ScalarMap[str, int]
    layers: _containers.RepeatedCompositeFieldContainer[LayerInfo]
    text: TextModelInfo
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., description: _Optional[str] = ..., purpose: _Optional[str] = ..., input_kind: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., feature_names: _Optional[_Iterable[str]] = ..., class_names: _Optional[_Iterable[str]] = ..., algorithms: _Optional[_Iterable[_Union[AlgorithmInfo, _Mapping]]] = ..., default_algorithm: _Optional[str] = ..., baselines: _Optional[_Iterable[str]] = ..., default_baseline: _Optional[str] = ..., batch_size: _Optional[int] = ..., max_batch_delay_ms: _Optional[int] = ..., limits: _Optional[_Mapping[str, int]] = ..., layers: _Optional[_Iterable[_Union[LayerInfo, _Mapping]]] = ..., text: _Optional[_Union[TextModelInfo, _Mapping]] = ...) -> None: ...

class TextModelInfo(_message.Message):
    __slots__ = ("context_length", "stop_token", "baseline_token")
    CONTEXT_LENGTH_FIELD_NUMBER: _ClassVar[int]
    STOP_TOKEN_FIELD_NUMBER: _ClassVar[int]
    BASELINE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    context_length: int
    stop_token: str
    baseline_token: str
    def __init__(self, context_length: _Optional[int] = ..., stop_token: _Optional[str] = ..., baseline_token: _Optional[str] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelSpec]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelSpec, _Mapping]]] = ...) -> None: ...

class GetModelSpecRequest(_message.Message):
    __slots__ = ("model", "model_version")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ...) -> None: ...
