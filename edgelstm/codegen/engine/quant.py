"""TFLite's integer-arithmetic parameters, computed the way LiteRT computes them at Prepare time.

Everything here is pure numpy/float64 so the generated C reproduces the int8 .tflite bit for bit:
`quantize_multiplier` (frexp + round half away from zero, as tflite::QuantizeMultiplier), the
ADD/SUB/MUL/DIV/MEAN/FULLY_CONNECTED parameter derivations, the 256-entry LOGISTIC/TANH/EXP/LOG/ELU/
SOFTMAX tables (float32 arithmetic, like LiteRT's LUTPopulate / PopulateSoftmaxLookupTable) and
the ABS/RSQRT tables from TFLite Micro's integer formulas (gemmlowp fixed point, exact).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

ADD_LEFT_SHIFT = 20  # int8 ADD/SUB headroom shift in TFLite


def round_half_away(x: float) -> float:
    """std::round: halves away from zero (Python's round() is banker's rounding)."""
    return math.copysign(math.floor(abs(x) + 0.5), x)


def quantize_multiplier(real: float) -> tuple[int, int]:
    """(multiplier Q31, shift) with real ~= multiplier * 2^(shift - 31), as tflite does."""
    if real == 0.0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(round_half_away(q * (1 << 31)))
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:  # tflite clamps huge multipliers the same way
        return (1 << 31) - 1, 30
    return q_fixed, shift


def f32(x: float) -> float:
    """Round a Python float to float32 (tensor scales are float32 in the flatbuffer)."""
    return float(np.float32(x))


def activation_range_s8(act: int, scale: float, zp: int) -> tuple[int, int]:
    """Clamp range of a fused activation on an int8 output (CalculateActivationRangeQuantized)."""
    lo, hi = -128, 127

    def q(v: float) -> int:
        return zp + int(round_half_away(v / scale))

    if act == 1:  # RELU
        lo = max(lo, q(0.0))
    elif act == 2:  # RELU_N1_TO_1
        lo, hi = max(lo, q(-1.0)), min(hi, q(1.0))
    elif act == 3:  # RELU6
        lo, hi = max(lo, q(0.0)), min(hi, q(6.0))
    return lo, hi


@dataclass(frozen=True)
class AddSubParams:
    """TFLite's int8 ADD/SUB parameters: per input an offset (-zero point), Q31 multiplier and
    shift onto the common scale, the output's, and the headroom shift."""

    in1_off: int
    in1_mult: int
    in1_shift: int
    in2_off: int
    in2_mult: int
    in2_shift: int
    out_off: int
    out_mult: int
    out_shift: int
    left_shift: int = ADD_LEFT_SHIFT

    def swapped(self) -> AddSubParams:
        """The same op with the inputs exchanged (ADD commutes)."""
        return replace(
            self,
            in1_off=self.in2_off,
            in1_mult=self.in2_mult,
            in1_shift=self.in2_shift,
            in2_off=self.in1_off,
            in2_mult=self.in1_mult,
            in2_shift=self.in1_shift,
        )


def addsub_params(s1: float, z1: int, s2: float, z2: int, so: float, zo: int) -> AddSubParams:
    """PrepareGeneralSubOp / add.cc int8 parameters (left shift 20, twice-max input scale)."""
    twice_max = 2.0 * max(s1, s2)
    m1, sh1 = quantize_multiplier(s1 / twice_max)
    m2, sh2 = quantize_multiplier(s2 / twice_max)
    mo, sho = quantize_multiplier(twice_max / ((1 << ADD_LEFT_SHIFT) * so))
    return AddSubParams(-z1, m1, sh1, -z2, m2, sh2, zo, mo, sho)


def _exp32(v: np.ndarray) -> np.ndarray:
    return np.exp(v.astype(np.float64)).astype(np.float32)


def _lut_fn(kind: str, v: np.ndarray, out_min: np.float32) -> np.ndarray:
    """The float32 function of a table op on `v`, as LiteRT / TFLite Micro write it (libm's expf
    and logf round correctly in practice: evaluate in float64, round once to float32)."""
    if kind == "LOGISTIC":
        return np.float32(1.0) / (np.float32(1.0) + np.exp(-v))
    if kind == "TANH":
        return np.tanh(v)
    if kind == "EXP":
        return _exp32(v)
    if kind == "ELU":  # elu.cc: value < 0 ? exp(value) - 1 : value
        return np.where(v < 0, _exp32(v) - np.float32(1.0), v)
    if kind == "LOG":  # LogLUTPrepare: value <= 0 gives the output's lowest value
        safe = np.where(v > 0, v, np.float32(1.0)).astype(np.float64)
        return np.where(v > 0, np.log(safe).astype(np.float32), out_min)
    raise ValueError(f"no table for {kind}")


LUT_OPS = ("LOGISTIC", "TANH", "EXP", "ELU", "LOG")


def lut_s8(kind: str, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """256-entry int8 table indexed by (uint8)x, as LiteRT's LUTPopulate<int8_t> in float32:
    dequantize, the op's float function (LUT_OPS), scale, round half away, clamp."""
    vals = np.arange(-128, 128, dtype=np.int32)
    out_min = np.float32(-128 - out_zp) * np.float32(out_scale)
    with np.errstate(over="ignore"):
        deq = np.float32(in_scale) * (vals - in_zp).astype(np.float32)
        tr = np.asarray(_lut_fn(kind, deq, out_min), dtype=np.float32)
        inv = np.float32(1.0) / np.float32(out_scale)
        scaled = (tr * inv).astype(np.float32).astype(np.float64)  # round exactly, in float64
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    rounded = np.clip(np.nan_to_num(rounded, nan=0.0), -(2.0**40), 2.0**40)
    q = np.clip(rounded.astype(np.int64) + out_zp, -128, 127).astype(np.int8)
    return _by_byte(vals, q)


def _by_byte(vals: np.ndarray, q: np.ndarray) -> np.ndarray:
    """A table of the int8 values `vals` -> `q`, indexed by the byte pattern of the input."""
    table = np.empty(256, dtype=np.int8)
    table[np.asarray(vals).astype(np.uint8)] = np.asarray(q, dtype=np.int8)
    return table


def softmax_table(in_scale: float, beta: float) -> np.ndarray:
    """PopulateSoftmaxLookupTable: table[255 - v] = expf(-in_scale * beta * v), float32."""
    scale = np.float32(-np.float32(in_scale) * np.float32(beta))
    v = np.arange(256, dtype=np.float32)
    table = np.empty(256, dtype=np.float32)
    table[255 - np.arange(256)] = np.exp(scale * v)
    return table


def mbqm(x: int, m: int, shift: int) -> int:
    """tflite::MultiplyByQuantizedMultiplier (gemmlowp rounding), exact in Python integers."""
    left, right = max(shift, 0), max(-shift, 0)
    a = x * (1 << left)
    ab = a * m
    v = ab + ((1 << 30) if ab >= 0 else (1 - (1 << 30)))
    s = abs(v) >> 31
    s = s if v >= 0 else -s  # truncation toward zero
    mask = (1 << right) - 1
    threshold = (mask >> 1) + (1 if s < 0 else 0)
    return (s >> right) + (1 if (s & mask) > threshold else 0)


def requant_table(in_zp: int, out_zp: int, m: int, shift: int) -> np.ndarray:
    """QUANTIZE int8 -> int8 (reference Requantize) as a 256-entry table indexed by (uint8)x."""
    vals = np.arange(-128, 128)
    q = [min(127, max(-128, mbqm(int(v) - in_zp, m, shift) + out_zp)) for v in vals]
    table = np.empty(256, dtype=np.int8)
    table[vals.astype(np.uint8)] = np.array(q, dtype=np.int8)
    return table


# ---- gemmlowp fixed point, exact in Python integers (int32 wrap-around where C++ wraps) --------

_I32_MIN, _I32_MAX = -(2**31), 2**31 - 1


def _wrap32(x: int) -> int:
    return (x + 2**31) % 2**32 - 2**31


def srdhm(a: int, b: int) -> int:
    """SaturatingRoundingDoublingHighMul."""
    if a == b == _I32_MIN:
        return _I32_MAX
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    q = abs(v) >> 31
    return q if v >= 0 else -q  # C division truncates toward zero


def rdbpot(x: int, e: int) -> int:
    """RoundingDivideByPOT: x / 2^e, halves away from zero."""
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def _sat_shl(x: int, e: int) -> int:
    """SaturatingRoundingMultiplyByPOT<e> for e > 0: x * 2^e saturated to int32."""
    limit = (1 << (31 - e)) - 1
    return _I32_MAX if x > limit else _I32_MIN if x < -limit else x << e


def _clz32(x: int) -> int:
    return 32 - int(x).bit_length()


def inv_sqrt_multiplier_exp(x: int, reverse_shift: int) -> tuple[int, int]:
    """GetInvSqrtQuantizedMultiplierExp: 1/sqrt(x) as (Q31 multiplier, shift), Newton-Raphson in
    gemmlowp's F3 fixed point."""
    if x <= 1:
        return _I32_MAX, 0
    shift = 11
    while x >= 1 << 29:
        x //= 4
        shift += 1
    pairs = (_clz32(x) - 1) // 2 - 1
    shift -= pairs
    x <<= 2 * pairs
    half_x = rdbpot(x >> 1, 1)  # F3 input, halved
    half_three = (1 << 28) + (1 << 27)
    r = 1 << 28  # F3 one
    for _ in range(5):
        r3 = _sat_shl(srdhm(srdhm(r, r), r), 6)  # F9 -> F3
        r = _sat_shl(_wrap32(srdhm(half_three, r) - srdhm(half_x, r3)), 3)  # F6 -> F3
    r = srdhm(r, 1518500250)  # * sqrt(2) / 2 in F0
    if shift < 0:
        r, shift = _wrap32(r << -shift), 0
    return r, shift * reverse_shift


def reciprocal(x: int) -> tuple[int, int]:
    """GetReciprocal(x, 31): (1 / x as a Q31 multiplier in [2^30, 2^31), its right shift)."""
    hp1 = _clz32(x)
    a = _wrap32(((x << hp1) & 0xFFFFFFFF) - (1 << 31))  # x normalized to [1, 2), minus one
    # one_over_one_plus_x_for_x_in_0_1: Newton-Raphson in F2 from 48/17 - 32/17 * d
    s = a + _I32_MAX
    half_d = int((s + (1 if s >= 0 else -1)) / 2)  # RoundingHalfSum(a, One), truncated
    r = _wrap32(1515870810 + srdhm(half_d, -1010580540))
    for _ in range(3):
        err = _wrap32((1 << 29) - srdhm(half_d, r))
        r = _wrap32(r + _sat_shl(srdhm(r, err), 2))
    return _sat_shl(r, 1), 31 - hp1


def abs_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 ABS as TFLite Micro's AbsEvalQuantized (|x - zp| requantized), as a 256 table."""
    vals = np.arange(-128, 128)
    same = np.float32(in_scale) == np.float32(out_scale)
    m, s = quantize_multiplier(float(np.float32(in_scale) / np.float32(out_scale)))
    q = [
        abs(int(v) - in_zp) + out_zp if same else mbqm(abs(int(v) - in_zp), m, s) + out_zp
        for v in vals
    ]
    return _by_byte(vals, np.clip(q, -128, 127))


RSQRT_SHIFT = 20  # RsqrtEvalQuantized's headroom shift


def rsqrt_table(in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """int8 RSQRT as TFLite Micro's RsqrtEvalQuantized, as a 256 table. An input at the zero
    point gives 127; one below it (an error in TFLite) gives 127 too."""
    vals = np.arange(-128, 128)
    real = 1.0 / float(np.sqrt(np.float32(in_scale)) * np.float32(out_scale))
    m, s = quantize_multiplier(real)
    q = []
    for v in vals:
        x = int(v) - in_zp
        if x <= 0:
            q.append(127)
            continue
        im, ish = inv_sqrt_multiplier_exp(x, -1)
        data = mbqm(1, im, ish + RSQRT_SHIFT)
        q.append(mbqm(data, m, s - RSQRT_SHIFT) + out_zp)
    return _by_byte(vals, np.clip(q, -128, 127))


def div_tables(in2_zp: int) -> tuple[np.ndarray, np.ndarray]:
    """Per byte of DIV's divisor: GetReciprocal of |x - zp| with the divisor's sign (int32; 0
    for a zero divisor) and its right shift (int8), for el_div_s8."""
    inv, rs = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for v in range(-128, 128):
        d = v - in2_zp
        if d != 0:
            r, sh = reciprocal(abs(d))
            inv[v & 255], rs[v & 255] = (r if d > 0 else -r), sh
    return inv, rs


def div_s8(x1: int, x2: int, o1: int, o2: int, oo: int, m: int, s: int) -> int:
    """One int8 DIV output before the clamp, as reference_ops::DivElementwise (a Python model of
    el_div_s8 for tests)."""
    a, b = o1 + x1, o2 + x2
    if b == 0:
        return oo
    if b < 0:
        a, b = -a, -b
    inv, rs = reciprocal(b)
    hr = 31 - (a if a >= 0 else ~a).bit_length()  # CountLeadingSignBits
    q = srdhm(_wrap32(a << hr), inv)
    e = -(s - rs - hr)
    return oo + (rdbpot(srdhm(q, m), e) if e <= 31 else 0)


def mean_params(in_scale: float, out_scale: float, n: int) -> tuple[int, int]:
    """int8 MEAN's (multiplier, shift) with the 1/n folded in, as QuantizedMeanOrSum."""
    m, s = quantize_multiplier(float(in_scale) / float(out_scale))
    k = min(n.bit_length() - 1, 32, 31 + s)
    return (m << k) // n, s - k
