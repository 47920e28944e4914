"""The int16 ops of an int8 step model whose LSTM cells run in int16 (`edgelstm.tflite.cell16`):
int16x8 FULLY_CONNECTED, int16 ADD/SUB/MUL, int16 LOGISTIC/TANH and QUANTIZE int8 <-> int16, as
TFLite Micro's reference kernels compute them (the C engine's verification reference). The
elementwise and FC handlers hand an op here when one of its tensors is int16."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from edgelstm.codegen.engine import quant
from edgelstm.codegen.engine.graph import Op, Tensor
from edgelstm.codegen.engine.lower.elementwise import AddSubS8, MulS8, _broadcast
from edgelstm.codegen.engine.lower.program import _act

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering

# TFLite's int16 ADD/SUB headroom shift (the int8 one is quant.ADD_LEFT_SHIFT)
ADD_LEFT_SHIFT_S16 = 15


def is_int16(*ts: Tensor) -> bool:
    return any(t.dtype == "int16" for t in ts)


def _symmetric(lw: Lowering, op: Op, *ts: Tensor) -> None:
    for t in ts:
        if t.dtype == "int16" and t.zp != 0:
            raise lw.unsupported(op, f"int16 tensor '{t.name}' with zero point {t.zp}")


def fc_s16x8(lw: Lowering, op: Op) -> list[str]:
    """int16 input, int8 symmetric weights (per tensor or per row), int64 bias, int16 output."""
    x, w, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    b = lw.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if not (x.dtype == y.dtype == "int16" and w.dtype == "int8") or _act(op) != 0:
        raise lw.unsupported(op, f"{x.dtype} x {w.dtype} -> {y.dtype}")
    if any(int(z) for z in w.zero_points):
        raise lw.unsupported(op, "asymmetric int8 weights")
    _symmetric(lw, op, x, y)
    rows, cols = w.shape
    ws = np.asarray(w.scales, np.float64)
    mults, shifts = zip(
        *(quant.quantize_multiplier(float(x.scale) * float(s) / float(y.scale)) for s in ws),
        strict=True,
    )
    k, p = op.index, lw.name
    wn = lw.const_ref(op.inputs[1])
    if b is not None:
        if b.data is None:
            raise lw.unsupported(op, "non-constant bias")
        bn = lw.add_const(
            "int64_t", f"{p}_b64_{k}", np.asarray(b.data, np.int64), f"'{b.name}' as int64"
        )
    else:
        bn = "0"
    mn = lw.add_const("int32_t", f"{p}_m{k}", np.asarray(mults, np.int32), "multipliers")
    sn = lw.add_const("int32_t", f"{p}_s{k}", np.asarray(shifts, np.int32), "shifts")
    lw.prog.macs += rows * cols
    return [
        f"el_fc_s16x8({lw.ref(op.inputs[0], True)}, {wn}, {bn}, {mn}, {sn}, {len(ws)}, {rows}, "
        f"{cols}, {lw.ref(op.outputs[0])}, {int(lw.single_round)});"
    ]


def binary_s16(lw: Lowering, op: Op) -> list[str]:
    sa, sb, n = _broadcast(lw, op)
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    if not (a.dtype == b.dtype == y.dtype == "int16") or _act(op) != 0:
        raise lw.unsupported(op, f"{a.dtype}/{b.dtype} -> {y.dtype}")
    _symmetric(lw, op, a, b, y)
    ra, rb, ry = lw.ref(op.inputs[0], True), lw.ref(op.inputs[1], True), lw.ref(op.outputs[0])
    pn = f"{lw.name}_p{op.index}"
    if op.name == "MUL":
        m, s = quant.quantize_multiplier(a.scale * b.scale / y.scale)
        lw.add_struct(pn, MulS8(0, 0, 0, m, s, -32768, 32767))
        return [f"el_mul_s16(&{pn}, {ra}, {sa}, {rb}, {sb}, {ry}, {n}, {int(lw.single_round)});"]
    twice_max = 2.0 * max(a.scale, b.scale)
    m1, s1 = quant.quantize_multiplier(a.scale / twice_max)
    m2, s2 = quant.quantize_multiplier(b.scale / twice_max)
    mo, so = quant.quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT_S16) * y.scale))
    prm = quant.AddSubParams(0, m1, s1, 0, m2, s2, 0, mo, so, ADD_LEFT_SHIFT_S16)
    lw.add_struct(pn, AddSubS8.of(prm, -32768, 32767))
    sign = 1 if op.name == "ADD" else -1
    return [f"el_addsub_s16(&{pn}, {sign}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]


def act_params(in_scale: float) -> tuple[int, int]:
    """TFLite Micro's int16 LOGISTIC/TANH Prepare: (input multiplier, input left shift); a
    multiplier of 0 means the power-of-two form (the kernel uses 3 << left shift)."""
    log2 = math.log2(in_scale)
    rounded = round(log2)
    left = (15 - 3) + rounded
    if abs(log2 - rounded) < 1e-3 and left in (0, 1):
        return 0, left
    mult = in_scale * 4096.0 * 3.0
    left = 0
    while mult <= 32767.0 / 2.0 and left <= 30:
        left += 1
        mult *= 2.0
    return int(mult), left


def activation_s16(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if not (x.dtype == y.dtype == "int16") or abs(y.scale - 2.0**-15) > 1e-12:
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype} (int16 needs output scale 2^-15)")
    _symmetric(lw, op, x, y)
    m, s = act_params(float(x.scale))
    tanh = 1 if op.name == "TANH" else 0
    return [
        f"el_act_s16({tanh}, {m}, {s}, {lw.ref(op.inputs[0], True)}, {lw.ref(op.outputs[0])}, "
        f"{y.numel});"
    ]


def quantize_s16(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    m, s = quant.quantize_multiplier(x.scale / y.scale)
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if x.dtype == "int8" and y.dtype == "int16":
        return [f"el_requant_s8_s16({rx}, {x.zp}, {m}, {s}, {y.zp}, {ry}, {y.numel});"]
    if x.dtype == "int16" and y.dtype == "int8":
        return [f"el_requant_s16_s8({rx}, {x.zp}, {m}, {s}, {y.zp}, {ry}, {y.numel});"]
    raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
