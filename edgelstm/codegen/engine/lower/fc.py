"""FULLY_CONNECTED: float and int8 kernels, the int8 weight streams (DSP row pairs, Helium tiles)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgelstm.codegen.engine import quant
from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.program import _act, _is_int8

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering


# int8 FCs with at most this many rows (a head) run el_fc_s8_small: a 4-row block would pad them
# and expand the input for a single dot product
SMALL_ROWS = 2


@dataclass(frozen=True)
class Requant:
    """Per-row requantization of an int8 FC, padded to whole 4-row blocks: Q31 multipliers and
    shifts (TFLite's exponents e, or e - 1 where the fast paths take that)."""

    mult: np.ndarray
    shift: np.ndarray
    e_minus_1: bool  # EL_FC_FAST_RQ: shifts hold e - 1 (every e <= -1, no clamp, |acc| < 2^30)


@dataclass(frozen=True)
class FCParams:
    """An int8 FULLY_CONNECTED after the offline work, as the kernels take it."""

    rows: int
    cols: int
    weights: np.ndarray  # int8 [rows_pad, cols_pad], zero padded (4-row blocks, 8 columns)
    bias: np.ndarray  # int64 [rows_pad], the input zero point folded in
    requant: Requant
    out_zp: int
    act_min: int
    act_max: int
    paired_dsp: bool  # EL_FC_PAIRED_DSP: SMLAD row pairs are exact (|odd row's acc| < 2^23)

    @property
    def rows_pad(self) -> int:
        return int(self.weights.shape[0])

    @property
    def cols_pad(self) -> int:
        return int(self.weights.shape[1])


def _fc(lw: Lowering, op: Op) -> list[str]:
    x, w = lw.t(op.inputs[0]), lw.t(op.inputs[1])
    b = lw.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    y = lw.t(op.outputs[0])
    if w.data is None or len(w.shape) != 2:
        raise lw.unsupported(op, "non-constant or non-2-D weights")
    rows, cols = w.shape
    if x.numel != cols:
        raise lw.unsupported(op, f"batched input {x.shape}")
    act = _act(op)
    lw.prog.macs += rows * cols
    k = op.index
    p = lw.name
    if x.dtype == "float32" and w.dtype == "float32" and y.dtype == "float32":
        if act not in (0, 1, 2, 3, 4):
            raise lw.unsupported(op, f"fused activation {act}")
        wn = lw.add_const("float", f"{p}_w{k}", w.data, f"'{w.name}' {w.shape}")
        bn = lw.add_const("float", f"{p}_b{k}", b.data, f"'{b.name}'") if b is not None else "0"
        return [
            f"el_fc_f32({lw.ref(op.inputs[0], True)}, {cols}, {wn}, {bn}, {rows}, {act}, "
            f"{lw.ref(op.outputs[0])});"
        ]
    if x.dtype == "int16" or y.dtype == "int16":  # an int8 step model's int16 LSTM cell
        from edgelstm.codegen.engine.lower.int16 import fc_s16x8

        return fc_s16x8(lw, op)
    if not (_is_int8(x) and _is_int8(w) and _is_int8(y)):
        raise lw.unsupported(
            op, f"{x.dtype} input with {w.dtype} weights (dynamic-range quantization): export "
            "the int8 or float artifact"
        )  # fmt: skip
    return _fc_s8(lw, op, _fc_s8_params(lw, op, act))


def _fc_s8_params(lw: Lowering, op: Op, act: int) -> FCParams:
    """Fold, pad and requantize an int8 FC offline; decide which fast paths are exact."""
    x, w, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    b = lw.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    rows, cols = w.shape
    if act not in (0, 1, 2, 3):
        raise lw.unsupported(op, f"fused activation {act}")
    if any(z != 0 for z in w.zero_points):
        raise lw.unsupported(op, "asymmetric int8 weights")
    assert w.data is not None
    wq = w.data.astype(np.int64)
    bias = (b.data.astype(np.int64) if b is not None else np.zeros(rows, np.int64)).reshape(-1)
    folded = bias + (-x.zp) * wq.sum(axis=1)  # input zero point folded into the bias offline
    if np.abs(folded).max(initial=0) >= 2**31:
        raise lw.unsupported(op, "bias overflows int32 after folding the zero point")
    scales = w.scales if len(w.scales) == rows else [w.scale] * rows
    mults, shifts = zip(
        *(quant.quantize_multiplier(x.scale * s / y.scale) for s in scales), strict=True
    )
    # 4 rows x 8 columns (Helium: 16-column tiles, the last one may be 8 wide)
    rp, cp = -(-rows // 4) * 4, -(-cols // 8) * 8
    wpad = np.zeros((rp, cp), np.int8)
    wpad[:rows, :cols] = w.data
    bpad = np.zeros(rp, np.int64)
    bpad[:rows] = folded
    pad = [0] * (rp - rows)  # the kernel reads whole 4-row blocks
    lo, hi = quant.activation_range_s8(act, y.scale, y.zp)
    # worst-case |accumulator| per row: the int8 input is at most 128 in magnitude
    bound = 128 * np.abs(wpad.astype(np.int64)).sum(axis=1) + np.abs(bpad)
    paired = bool(bound[1::2].max(initial=0) < 2**23)
    fast_rq = bool(bound.max(initial=0) < 2**30 and max(shifts) <= -1 and (lo, hi) == (-128, 127))
    if fast_rq:
        shifts = tuple(-s - 1 for s in shifts)  # the kernel's fast path wants e - 1
    requant = Requant(np.array([*mults, *pad]), np.array([*shifts, *pad]), fast_rq)
    return FCParams(rows, cols, wpad, bpad, requant, y.zp, lo, hi, paired)


def _fc_s8(lw: Lowering, op: Op, prm: FCParams) -> list[str]:
    """The int8 kernel call: Helium row tiles, the one-stream fast path, or the generic kernel."""
    w = lw.t(op.inputs[1])
    k, p = op.index, lw.name
    rows, cols, cp, rq = prm.rows, prm.cols, prm.cols_pad, prm.requant
    if not (rq.e_minus_1 and lw.isa != "mve" and rows <= SMALL_ROWS):  # (el_fc_s8_small: no xs)
        lw.prog.scratch_i16 = max(lw.prog.scratch_i16, cp)
    if rq.e_minus_1 and lw.isa == "mve":  # no paired-row bound: plain signed weights
        lw.prog.scratch_i16 = max(lw.prog.scratch_i16, cp + 8)  # + the 16-byte "x x"
        stream = fc_rows_stream(prm.weights, prm.bias, rq.mult, rq.shift)
        sn = lw.add_const("int8_t", f"{p}_w{k}", stream, f"'{w.name}' {w.shape} fc row tiles")
        return [
            f"el_fc_s8_rows({lw.ref(op.inputs[0], True)}, {cols}, {cp}, {sn}, {rows}, "
            f"{prm.out_zp}, {p}_xs, {lw.ref(op.outputs[0])}, {int(lw.single_round)});"
        ]
    if rq.e_minus_1 and rows <= SMALL_ROWS:  # a head: row-major rows, no 4-row padding
        c4 = -(-cols // 4) * 4
        wn = lw.add_const("int8_t", f"{p}_w{k}", prm.weights[:rows, :c4], f"'{w.name}' {w.shape}")
        bn = lw.add_const("int32_t", f"{p}_b{k}", prm.bias[:rows], "bias, input zero point folded")
        mn = lw.add_const("int32_t", f"{p}_m{k}", rq.mult[:rows], "requantize multipliers")
        en = lw.add_const("int8_t", f"{p}_s{k}", rq.shift[:rows], "requantize e - 1")
        return [
            f"el_fc_s8_small({lw.ref(op.inputs[0], True)}, {cols}, {wn}, {bn}, {mn}, {en}, "
            f"{rows}, {prm.out_zp}, {lw.ref(op.outputs[0])}, {int(lw.single_round)});"
        ]
    if rq.e_minus_1 and prm.paired_dsp:  # one stream: per block bias, weights, multipliers, e - 1
        stream = fc_stream(prm.weights, prm.bias, rq.mult, rq.shift)
        sn = lw.add_const("int8_t", f"{p}_w{k}", stream, f"'{w.name}' {w.shape} fc stream")
        fn = "el_fc_s8_fast_sr" if lw.single_round else "el_fc_s8_fast"
        args = f"{lw.ref(op.inputs[0], True)}, {cols}, {cp}, {sn}, {rows}, {prm.out_zp}, {p}_xs"
        call = f"{fn}({args}, {lw.ref(op.outputs[0])});"
        if op.index in lw.fc_into_add and not lw.single_round:
            # the ADD that reads it emits el_fc_s8_fast_add_lut (or this call, if it cannot)
            lw.fc_deferred[op.outputs[0]] = (args, call)
            return ["/* computed by the ADD that reads it (el_fc_s8_fast_add_lut) */"]
        return [call]
    flags = [
        name
        for name, on in (
            ("EL_FC_PAIRED_DSP", prm.paired_dsp),
            ("EL_FC_FAST_RQ", rq.e_minus_1),
            ("EL_FC_SINGLE_ROUND", lw.single_round),
        )
        if on
    ]
    wn = lw.add_const(
        "int8_t", f"{p}_w{k}", _paired_layout(prm.weights), f"'{w.name}' {w.shape} paired"
    )
    bn = lw.add_const("int32_t", f"{p}_b{k}", prm.bias, "bias with the input zero point folded in")
    mn = lw.add_const("int32_t", f"{p}_m{k}", rq.mult, "requantize multipliers")
    what = "requantize e - 1" if rq.e_minus_1 else "requantize shifts"
    sn = lw.add_const("int8_t", f"{p}_s{k}", rq.shift, what)
    return [
        f"el_fc_s8({lw.ref(op.inputs[0], True)}, {cols}, {cp}, {wn}, {bn}, {rows}, {mn}, "
        f"{sn}, {prm.out_zp}, {prm.act_min}, {prm.act_max}, {' | '.join(flags) or '0'}, "
        f"{p}_xs, {lw.ref(op.outputs[0])});"
    ]


def fc_stream(wpad: np.ndarray, bias: np.ndarray, mult: np.ndarray, e1: np.ndarray) -> np.ndarray:
    """el_fc_s8_fast's byte stream: per 4-row block the bias (int32 LE), the paired weights
    (columns c0 c2 c1 c3 per group of 4), the multipliers (int32 LE) and e - 1 (int8). All
    arguments padded to whole 4-row blocks."""
    rp, cp = wpad.shape
    # columns in the order the kernel expands x: c0 c2 c1 c3 per group of 4
    order = (np.arange(cp).reshape(-1, 4)[:, [0, 2, 1, 3]]).reshape(-1)
    paired = _paired_layout(wpad[:, order])
    parts = []
    for blk in range(rp // 4):
        rows = slice(4 * blk, 4 * blk + 4)
        parts += [
            np.asarray(bias[rows], np.int64).astype("<i4").view(np.int8),
            paired[blk * 4 * cp : (blk + 1) * 4 * cp],
            np.asarray(mult[rows], np.int64).astype("<i4").view(np.int8),
            np.asarray(e1[rows], np.int64).astype(np.int8),
        ]
    return np.concatenate(parts)


def fc_rows_stream(
    wpad: np.ndarray, bias: np.ndarray, mult: np.ndarray, e1: np.ndarray
) -> np.ndarray:
    """el_fc_s8_rows' byte stream (Helium): per 4-row block the bias (int32 LE), per 16 columns
    the 4 rows' 16 int8 weights (a last tile of 8 columns when C % 16 == 8), the multipliers
    (int32 LE) and -e (int8; e = e1 + 1, the right shift). wpad [R, C] with R % 4 == 0 and C % 8 == 0."""
    rp, cp = wpad.shape
    w8 = wpad.astype(np.int8)
    parts = []
    for blk in range(rp // 4):
        rows = slice(4 * blk, 4 * blk + 4)
        # 16-column tiles, the last one 8 wide when cp % 16 == 8: row-major within a tile
        tiles = [w8[rows, c : c + 16].reshape(-1) for c in range(0, cp, 16)]
        parts += [
            np.asarray(bias[rows], np.int64).astype("<i4").view(np.int8),
            *tiles,
            np.asarray(mult[rows], np.int64).astype("<i4").view(np.int8),
            -np.asarray(e1[rows], np.int64).astype(np.int8) - 1,  # -e: one VRSHL
        ]
    return np.concatenate(parts)


def _paired_layout(wpad: np.ndarray) -> np.ndarray:
    """int8 [R, C] (R % 4 == 0, C % 4 == 0) -> the kernel's paired byte order: per 4-row block and
    4-column group, row pair 0 then 1, columns 0-1 then 2-3, per column (w_a + 128, w_b)."""
    rp, cp = wpad.shape
    w4 = wpad.astype(np.int16).reshape(rp // 4, 2, 2, cp // 4, 2, 2)  # blk, pair, row, g, j, c
    ua = (w4[:, :, 0] + 128).astype(np.uint8).view(np.int8)  # blk, pair, g, j, c
    wb = w4[:, :, 1].astype(np.int8)
    out = np.stack([ua, wb], axis=-1)  # blk, pair, g, j, c, byte
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3, 4, 5)).reshape(-1)
