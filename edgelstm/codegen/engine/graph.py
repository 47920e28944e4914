"""The main subgraph of a step .tflite as plain Python data: tensors (with constant data), ops
(with their builtin options), graph inputs and outputs by signature name. TF-free and
interpreter-free: read with `edgelstm.tflite_info` (the pure-Python `tflite` schema package)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError
from edgelstm.tflite_info import TFLiteInfo, builtin_options, constant_data, read_tflite

_NP_DTYPES = {
    "float32": np.float32,
    "int8": np.int8,
    "uint8": np.uint8,
    "int16": np.int16,
    "int32": np.int32,
    "int64": np.int64,
    "bool": np.bool_,
    "float16": np.float16,
}
CTYPES = {
    "float32": "float",
    "int8": "int8_t",
    "int16": "int16_t",
    "int32": "int32_t",
    "bool": "uint8_t",  # TFLite's bool tensors hold one byte per element, 0 or 1
}


@dataclass
class Tensor:
    """One tensor of the subgraph; `data` is set for constants."""

    index: int
    name: str
    shape: list[int]
    dtype: str
    scales: list[float]
    zero_points: list[int]
    data: np.ndarray | None = None

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= max(int(d), 1)
        return n

    @property
    def itemsize(self) -> int:
        return np.dtype(_NP_DTYPES.get(self.dtype, np.uint8)).itemsize

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    @property
    def ctype(self) -> str:
        return CTYPES.get(self.dtype, "")

    @property
    def scale(self) -> float:
        return self.scales[0] if self.scales else 0.0

    @property
    def zp(self) -> int:
        return self.zero_points[0] if self.zero_points else 0


@dataclass
class Op:
    """One operator: builtin name, tensor indices (-1 = absent) and the options object."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: Any = None


@dataclass
class Graph:
    """A step model ready for lowering."""

    info: TFLiteInfo
    tensors: list[Tensor]
    ops: list[Op]
    inputs: dict[str, int]  # signature name -> tensor index
    outputs: dict[str, int]
    input_order: list[str] = field(default_factory=list)


def data_io(graph: Graph) -> tuple[list[str], list[str]]:
    """(data inputs, data outputs) by signature name, every tensor but the states: `x` / `y`, or
    x0, x1, ... / y0, y1, ... in numeric order for a model with several (the C engine packs
    those into one x and one y buffer, in this order)."""
    ins = [n for n in graph.inputs if not n.startswith("state")]
    outs = [n for n in graph.outputs if not n.endswith("_out")]

    def key(n: str) -> tuple[int, str]:
        return (len(n), n)

    return sorted(ins, key=key), sorted(outs, key=key)


def read_model(path: Path) -> bytes:
    """The bytes of the .tflite file `path`; BadInputError if it is missing or not a model."""
    read_tflite(path)
    return Path(path).read_bytes()


def load_graph(model: Path | str | bytes, name: str | None = None) -> Graph:
    """Parse a .tflite (file or bytes; `name` for messages) into a Graph; BadInputError for
    anything unreadable."""
    data = model if isinstance(model, bytes) else read_model(Path(model))
    label = name or (str(model) if not isinstance(model, bytes) else "model")
    info = read_tflite(data)
    if info.subgraphs != 1:
        raise BadInputError(
            f"{label}: {info.subgraphs} subgraphs; the C engine lowers single-subgraph step models"
        )
    consts = constant_data(data)
    options = builtin_options(data)
    tensors = []
    for i, desc in enumerate(info.tensors):
        arr = None
        if i in consts:
            npdt = _NP_DTYPES.get(desc.dtype)
            if npdt is None:
                raise BadInputError(
                    f"constant tensor '{desc.name}' has unsupported dtype {desc.dtype}"
                )
            arr = np.frombuffer(consts[i], dtype=npdt).copy()
            shape = desc.shape or []
            arr = arr.reshape(shape) if shape else arr.reshape(())
        tensors.append(
            Tensor(
                index=i,
                name=desc.name,
                shape=list(desc.shape),
                dtype=desc.dtype,
                scales=list(desc.scales),
                zero_points=list(desc.zero_points),
                data=arr,
            )
        )
    ops = [
        Op(
            index=o.index,
            name=o.name,
            inputs=list(o.inputs),
            outputs=list(o.outputs),
            options=options[o.index],
        )
        for o in info.ops
    ]
    return Graph(
        info=info,
        tensors=tensors,
        ops=ops,
        inputs={t.name: t.tensor_index for t in info.inputs},
        outputs={t.name: t.tensor_index for t in info.outputs},
        input_order=[t.name for t in info.inputs],
    )
