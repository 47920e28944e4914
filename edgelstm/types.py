"""Typed configs and results shared by every stage (no heavy imports here).

Conventions every stage relies on:

* Sequence models (`Variant.SEQUENCE`) have one input named ``x`` shaped ``[1, T, D]`` (``[1, T]``
  int32 tokens for an Embedding front-end) and one output named ``y``.
* Step models (`Variant.STEP`) take one time step per invoke: input ``x`` shaped ``[1, D]``
  (``[1]`` int32 token) plus one input per state tensor, named ``state{k}_{role}``
  (role ``h``, ``c`` or ``win`` for a causal Conv1D window), and return ``y`` plus
  ``state{k}_{role}_out``. The caller copies every ``*_out`` back into its input before the next
  step and writes the state's ``reset_value`` to reset. `StateTensor` records the pairing.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass, field
from typing import Any

STEP_INPUT = "x"
STEP_OUTPUT = "y"


class Variant(str, enum.Enum):
    """Which deployable graph an artifact is."""

    SEQUENCE = "sequence"
    STEP = "step"


class Quantization(str, enum.Enum):
    """Quantization scheme of an artifact."""

    FLOAT = "float"
    DYNAMIC = "dynamic"
    FLOAT16 = "float16"
    INT8 = "int8"
    INT16X8 = "int16x8"

    @property
    def needs_calibration(self) -> bool:
        return self in (Quantization.INT8, Quantization.INT16X8)

    @property
    def is_integer(self) -> bool:
        return self.needs_calibration


class OutputKind(str, enum.Enum):
    """How the model maps a sequence to outputs."""

    MANY_TO_ONE = "many_to_one"
    MANY_TO_MANY = "many_to_many"


def state_input_name(k: int, role: str) -> str:
    """Name of the step model's input for state tensor `role` of stateful layer `k`."""
    return f"state{k}_{role}"


def state_output_name(k: int, role: str) -> str:
    """Name of the step model's output that carries the next value of that state."""
    return f"state{k}_{role}_out"


@dataclass
class TensorInfo:
    """One input or output tensor of a .tflite model."""

    name: str
    index: int  # position in the subgraph's inputs (or outputs) list
    tensor_index: int  # index in the subgraph's tensor table
    shape: list[int]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0
    # The Keras input / output it stands for, on a model with several ("" otherwise: x / y)
    keras_name: str = ""

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


@dataclass
class StateTensor:
    """A recurrent state carried by the caller of a step model."""

    layer: str  # Keras layer name that owns the state
    role: str  # "h", "c" or "win"
    input: str  # signature input name
    output: str  # signature output name
    input_index: int
    output_index: int
    shape: list[int]
    dtype: str
    scale: float = 0.0
    zero_point: int = 0
    reset_value: float = 0.0  # the real value a reset writes (always 0.0 today)

    @property
    def reset_raw(self) -> int | float:
        """The stored value that represents `reset_value` (the zero point when quantized)."""
        if self.scale:
            return round(self.reset_value / self.scale) + self.zero_point
        return self.reset_value


@dataclass
class Parity:
    """How a converted artifact compares with its reference (usually the Keras model)."""

    reference: str
    runtime: str
    samples: int
    max_abs: float
    mean_abs: float
    bound: float
    passed: bool
    argmax_agreement: float | None = None
    cosine: float | None = None
    note: str = ""
    # What the figures above were measured on (held-out data, never the calibration set itself).
    data: str = ""
    # The same check on the calibration sequences ({samples, max_abs, mean_abs}), for comparison.
    calibration_set: dict[str, Any] | None = None
    # Step models: one long stream across windows, state never reset
    # ({steps, max_abs, mean_abs, bound, passed}); `passed` above requires it too.
    stream: dict[str, Any] | None = None
    # Several outputs: {name: {max_abs, mean_abs, bound, passed}}; the figures above are the worst
    outputs: dict[str, Any] | None = None


@dataclass
class Artifact:
    """One converted file and everything a deployer needs to know about it."""

    file: str
    variant: Variant
    quantization: Quantization
    ops: list[str]
    op_counts: dict[str, int]
    fused_lstm: bool
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    states: list[StateTensor] = field(default_factory=list)
    macs_per_invoke: int = 0
    params: int = 0
    size_bytes: int = 0
    parity: Parity | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _artifact_plain(_plain(asdict(self)))


def _artifact_plain(a: dict[str, Any]) -> dict[str, Any]:
    """Drop the multi-I/O fields where unused, so a one-input, one-output model's manifest is
    as it was before they existed."""
    for t in a.get("inputs", []) + a.get("outputs", []):
        if not t.get("keras_name"):
            t.pop("keras_name", None)
    if a.get("parity") and a["parity"].get("outputs") is None:
        a["parity"].pop("outputs", None)
    return a


@dataclass
class LayerSummary:
    """One Keras layer as edgelstm understood it."""

    name: str
    kind: str
    units: int | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class ModelSummary:
    """The source model: shape of its input and output, and its layers."""

    framework: str  # "keras3" or "tf_keras"
    seq_len: int | None
    input_shape: list[int | None]
    output_shape: list[int | None]
    output_kind: OutputKind
    token_input: bool
    layers: list[LayerSummary]
    recurrent: bool
    streamable: bool
    stream_blockers: list[str] = field(default_factory=list)


@dataclass
class Manifest:
    """What `edgelstm convert` wrote: the source, the model, and every artifact."""

    edgelstm_version: str
    source: dict[str, Any]
    model: ModelSummary
    artifacts: list[Artifact]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = _plain(asdict(self))
        d["artifacts"] = [_artifact_plain(a) for a in d["artifacts"]]
        return d

    def artifact(self, variant: Variant | str, quantization: Quantization | str) -> Artifact:
        """The artifact of that variant and quantization (KeyError when absent)."""
        for art in self.artifacts:
            if art.variant == Variant(variant) and art.quantization == Quantization(quantization):
                return art
        raise KeyError(f"no {variant}/{quantization} artifact")


def _plain(obj: Any) -> Any:
    """Enums to their values, recursively, so json.dumps needs no hooks."""
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def manifest_from_dict(data: dict[str, Any]) -> Manifest:
    """Rebuild a Manifest from its JSON form (manifest.json)."""
    model = dict(data["model"])
    model["output_kind"] = OutputKind(model["output_kind"])
    model["layers"] = [LayerSummary(**layer) for layer in model["layers"]]
    arts = []
    for a in data["artifacts"]:
        a = dict(a)
        a["variant"] = Variant(a["variant"])
        a["quantization"] = Quantization(a["quantization"])
        a["inputs"] = [TensorInfo(**t) for t in a["inputs"]]
        a["outputs"] = [TensorInfo(**t) for t in a["outputs"]]
        a["states"] = [StateTensor(**s) for s in a["states"]]
        a["parity"] = Parity(**a["parity"]) if a.get("parity") else None
        arts.append(Artifact(**a))
    return Manifest(
        edgelstm_version=data["edgelstm_version"],
        source=data["source"],
        model=ModelSummary(**model),
        artifacts=arts,
        notes=data.get("notes", []),
    )


@dataclass
class ConvertConfig:
    """Options of `edgelstm convert` (the CLI maps its flags onto this one-to-one)."""

    variants: list[Variant] | None = None  # None: every variant the model allows
    quantizations: list[Quantization] = field(default_factory=lambda: [Quantization.FLOAT])
    calibration: str | None = None  # .npy, or .npz with key `x`
    calibration_samples: int = 128  # sequences used to calibrate
    verify_samples: int = 16  # sequences used for the parity check
    seq_len: int | None = None
    unsafe: bool = False
    allow_unfused: bool = False
    verify_fail: bool = True
    float_io: bool = False  # keep float input/output tensors on integer models
    seed: int = 0
    name: str | None = None  # file stem of the artifacts (default: the model file's stem)
    verify_data: str | None = None  # held-out sequences for the parity check (.npy/.npz)
    calibration_stream: str | None = None  # one long stream [L, D] / [L] for step-state ranges
    example_input_shape: tuple[int, ...] | None = None  # .pt sources: the shape to export with
    int16_cell: bool = True  # int8 step models: LSTM gates and cell state in int16 (tflite.cell16)


@dataclass(frozen=True)
class QuantizeConfig:
    """Options of `edgelstm quantize` (the CLI maps its flags onto this one-to-one)."""

    quantizations: tuple[Quantization, ...]  # float is always made: the reference
    calibration: str | None = None  # .npy, or .npz with key `x` (else the recipe's)
    samples: int = 128  # calibration sequences
    prune: float | None = None  # target sparsity (tensorflow-model-optimization)
    eval_file: str | None = None  # labelled eval data (.npz with x and y)
    stream_len: int = 512  # steps of the drift stream
    seed: int = 0
    recipe: str | None = None  # zoo recipe: calibration, eval data, metric, QAT data
    qat: bool = False  # quantization-aware fine-tuning (needs recipe)
    qat_epochs: int = 2
    qat_samples: int = 2048
    qat_lr: float | None = None
    qat_max_steps: int | None = None


def as_manifest(manifest: Manifest | dict[str, Any] | None) -> Manifest | None:
    """A Manifest from a Manifest, its JSON form (a manifest.json beside a model), or None; a
    dict that is not a whole manifest (hand-edited, or from an older edgelstm) gives None, so
    metadata then comes from the flatbuffer."""
    if manifest is None or isinstance(manifest, Manifest):
        return manifest
    try:
        return manifest_from_dict(manifest)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


# What exporters take for a model's manifest: the object, its JSON form, or nothing.
ManifestLike = Manifest | dict[str, Any] | None
