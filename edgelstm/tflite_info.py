"""Read a .tflite flatbuffer without TensorFlow: ops, tensors, quantization, signatures, MACs.

Reading uses the pure-Python `tflite` schema package (flatc-generated accessors over the
`flatbuffers` runtime, both pure Python), never an interpreter wheel and never hand-written byte
parsing: `inspect`, `profile` and `stream` work with any backend (ai-edge-litert, tflite-runtime,
the C engine) or none, on any CPU. Edits (`edgelstm.tflite.passes`) need the official schema's
object API, which ships with ai-edge-litert and tflite-micro: `schema()`. This is the runtime side:
it must not import TensorFlow.
"""

from __future__ import annotations

import importlib
import inspect
from collections import Counter
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

from edgelstm.errors import BadInputError, MissingDependencyError
from edgelstm.types import StateTensor, TensorInfo, state_output_name

# The official bindings with the object API (ModelT ... Pack), for edits and the C engine lowering.
_SCHEMA_MODULES = (
    "ai_edge_litert.schema_py_generated",
    "tflite_micro.tensorflow.lite.micro.python.schema_py_generated",
    "tflite_runtime.schema_py_generated",
)

# Ops that mean a recurrent layer was not lowered to the fused kernel or to plain ops.
UNFUSED_MARKERS = ("WHILE", "TENSOR_LIST", "FLEX", "VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")


@cache
def schema() -> ModuleType:
    """The official schema module (object API) from ai-edge-litert or tflite-micro: for edits."""
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependencyError("ai-edge-litert", "editing a .tflite file", extra="runtime")


@cache
def reader() -> ModuleType:
    """The read-only schema accessors: the pure-Python `tflite` package (a core dependency)."""
    try:
        return importlib.import_module("tflite")
    except ImportError:
        raise MissingDependencyError("tflite", "reading a .tflite file") from None


@cache
def _enum_names(cls_name: str) -> dict[int, str]:
    cls = getattr(reader(), cls_name)
    return {v: k for k, v in vars(cls).items() if not k.startswith("_") and isinstance(v, int)}


def dtype_name(code: int) -> str:
    """Schema TensorType code -> numpy-style dtype name ('float32', 'int8', ...)."""
    return _enum_names("TensorType").get(code, f"type{code}").lower()


@dataclass
class TensorDesc:
    """One tensor of the main subgraph."""

    index: int
    name: str
    shape: list[int]
    dtype: str
    scales: list[float]
    zero_points: list[int]
    is_variable: bool
    buffer_bytes: int  # constant data bytes (0 for activations)
    quantized_dimension: int = 0

    @property
    def scale(self) -> float:
        return (
            self.scales[0] if len(self.scales) == 1 else 0.0 if not self.scales else self.scales[0]
        )

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0


@dataclass
class OpDesc:
    """One operator of the main subgraph."""

    index: int
    name: str  # builtin name, e.g. FULLY_CONNECTED, or CUSTOM:<code>
    inputs: list[int]
    outputs: list[int]
    macs: int = 0


@dataclass
class TFLiteInfo:
    """What a .tflite contains, as far as deployment cares."""

    size_bytes: int
    subgraphs: int
    ops: list[OpDesc]
    tensors: list[TensorDesc]
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    all_op_names: list[str]  # across every subgraph (WHILE bodies included)
    signature_keys: list[str] = field(default_factory=list)
    description: str = ""

    @property
    def op_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(self.all_op_names).items()))

    @property
    def op_set(self) -> list[str]:
        return sorted(set(self.all_op_names))

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops)

    @property
    def params(self) -> int:
        """Elements of constant tensors (weights and biases)."""
        total = 0
        for t in self.tensors:
            if t.buffer_bytes:
                n = 1
                for d in t.shape:
                    n *= max(d, 1)
                total += n
        return total

    @property
    def fused_lstm(self) -> bool:
        return "UNIDIRECTIONAL_SEQUENCE_LSTM" in self.all_op_names

    @property
    def unfused_ops(self) -> list[str]:
        """Ops that betray a loop/TensorList/Flex/resource-variable lowering."""
        return sorted(
            {
                n
                for n in self.all_op_names
                if any(m in n for m in UNFUSED_MARKERS) or n.startswith("CUSTOM:Flex")
            }
        )

    @property
    def fc_without_bias(self) -> list[str]:
        """Output names of FULLY_CONNECTED ops with no bias input: tflite-runtime 2.14's int8
        kernel on ARM crashes on them (edgelstm's own artifacts always carry one)."""
        return [
            self.tensors[op.outputs[0]].name
            for op in self.ops
            if op.name == "FULLY_CONNECTED" and (len(op.inputs) < 3 or op.inputs[2] < 0)
        ]

    @property
    def variable_tensors(self) -> list[TensorDesc]:
        return [t for t in self.tensors if t.is_variable]

    def states(self) -> list[StateTensor]:
        """State pairs of a step model, by the naming convention in edgelstm.types."""
        outs = {o.name: o for o in self.outputs}
        states = []
        for inp in self.inputs:
            if not inp.name.startswith("state"):
                continue
            k_role = inp.name[len("state") :]
            k, _, role = k_role.partition("_")
            out = outs.get(state_output_name(int(k), role)) if k.isdigit() else None
            if out is None:
                continue
            states.append(
                StateTensor(
                    layer=f"state{k}",
                    role=role,
                    input=inp.name,
                    output=out.name,
                    input_index=inp.index,
                    output_index=out.index,
                    shape=list(inp.shape),
                    dtype=inp.dtype,
                    scale=inp.scale,
                    zero_point=inp.zero_point,
                )
            )
        return states

    def tensor(self, index: int) -> TensorDesc:
        return self.tensors[index]

    def summary(self) -> dict[str, Any]:
        """A JSON-able digest (used by `edgelstm inspect --json`)."""
        return {
            "size_bytes": self.size_bytes,
            "subgraphs": self.subgraphs,
            "ops": self.op_set,
            "op_counts": self.op_counts,
            "fused_lstm": self.fused_lstm,
            "unfused_ops": self.unfused_ops,
            "macs_per_invoke": self.macs,
            "params": self.params,
            "inputs": [vars(t) for t in self.inputs],
            "outputs": [vars(t) for t in self.outputs],
            "states": [vars(s) for s in self.states()],
            "variable_tensors": [
                {"index": t.index, "name": t.name, "shape": t.shape, "dtype": t.dtype}
                for t in self.variable_tensors
            ],
            "signatures": self.signature_keys,
            "fc_without_bias": self.fc_without_bias,
        }


def read_tflite(source: str | Path | bytes) -> TFLiteInfo:
    """Parse a .tflite file (path or bytes); BadInputError if it is not a valid model."""
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.exists():
            raise BadInputError(f"{path}: no such file")
        if path.is_dir():
            raise BadInputError(f"{path}: is a directory, not a .tflite file")
        data = path.read_bytes()
        label = str(path)
    else:
        data = bytes(source)
        label = "model"
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise BadInputError(f"{label}: not a TFLite flatbuffer (missing 'TFL3' identifier)")
    try:
        return _parse(data)
    except (BadInputError, MissingDependencyError):  # not "corrupt": a package is missing
        raise
    except Exception as exc:  # flatbuffers raises assorted errors on truncated data
        raise BadInputError(
            f"{label}: corrupt or truncated .tflite ({type(exc).__name__})"
        ) from exc


def _parse(data: bytes) -> TFLiteInfo:
    model = reader().Model.GetRootAs(data, 0)
    opcodes = []
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        name = _enum_names("BuiltinOperator").get(code, f"OP{code}")
        if name == "CUSTOM":
            custom = oc.CustomCode()
            name = f"CUSTOM:{custom.decode() if custom else '?'}"
        opcodes.append(name)

    def buffer_len(idx: int) -> int:
        if idx <= 0 or idx >= model.BuffersLength():
            return 0
        buf = model.Buffers(idx)
        if buf.Size():  # data stored outside the flatbuffer (models > 2 GB)
            return int(buf.Size())
        return buf.DataLength()

    all_names: list[str] = []
    for s in range(model.SubgraphsLength()):
        sg = model.Subgraphs(s)
        all_names.extend(
            opcodes[sg.Operators(i).OpcodeIndex()] for i in range(sg.OperatorsLength())
        )

    sg = model.Subgraphs(0)
    tensors = []
    for i in range(sg.TensorsLength()):
        t = sg.Tensors(i)
        q = t.Quantization()
        scales = [float(v) for v in q.ScaleAsNumpy()] if q is not None and q.ScaleLength() else []
        zps = (
            [int(v) for v in q.ZeroPointAsNumpy()] if q is not None and q.ZeroPointLength() else []
        )
        shape = [int(d) for d in t.ShapeAsNumpy()] if t.ShapeLength() else []
        tensors.append(
            TensorDesc(
                index=i,
                name=(t.Name() or b"").decode(errors="replace"),
                shape=shape,
                dtype=dtype_name(t.Type()),
                scales=scales,
                zero_points=zps,
                is_variable=bool(t.IsVariable()),
                buffer_bytes=buffer_len(t.Buffer()),
                quantized_dimension=q.QuantizedDimension() if q is not None else 0,
            )
        )
    ops = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name = opcodes[op.OpcodeIndex()]
        ins = [int(v) for v in op.InputsAsNumpy()] if op.InputsLength() else []
        outs = [int(v) for v in op.OutputsAsNumpy()] if op.OutputsLength() else []
        desc = OpDesc(index=i, name=name, inputs=ins, outputs=outs)
        desc.macs = _macs(desc, tensors)
        ops.append(desc)

    sg_inputs = [int(v) for v in sg.InputsAsNumpy()] if sg.InputsLength() else []
    sg_outputs = [int(v) for v in sg.OutputsAsNumpy()] if sg.OutputsLength() else []
    # A tensor can back several signature outputs (a step model whose y is also its h state):
    # keep every name, handed out in order, so no output disappears.
    in_names: dict[int, list[str]] = {}
    out_names: dict[int, list[str]] = {}
    keys = []
    for k in range(model.SignatureDefsLength()):
        sd = model.SignatureDefs(k)
        keys.append((sd.SignatureKey() or b"").decode())
        if sd.SubgraphIndex() != 0:
            continue
        for j in range(sd.InputsLength()):
            in_names.setdefault(sd.Inputs(j).TensorIndex(), []).append(sd.Inputs(j).Name().decode())
        for j in range(sd.OutputsLength()):
            out_names.setdefault(sd.Outputs(j).TensorIndex(), []).append(
                sd.Outputs(j).Name().decode()
            )

    def io(indices: list[int], names: dict[int, list[str]]) -> list[TensorInfo]:
        result = []
        for pos, ti in enumerate(indices):
            t = tensors[ti]
            left = names.get(ti)
            result.append(
                TensorInfo(
                    name=left.pop(0) if left else t.name,
                    index=pos,
                    tensor_index=ti,
                    shape=list(t.shape),
                    dtype=t.dtype,
                    scale=t.scale,
                    zero_point=t.zero_point,
                )
            )
        return result

    desc = model.Description()
    return TFLiteInfo(
        size_bytes=len(data),
        subgraphs=model.SubgraphsLength(),
        ops=ops,
        tensors=tensors,
        inputs=io(sg_inputs, in_names),
        outputs=io(sg_outputs, out_names),
        all_op_names=all_names,
        signature_keys=keys,
        description=desc.decode(errors="replace") if desc else "",
    )


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(d, 1)
    return n


def _macs(op: OpDesc, tensors: list[TensorDesc]) -> int:
    """Multiply-accumulates of one op (elementwise ops count as 0)."""

    def shape(pos: int, io: str = "in") -> list[int]:
        idx_list = op.inputs if io == "in" else op.outputs
        if pos >= len(idx_list) or idx_list[pos] < 0:
            return []
        return tensors[idx_list[pos]].shape

    name = op.name
    if name == "FULLY_CONNECTED":
        w = shape(1)
        if len(w) != 2:
            return 0
        out_features, in_features = w
        batch = _numel(shape(0)) // max(in_features, 1)
        return out_features * in_features * batch
    if name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
        x = shape(0)  # [B, T, D] (batch-major)
        w_in = shape(2)  # input_to_forget [H, D]
        w_rec = shape(6)  # recurrent_to_forget [H, H or P]
        if len(x) != 3 or len(w_in) != 2 or len(w_rec) != 2:
            return 0
        steps = x[0] * x[1]
        h = w_in[0]
        macs = steps * 4 * h * (w_in[1] + w_rec[1])
        proj = shape(16)  # projection weights [P, H]
        if len(proj) == 2:
            macs += steps * proj[0] * proj[1]
        return macs
    if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        w = shape(1)
        out = shape(0, "out")
        if len(w) != 4 or not out:
            return 0
        per_out = w[1] * w[2] * (w[3] if name == "CONV_2D" else 1)
        return _numel(out) * per_out
    if name == "BATCH_MATMUL":
        a, b = shape(0), shape(1)
        if len(a) >= 2 and len(b) >= 2:
            return _numel(shape(0, "out")) * a[-1]
    return 0


def _lower_camel(name: str) -> str:
    return name[:1].lower() + name[1:]


def _options_namespace(table: Any) -> SimpleNamespace:
    """An options table's scalar and vector fields as attributes named like the official object
    API's (`fusedActivationFunction`, `beginMask`, `newShape`, ...)."""
    values: dict[str, Any] = {}
    cls = type(table)
    for attr in dir(cls):
        if attr.startswith("_") or not attr[:1].isupper() or attr in ("Init",):
            continue
        if attr.startswith("GetRootAs") or attr.endswith(
            ("Length", "IsNone", "BufferHasIdentifier")
        ):
            continue
        fn = getattr(table, attr)
        if attr.endswith("AsNumpy"):
            arr = fn()
            values[_lower_camel(attr[: -len("AsNumpy")])] = (
                None if isinstance(arr, int) else [v.item() for v in arr]
            )
            continue
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            continue
        if params or f"{attr}AsNumpy" in dir(cls):
            continue  # a vector element accessor (handled by its AsNumpy twin) or a table
        values[_lower_camel(attr)] = fn()
    return SimpleNamespace(**values)


def builtin_options(data: bytes) -> list[SimpleNamespace | None]:
    """The builtin options of every op of the main subgraph (None where an op has none)."""
    fb = reader()
    model = fb.Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    names = _enum_names("BuiltinOptions")
    result: list[SimpleNamespace | None] = []
    for i in range(sg.OperatorsLength()):
        op = sg.Operators(i)
        name = names.get(op.BuiltinOptionsType(), "NONE")
        table = op.BuiltinOptions()
        cls = getattr(fb, name, None) if name != "NONE" else None
        if table is None or cls is None:
            result.append(None)
            continue
        opts = cls()
        opts.Init(table.Bytes, table.Pos)
        result.append(_options_namespace(opts))
    return result


def constant_data(data: bytes) -> dict[int, bytes]:
    """Raw bytes of every constant tensor of the main subgraph, by tensor index."""
    model = reader().Model.GetRootAs(data, 0)
    sg = model.Subgraphs(0)
    consts: dict[int, bytes] = {}
    for i in range(sg.TensorsLength()):
        b = sg.Tensors(i).Buffer()
        if b <= 0 or b >= model.BuffersLength():
            continue
        buf = model.Buffers(b)
        if buf.DataLength():
            consts[i] = buf.DataAsNumpy().tobytes()
    return consts
