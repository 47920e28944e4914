"""Layout ops: SPLIT, CONCATENATION, RESHAPE-like views, STRIDED_SLICE, GATHER."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.program import (
    _act,
    _is_int8,
)

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering


def _outer_inner(shape: list[int], axis: int) -> tuple[int, int]:
    outer = int(np.prod([max(d, 1) for d in shape[:axis]], dtype=np.int64))
    inner = int(np.prod([max(d, 1) for d in shape[axis + 1 :]], dtype=np.int64))
    return outer, inner


def _split(lw: Lowering, op: Op) -> list[str]:
    data_idx = op.inputs[1] if op.name == "SPLIT" else op.inputs[0]
    if all(o in lw.views for o in op.outputs):
        return ["/* view: no copy */"]
    data = lw.t(data_idx)
    axis_t = lw.t(op.inputs[0] if op.name == "SPLIT" else op.inputs[2])
    axis = int(np.asarray(axis_t.data).reshape(-1)[0]) % len(data.shape)
    outer, inner = _outer_inner(data.shape, axis)
    row = data.shape[axis] * inner * data.itemsize
    lines, off = [], 0
    for o in op.outputs:
        t = lw.t(o)
        chunk = t.shape[axis] * inner * t.itemsize
        lines.append(
            f"el_copy_rows((const uint8_t *){lw.ref(data_idx, True)} + {off}, {row}, "
            f"{lw.ref(o)}, {chunk}, {outer}, {chunk});"
        )
        off += chunk
    return lines


def _concat(lw: Lowering, op: Op) -> list[str]:
    y = lw.t(op.outputs[0])
    axis = int(getattr(op.options, "axis", 0)) % len(y.shape)
    if _act(op):
        raise lw.unsupported(op, "fused activation")
    outer, inner = _outer_inner(y.shape, axis)
    row = y.shape[axis] * inner * y.itemsize
    lines, off = [], 0
    for i in op.inputs:
        t = lw.t(i)
        if _is_int8(y) and (t.scale != y.scale or t.zp != y.zp):
            raise lw.unsupported(op, "inputs with different quantization")
        chunk = t.shape[axis] * inner * t.itemsize
        lines.append(
            f"el_copy_rows({lw.ref(i, True)}, {chunk}, (uint8_t *){lw.ref(op.outputs[0])}"
            f" + {off}, {row}, {outer}, {chunk});"
        )
        off += chunk
    return lines


def _alias(lw: Lowering, op: Op) -> list[str]:
    if op.outputs[0] in lw.views:
        return ["/* view: no copy */"]
    y = lw.t(op.outputs[0])
    return [f"memcpy({lw.ref(op.outputs[0])}, {lw.ref(op.inputs[0], True)}, {y.nbytes});"]


def _strided_slice(lw: Lowering, op: Op) -> list[str]:
    """Any constant slice whose elements form equal, evenly spaced contiguous runs."""
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    begin, end, strides = (lw.t(i).data for i in op.inputs[1:4])
    o = op.options
    if begin is None or end is None or strides is None:
        raise lw.unsupported(op, "non-constant bounds")
    if getattr(o, "ellipsisMask", 0) or getattr(o, "newAxisMask", 0):
        raise lw.unsupported(op, "ellipsis/new-axis mask")
    idx = np.arange(x.numel).reshape([max(d, 1) for d in x.shape])
    sl = []
    for d in range(len(x.shape)):
        b = None if (o.beginMask >> d) & 1 else int(begin[d])
        e = None if (o.endMask >> d) & 1 else int(end[d])
        s = int(strides[d])
        if (o.shrinkAxisMask >> d) & 1:
            sl.append(int(begin[d]))
        else:
            sl.append(slice(b, e, s))
    picked = np.asarray(idx[tuple(sl)]).reshape(-1)
    if picked.size != y.numel:
        raise lw.unsupported(op, "unexpected output size")
    run = picked.size
    for k in range(1, picked.size):
        if picked[k] != picked[k - 1] + 1:
            run = k
            break
    rows = picked.size // run
    starts = picked[::run]
    stride = int(starts[1] - starts[0]) if rows > 1 else run
    ok = picked.size % run == 0 and all(
        np.array_equal(picked[r * run : (r + 1) * run], starts[0] + r * stride + np.arange(run))
        for r in range(rows)
    )
    if not ok:
        raise lw.unsupported(op, "non-rectangular slice")
    sz = x.itemsize
    return [
        f"el_copy_rows((const uint8_t *){lw.ref(op.inputs[0], True)} + {int(starts[0]) * sz}, "
        f"{stride * sz}, {lw.ref(op.outputs[0])}, {run * sz}, {rows}, {run * sz});"
    ]


def _gather(lw: Lowering, op: Op) -> list[str]:
    table, ids = lw.t(op.inputs[0]), lw.t(op.inputs[1])
    if table.data is None or int(getattr(op.options, "axis", 0)) != 0 or ids.dtype != "int32":
        raise lw.unsupported(op, "only a constant table gathered by int32 ids along axis 0")
    if getattr(op.options, "batchDims", 0):
        raise lw.unsupported(op, "batch_dims")
    n_rows = table.shape[0]
    row = table.nbytes // n_rows
    lw.prog.may_fail = True
    return [
        f"if (el_gather({lw.ref(op.inputs[0], True)}, {n_rows}, {row}, "
        f"{lw.ref(op.inputs[1], True)}, {ids.numel}, {lw.ref(op.outputs[0])}) != EL_OK) "
        "{ return EL_ERR_INDEX; }"
    ]
