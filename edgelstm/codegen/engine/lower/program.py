"""The lowered program and what every op family's lowering shares."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from typing import ClassVar

import numpy as np

from edgelstm.codegen.c import c_float
from edgelstm.codegen.engine.graph import Op, Tensor

ALIAS_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
# elementwise kernels that read element i before writing element i: may run in place
INPLACE_OPS = (
    "ADD",
    "SUB",
    "MUL",
    "MAXIMUM",
    "MINIMUM",
    "LOGISTIC",
    "TANH",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "QUANTIZE",
    "SOFTMAX",
    "ABS",
    "EXP",
    "LOG",
    "RSQRT",
    "ELU",
    "DIV",
)
ARENA_ALIGN = 8
PRE_ALIGN = 64  # the hoisted results' offsets in the per-step buffer (a cache line, a zmm load)


@dataclass
class Program:
    """The lowered model: C definitions (constants, params) and the body of the step function."""

    consts: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    # split_input: the ops that do not depend on the recurrent state (an LSTM's input projection
    # x.K + b) go to `body_input`, and their results the rest reads to a per-step buffer of
    # `pre_bytes` bytes; `body` is then the recurrent part. Empty unless the split was asked for
    # and found something to hoist.
    body_input: list[str] = field(default_factory=list)
    pre_bytes: int = 0
    arena_bytes: int = 0
    scratch_i16: int = 0  # int16 elements of the FC input-expansion buffer
    const_bytes: int = 0  # bytes of constant data (weights, tables, params)
    weight_bytes: int = 0  # bytes of the model's constant tensors as stored in the .tflite
    macs: int = 0
    kernels: list[str] = field(default_factory=list)  # TFLite ops used, in order of appearance
    may_fail: bool = False  # an op can report an error (GATHER index)
    refs: dict[int, str] = field(default_factory=dict)  # graph outputs -> C pointer expression
    # per op, in schedule order: (EL_PROFILE index, TFLite op, Keras layer, fused into another op)
    ops: list[tuple[int, str, str, bool]] = field(default_factory=list)

    @property
    def split(self) -> bool:
        """True when the step is emitted as <name>_step_input + <name>_step_recurrent."""
        return self.pre_bytes > 0


class CStruct:
    """Base of the frozen dataclasses that mirror a parameter struct of edgelstm_kernels.h: the
    fields in the C order, each an int32_t. Iterating yields the initializer's values."""

    C_TYPE: ClassVar[str]

    def __iter__(self) -> Iterator[int]:
        return (getattr(self, f.name) for f in fields(self))  # type: ignore[arg-type]

    @property
    def nbytes(self) -> int:
        return 4 * len(fields(self))  # type: ignore[arg-type]

    def definition(self, cname: str) -> str:
        """`static const <C_TYPE> <cname> = {...};`"""
        return f"static const {self.C_TYPE} {cname} = {{{', '.join(map(str, self))}}};"


def _c_int_list(values: np.ndarray, per_line: int = 16) -> str:
    vals = [int(v) for v in np.asarray(values).reshape(-1)]
    text = [str(v) if v != -(2**31) else "(-2147483647 - 1)" for v in vals]
    lines = [", ".join(text[i : i + per_line]) for i in range(0, len(text), per_line)]
    return ",\n    ".join(lines) if lines else "0"


def _c_float_list(values: np.ndarray, per_line: int = 6) -> str:
    vals = [c_float(float(v)) for v in np.asarray(values, dtype=np.float32).reshape(-1)]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return ",\n    ".join(lines) if lines else "0.0f"


def _act(op: Op) -> int:
    return int(getattr(op.options, "fusedActivationFunction", 0) or 0)


def _is_int8(t: Tensor) -> bool:
    return t.dtype == "int8"
