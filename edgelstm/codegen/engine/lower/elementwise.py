"""Elementwise ops: ADD/SUB/MUL, MAXIMUM/MINIMUM, LOGISTIC/TANH tables, RELU*, SOFTMAX,
QUANTIZE/DEQUANTIZE."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from edgelstm.codegen.c import c_float
from edgelstm.codegen.engine import quant
from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.program import CStruct, _act, _is_int8

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering


def _broadcast(lw: Lowering, op: Op) -> tuple[int, int, int]:
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    n = y.numel
    sa = 1 if a.numel == n else 0 if a.numel == 1 else -1
    sb = 1 if b.numel == n else 0 if b.numel == 1 else -1
    if sa < 0 or sb < 0:
        raise lw.unsupported(op, f"broadcast {a.shape} with {b.shape}")
    return sa, sb, n


@dataclass(frozen=True)
class AddSubS8(CStruct):
    """el_addsub_s8_t: TFLite's ADD/SUB parameters and the output clamp."""

    C_TYPE: ClassVar[str] = "el_addsub_s8_t"
    in1_off: int
    in1_mult: int
    in1_shift: int
    in2_off: int
    in2_mult: int
    in2_shift: int
    out_off: int
    out_mult: int
    out_shift: int
    left_shift: int
    act_min: int
    act_max: int

    @classmethod
    def of(cls, prm: quant.AddSubParams, lo: int, hi: int) -> AddSubS8:
        return cls(**asdict(prm), act_min=lo, act_max=hi)


@dataclass(frozen=True)
class AddFast(CStruct):
    """el_add_fast_t: el_add_s8_fast's rewrite of the same ADD/SUB (see the kernel header)."""

    C_TYPE: ClassVar[str] = "el_add_fast_t"
    c1: int
    c2: int
    m2: int
    e2: int
    sign: int
    mo: int
    eo: int
    k: int


@dataclass(frozen=True)
class MulS8(CStruct):
    """el_mul_s8_t: offsets, the output multiplier and shift, the clamp."""

    C_TYPE: ClassVar[str] = "el_mul_s8_t"
    in1_off: int
    in2_off: int
    out_off: int
    out_mult: int
    out_shift: int
    act_min: int
    act_max: int


@dataclass(frozen=True)
class MulFast(CStruct):
    """el_mul_fast_t: c1 = 2 * in1_off, c2 = in2_off, eo = e_out - 1, k = 1 + 2 * out_off."""

    C_TYPE: ClassVar[str] = "el_mul_fast_t"
    c1: int
    c2: int
    mo: int
    eo: int
    k: int


def _binary(lw: Lowering, op: Op) -> list[str]:
    sa, sb, n = _broadcast(lw, op)
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    if int16.is_int16(a, b, y):
        return int16.binary_s16(lw, op)
    act = _act(op)
    ra, rb, ry = lw.ref(op.inputs[0], True), lw.ref(op.inputs[1], True), lw.ref(op.outputs[0])
    if y.dtype == "float32":
        code = {"ADD": 0, "SUB": 1, "MUL": 2}[op.name]
        return [f"el_binary_f32({code}, {ra}, {sa}, {rb}, {sb}, {ry}, {n}, {act});"]
    if not (_is_int8(a) and _is_int8(b) and _is_int8(y)):
        raise lw.unsupported(op, f"{a.dtype}/{b.dtype} -> {y.dtype}")
    if act not in (0, 1, 2, 3):
        raise lw.unsupported(op, f"fused activation {act}")
    lo, hi = quant.activation_range_s8(act, y.scale, y.zp)
    pn = f"{lw.name}_p{op.index}"
    if op.name == "MUL":
        m, s = quant.quantize_multiplier(a.scale * b.scale / y.scale)
        if (lo, hi) == (-128, 127) and s <= -1:
            lw.add_struct(pn, MulFast(-2 * a.zp, -b.zp, m, -s - 1, 1 + 2 * y.zp))
            return [f"el_mul_s8_fast(&{pn}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
        lw.add_struct(pn, MulS8(-a.zp, -b.zp, y.zp, m, s, lo, hi))
        return [f"el_mul_s8(&{pn}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
    prm = quant.addsub_params(a.scale, a.zp, b.scale, b.zp, y.scale, y.zp)
    sign = 1 if op.name == "ADD" else -1
    fast = _add_fast(prm, sign, lo, hi)
    ia, ib = op.inputs[0], op.inputs[1]
    if fast is None and sign > 0:  # ADD commutes: try the inputs the other way round
        fast = _add_fast(prm.swapped(), sign, lo, hi)
        if fast is not None:
            ra, sa, rb, sb = rb, sb, ra, sa
            ia, ib = ib, ia
    acts = lw.lut_after.get(op.index, [])
    fuse = fast is not None and bool(acts) and sa == 1 and sb == 1
    tables = [_lut_table(lw, a, centred=fuse) for a in acts]
    # an int8 FC whose only reader is this ADD (Lowering.fc_into_add) left its call to us
    deferred = [(i, lw.fc_deferred.pop(i)) for i in (ia, ib) if i in lw.fc_deferred]
    if fast is not None:
        lw.add_struct(pn, fast)
        if fuse:
            lw.prog.consts.append(
                f"static const int8_t *const {pn}_luts[{len(tables)}] = {{{', '.join(tables)}}};"
            )
            lw.prog.const_bytes += 4 * len(tables)
            seg = n // len(tables)
            if len(deferred) == 1:  # the FC, the ADD and the tables in one kernel
                fc_index, (fc_args, _) = deferred[0]
                fc_second = int(fc_index == ib)  # el_add's second operand is the FC's output
                other = ra if fc_second else rb
                return [
                    f"el_fc_s8_fast_add_lut({fc_args}, &{pn}, {other}, {fc_second}, {seg}, "
                    f"{len(tables)}, {pn}_luts, {ry});"
                ]
            return [call for _, (_, call) in deferred] + [
                f"el_add_s8_fast_lut(&{pn}, {ra}, {rb}, {ry}, {seg}, {len(tables)}, {pn}_luts);"
            ]
        lines = [call for _, (_, call) in deferred]
        lines.append(f"el_add_s8_fast(&{pn}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});")
    else:
        lw.add_struct(pn, AddSubS8.of(prm, lo, hi))
        lines = [call for _, (_, call) in deferred]
        lines.append(f"el_addsub_s8(&{pn}, {sign}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});")
    for a, tn in zip(acts, tables, strict=True):  # not fused: the tables as separate passes
        ref = lw.ref(a.inputs[0])
        lines.append(f"el_lut_s8({tn}, {ref}, {ref}, {lw.t(a.inputs[0]).numel});")
    return lines


def _lut_table(lw: Lowering, op: Op, centred: bool = False) -> str:
    """The activation's 256-entry table: indexed by (uint8_t)v, or by v + 128 when centred."""
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    table = quant.lut_s8(op.name, x.scale, x.zp, y.scale, y.zp)
    if centred:
        return lw.add_const(
            "int8_t", f"{lw.name}_clut{op.index}", np.roll(table, 128), f"{op.name} table, centred"
        )
    return lw.add_const("int8_t", f"{lw.name}_lut{op.index}", table, f"{op.name} table")


def _add_fast(prm: quant.AddSubParams, sign: int, lo: int, hi: int) -> AddFast | None:
    """el_add_fast_t when el_add_s8_fast reproduces el_addsub_s8 (see the header)."""
    half = (1 << 30, 0)
    if (lo, hi) != (-128, 127) or prm.left_shift != 20 or prm.out_shift > -1:
        return None
    if (prm.in1_mult, prm.in1_shift) != half:
        return None
    if (prm.in2_mult, prm.in2_shift) == half:
        # SMMULR(2X, 2^31 - 1) = X for |X| < 2^30; e2 = 0 then halves the even X exactly
        m2, e2 = (1 << 31) - 1, 0
    elif prm.in2_shift <= -1:
        m2, e2 = prm.in2_mult, -prm.in2_shift - 1
    else:
        return None
    c1 = prm.in1_off * (1 << 19)
    c2 = prm.in2_off * (1 << 21)
    eo, k = -prm.out_shift - 1, 1 + 2 * prm.out_off
    return AddFast(c1, c2, m2, e2, sign, prm.out_mult, eo, k)


def _activation(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if int16.is_int16(x, y):
        return int16.activation_s16(lw, op)
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if y.dtype == "float32":
        fn = "el_logistic_f32" if op.name == "LOGISTIC" else "el_tanh_f32"
        return [f"{fn}({rx}, {ry}, {y.numel});"]
    if not (_is_int8(x) and _is_int8(y)):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    if op.index in lw.lut_fused:
        return ["/* applied by the ADD that produced the input */"]
    return [f"el_lut_s8({_lut_table(lw, op)}, {rx}, {ry}, {y.numel});"]


def _maxmin(lw: Lowering, op: Op) -> list[str]:
    sa, sb, n = _broadcast(lw, op)
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    ra, rb, ry = lw.ref(op.inputs[0], True), lw.ref(op.inputs[1], True), lw.ref(op.outputs[0])
    is_max = 1 if op.name == "MAXIMUM" else 0
    if a.dtype == b.dtype == y.dtype == "float32":
        return [f"el_maxmin_f32({is_max}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
    if not (_is_int8(a) and _is_int8(b) and _is_int8(y)):
        raise lw.unsupported(op, f"{a.dtype}/{b.dtype} -> {y.dtype}")
    return [f"el_maxmin_s8({is_max}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]


def _relu(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if op.name == "RELU" and _is_int8(x) and _is_int8(y):
        # TFLite's ReluQuantized: requantize to the output's scale, clamp below at its zero
        # point; one 256-entry table holds it for every input byte
        m, s = quant.quantize_multiplier(float(x.scale) / float(y.scale))
        table = np.maximum(quant.requant_table(x.zp, y.zp, m, s), np.int8(max(-128, y.zp)))
        tn = lw.add_const("int8_t", f"{lw.name}_relu{op.index}", table, "RELU table")
        return [
            f"el_lut_s8({tn}, {lw.ref(op.inputs[0], True)}, {lw.ref(op.outputs[0])}, {y.numel});"
        ]
    if y.dtype != "float32":
        raise lw.unsupported(op, f"{y.dtype} (float32 RELU*, int8 RELU are lowered)")
    lo, hi = {"RELU": (0.0, 3.0e38), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}[op.name]
    return [
        f"el_relu_f32({lw.ref(op.inputs[0], True)}, {lw.ref(op.outputs[0])}, {y.numel}, "
        f"{c_float(lo)}, {c_float(hi)});"
    ]


def _softmax(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    beta = float(getattr(op.options, "beta", 1.0) or 1.0)
    n = x.shape[-1] if x.shape else 1
    outer = x.numel // max(n, 1)
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if y.dtype == "float32":
        return [f"el_softmax_f32({rx}, {ry}, {outer}, {n}, {c_float(beta)});"]
    if not (_is_int8(x) and _is_int8(y)):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    tn = lw.add_const(
        "float", f"{lw.name}_exp{op.index}", quant.softmax_table(x.scale, beta), "softmax exp table"
    )
    return [f"el_softmax_s8({tn}, {c_float(y.scale)}, {y.zp}, {rx}, {ry}, {outer}, {n});"]


def _quantize(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if int16.is_int16(x, y):
        return int16.quantize_s16(lw, op)
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if _is_int8(x) and _is_int8(y):
        if lw.views.get(op.outputs[0]) == (op.inputs[0], 0) and lw._identity_requant(op):
            return ["/* the identity: a view of its input */"]
        m, s = quant.quantize_multiplier(x.scale / y.scale)
        if y.numel >= 32:  # a 256-byte table beats per-element fixed-point math
            table = quant.requant_table(x.zp, y.zp, m, s)
            tn = lw.add_const("int8_t", f"{lw.name}_rq{op.index}", table, "requantize table")
            return [f"el_lut_s8({tn}, {rx}, {ry}, {y.numel});"]
        return [f"el_requant_s8({rx}, {x.zp}, {m}, {s}, {y.zp}, {ry}, {y.numel});"]
    if x.dtype == "float32" and _is_int8(y):
        return [f"el_quantize_f32_s8({rx}, {c_float(y.scale)}, {y.zp}, {ry}, {y.numel});"]
    raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")


from edgelstm.codegen.engine.lower import int16  # noqa: E402  (int16 imports this module)


def _dequantize(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if not (_is_int8(x) and y.dtype == "float32"):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    return [
        f"el_dequantize_s8_f32({lw.ref(op.inputs[0], True)}, {c_float(x.scale)}, {x.zp}, "
        f"{lw.ref(op.outputs[0])}, {y.numel});"
    ]
