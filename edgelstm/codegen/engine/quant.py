"""TFLite's integer-arithmetic parameters, computed the way LiteRT computes them at Prepare time.

Everything here is pure numpy/float64 so the generated C reproduces the int8 .tflite bit for bit:
`quantize_multiplier` (frexp + round half away from zero, as tflite::QuantizeMultiplier), the
ADD/SUB/MUL/FULLY_CONNECTED parameter derivations and the 256-entry LOGISTIC/TANH/SOFTMAX tables
(float32 arithmetic, like LiteRT's LUTPopulate / PopulateSoftmaxLookupTable).
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


def lut_s8(kind: str, in_scale: float, in_zp: int, out_scale: float, out_zp: int) -> np.ndarray:
    """256-entry int8 table indexed by (uint8)x, as LiteRT's LUTPopulate<int8_t> in float32."""
    vals = np.arange(-128, 128, dtype=np.int32)
    with np.errstate(over="ignore"):
        deq = np.float32(in_scale) * (vals - in_zp).astype(np.float32)
        if kind == "LOGISTIC":
            tr = np.float32(1.0) / (np.float32(1.0) + np.exp(-deq))
        else:
            tr = np.tanh(deq)
    inv = np.float32(1.0) / np.float32(out_scale)
    scaled = (tr * inv).astype(np.float32).astype(np.float64)  # round exactly, in float64
    rounded = np.sign(scaled) * np.floor(np.abs(scaled) + 0.5)
    q = np.clip(rounded.astype(np.int64) + out_zp, -128, 127).astype(np.int8)
    table = np.empty(256, dtype=np.int8)
    table[vals.astype(np.uint8)] = q  # index by the byte pattern of x
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
