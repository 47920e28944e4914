"""Reductions over constant axes: MEAN (float, int8) and REDUCE_ANY (bool)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgelstm.codegen.engine import quant
from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.program import _is_int8

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering


def reduce_dims(lw: Lowering, op: Op) -> tuple[int, int, int]:
    """(outer, n, inner): the input as [outer, n, inner] with the reduced axes (constant, and
    adjacent once size-1 dimensions are dropped) in the middle."""
    x, axes_t = lw.t(op.inputs[0]), lw.t(op.inputs[1])
    if axes_t.data is None:
        raise lw.unsupported(op, "non-constant axes")
    rank = max(len(x.shape), 1)
    dims = [max(int(d), 1) for d in x.shape] or [1]
    axes = sorted({int(a) % rank for a in np.asarray(axes_t.data).reshape(-1)})
    picked = [a for a in axes if dims[a] > 1] or axes[:1]
    lo, hi = (picked[0], picked[-1] + 1) if picked else (0, 0)
    if any(dims[a] > 1 for a in range(lo, hi) if a not in axes):
        raise lw.unsupported(op, f"reduction over non-adjacent axes {axes} of {x.shape}")
    outer = int(np.prod(dims[:lo], dtype=np.int64))
    n = int(np.prod(dims[lo:hi], dtype=np.int64))
    inner = int(np.prod(dims[hi:], dtype=np.int64))
    if outer * inner != lw.t(op.outputs[0]).numel:
        raise lw.unsupported(op, "unexpected output size")
    return outer, n, inner


def _mean(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    outer, n, inner = reduce_dims(lw, op)
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if x.dtype == y.dtype == "float32":
        return [f"el_mean_f32({rx}, {outer}, {n}, {inner}, {ry});"]
    if not (_is_int8(x) and _is_int8(y)):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    m, s = quant.mean_params(x.scale, y.scale, n)
    if s < -31 or abs(x.zp * n) >= 2**24:
        raise lw.unsupported(op, "requantization out of range")
    return [f"el_mean_s8({rx}, {outer}, {n}, {inner}, {x.zp}, {m}, {s}, {y.zp}, {ry});"]


def _reduce_any(lw: Lowering, op: Op) -> list[str]:
    x = lw.t(op.inputs[0])
    if x.dtype != "bool":
        raise lw.unsupported(op, x.dtype)
    outer, n, inner = reduce_dims(lw, op)
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    return [f"el_reduce_any({rx}, {outer}, {n}, {inner}, {ry});"]
