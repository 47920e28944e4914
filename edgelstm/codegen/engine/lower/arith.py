"""Math ops beyond the recurrent cells': ABS/EXP/LOG/RSQRT/ELU (float kernels; int8 as 256-entry
tables built here the way TFLite builds them at Prepare time) and DIV."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from edgelstm.codegen.engine import quant
from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.elementwise import _broadcast
from edgelstm.codegen.engine.lower.program import CStruct, _act, _is_int8

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering

UNARY_CODES = {
    "ABS": "EL_UN_ABS",
    "EXP": "EL_UN_EXP",
    "LOG": "EL_UN_LOG",
    "RSQRT": "EL_UN_RSQRT",
    "ELU": "EL_UN_ELU",
}


def _unary_table(op: str, x_scale: float, x_zp: int, y_scale: float, y_zp: int) -> np.ndarray:
    """The int8 op as a table: ABS and RSQRT follow TFLite Micro's integer formulas, the others
    LUTPopulate's float ones (quant.LUT_OPS)."""
    if op == "ABS":
        return quant.abs_table(x_scale, x_zp, y_scale, y_zp)
    if op == "RSQRT":
        return quant.rsqrt_table(x_scale, x_zp, y_scale, y_zp)
    return quant.lut_s8(op, x_scale, x_zp, y_scale, y_zp)


def _unary(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if x.dtype == y.dtype == "float32":
        return [f"el_unary_f32({UNARY_CODES[op.name]}, {rx}, {ry}, {y.numel});"]
    if not (_is_int8(x) and _is_int8(y)):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    table = _unary_table(op.name, x.scale, x.zp, y.scale, y.zp)
    tn = lw.add_const("int8_t", f"{lw.name}_lut{op.index}", table, f"{op.name} table")
    return [f"el_lut_s8({tn}, {rx}, {ry}, {y.numel});"]


@dataclass(frozen=True)
class DivS8(CStruct):
    """el_div_s8_t: the dividend's offset, the output's, the quotient's rescale, the clamp."""

    C_TYPE: ClassVar[str] = "el_div_s8_t"
    in1_off: int
    out_off: int
    out_mult: int
    out_shift: int
    act_min: int
    act_max: int


def _div(lw: Lowering, op: Op) -> list[str]:
    sa, sb, n = _broadcast(lw, op)
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    act = _act(op)
    ra, rb, ry = lw.ref(op.inputs[0], True), lw.ref(op.inputs[1], True), lw.ref(op.outputs[0])
    if a.dtype == b.dtype == y.dtype == "float32":
        return [f"el_binary_f32(3, {ra}, {sa}, {rb}, {sb}, {ry}, {n}, {act});"]
    if not (_is_int8(a) and _is_int8(b) and _is_int8(y)):
        raise lw.unsupported(op, f"{a.dtype}/{b.dtype} -> {y.dtype}")
    if act not in (0, 1, 2, 3):
        raise lw.unsupported(op, f"fused activation {act}")
    lo, hi = quant.activation_range_s8(act, y.scale, y.zp)
    # div.cc: in1 scale / (in2 scale * out scale), in float32
    real = np.float32(a.scale) / (np.float32(b.scale) * np.float32(y.scale))
    m, s = quant.quantize_multiplier(float(real))
    inv, rs = quant.div_tables(b.zp)
    p = lw.name
    pn = lw.add_struct(f"{p}_p{op.index}", DivS8(-a.zp, y.zp, m, s, lo, hi))
    iv = lw.add_const("int32_t", f"{p}_dinv{op.index}", inv, "DIV reciprocals per divisor byte")
    sh = lw.add_const("int8_t", f"{p}_drs{op.index}", rs, "DIV reciprocal shifts")
    return [f"el_div_s8(&{pn}, {iv}, {sh}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
