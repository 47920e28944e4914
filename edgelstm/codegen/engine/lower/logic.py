"""Comparisons into bool tensors, SELECT/SELECT_V2 on them, CAST from bool (a Masking layer's
mask, SELU's branch)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.elementwise import _broadcast

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering

COMPARE_CODES = {
    "EQUAL": "EL_CMP_EQUAL",
    "NOT_EQUAL": "EL_CMP_NOT_EQUAL",
    "LESS": "EL_CMP_LESS",
    "LESS_EQUAL": "EL_CMP_LESS_EQUAL",
    "GREATER": "EL_CMP_GREATER",
    "GREATER_EQUAL": "EL_CMP_GREATER_EQUAL",
}


def _compare(lw: Lowering, op: Op) -> list[str]:
    sa, sb, n = _broadcast(lw, op)
    a, b = lw.t(op.inputs[0]), lw.t(op.inputs[1])
    if not a.dtype == b.dtype == "float32":  # int8 compares rescale both sides first: not done
        raise lw.unsupported(op, f"{a.dtype} inputs (float32 comparisons are lowered)")
    ra, rb, ry = lw.ref(op.inputs[0], True), lw.ref(op.inputs[1], True), lw.ref(op.outputs[0])
    return [f"el_compare_f32({COMPARE_CODES[op.name]}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]


def _step(lw: Lowering, op: Op, idx: int, n: int) -> int:
    numel = lw.t(idx).numel
    if numel not in (n, 1):
        raise lw.unsupported(op, f"broadcast of {lw.t(idx).shape} to {lw.t(op.outputs[0]).shape}")
    return 1 if numel == n else 0


def _select(lw: Lowering, op: Op) -> list[str]:
    c, a, b, y = (lw.t(i) for i in (*op.inputs[:3], op.outputs[0]))
    if c.dtype != "bool" or not a.dtype == b.dtype == y.dtype:
        raise lw.unsupported(op, f"{c.dtype} ? {a.dtype} : {b.dtype} -> {y.dtype}")
    if y.dtype == "int8" and {(a.scale, a.zp), (b.scale, b.zp)} != {(y.scale, y.zp)}:
        raise lw.unsupported(op, "int8 inputs quantized unlike the output")
    n = y.numel
    sc, sa, sb = (_step(lw, op, i, n) for i in op.inputs[:3])
    rc, ra, rb = (lw.ref(i, True) for i in op.inputs[:3])
    return [
        f"el_select({rc}, {sc}, {ra}, {sa}, {rb}, {sb}, {lw.ref(op.outputs[0])}, {n}, "
        f"{y.itemsize});"
    ]


def _cast(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if (x.dtype, y.dtype) != ("bool", "float32"):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype} (bool -> float32 is lowered)")
    return [f"el_cast_bool_f32({lw.ref(op.inputs[0], True)}, {lw.ref(op.outputs[0])}, {y.numel});"]
