"""Layout ops: SPLIT, CONCATENATION, RESHAPE-like views, STRIDED_SLICE, GATHER."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.program import _act, _is_int8

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering


def outer_inner(shape: list[int], axis: int) -> tuple[int, int]:
    """(elements before `axis`, elements after it): rows and row stride of a copy along it."""
    outer = int(np.prod([max(d, 1) for d in shape[:axis]], dtype=np.int64))
    inner = int(np.prod([max(d, 1) for d in shape[axis + 1 :]], dtype=np.int64))
    return outer, inner


def split_operands(op: Op) -> tuple[int, int]:
    """(data, axis) tensor indices of a SPLIT (axis first) or SPLIT_V (data first)."""
    return (op.inputs[1], op.inputs[0]) if op.name == "SPLIT" else (op.inputs[0], op.inputs[2])


def _copy_parts(lw: Lowering, whole: int, parts: list[int], axis: int, into: bool) -> list[str]:
    """One el_copy_rows per part of `whole` along `axis`: out of it (SPLIT) or, with `into`,
    into it (CONCATENATION). Each part is `outer` rows of its own width at its byte offset."""
    t = lw.t(whole)
    outer, inner = outer_inner(t.shape, axis)
    row = t.shape[axis] * inner * t.itemsize
    lines, off = [], 0
    for i in parts:
        part = lw.t(i)
        chunk = part.shape[axis] * inner * part.itemsize
        if into:
            src, dst = f"{lw.ref(i, True)}, {chunk}", f"(uint8_t *){lw.ref(whole)} + {off}, {row}"
        else:
            src, dst = (
                f"(const uint8_t *){lw.ref(whole, True)} + {off}, {row}",
                f"{lw.ref(i)}, {chunk}",
            )
        lines.append(f"el_copy_rows({src}, {dst}, {outer}, {chunk});")
        off += chunk
    return lines


def _split(lw: Lowering, op: Op) -> list[str]:
    if all(o in lw.views for o in op.outputs):
        return ["/* view: no copy */"]
    data_idx, axis_idx = split_operands(op)
    data = lw.t(data_idx)
    axis = int(np.asarray(lw.t(axis_idx).data).reshape(-1)[0]) % len(data.shape)
    return _copy_parts(lw, data_idx, op.outputs, axis, into=False)


def _concat(lw: Lowering, op: Op) -> list[str]:
    y = lw.t(op.outputs[0])
    axis = int(getattr(op.options, "axis", 0)) % len(y.shape)
    if _act(op):
        raise lw.unsupported(op, "fused activation")
    if _is_int8(y) and any(lw.t(i).scale != y.scale or lw.t(i).zp != y.zp for i in op.inputs):
        raise lw.unsupported(op, "inputs with different quantization")
    return _copy_parts(lw, op.outputs[0], op.inputs, axis, into=True)


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
