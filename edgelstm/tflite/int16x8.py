"""int16x8 sequence models with the fused LSTM, made from the int8 model by a flatbuffer pass.

TF's converter refuses 16x8 quantization of UNIDIRECTIONAL_SEQUENCE_LSTM ("Quantization to 16x8-bit
not yet supported for op"). The int8 model it does produce already has everything a 16x8 model
needs except the activation types: weights are symmetric int8 (per tensor in the LSTM), the cell
state is int16 with a power-of-two scale, and every activation carries a calibrated range. This pass
(official schema object API, as `edgelstm.tflite.passes`) rewrites it into the form TFLite Micro's
integer LSTM kernel evaluates as `EvalLstm<int16_t, int8_t, int16_t, int64_t>`
(tflite-micro kernels/unidirectional_sequence_lstm.cc, lstm_eval_common.cc):

* activations int8 -> int16, symmetric (zero point 0), scale = max|calibrated range| / 32767;
  the LSTM's hidden-state variable and its output tensor share one scale (the kernel memcpy's h
  into the output), and its input/hidden state must have the activation type;
* LSTM gate biases and FULLY_CONNECTED biases int32 -> int64 at scale input_scale * weight_scale;
* the cell state stays int16 with a power-of-two scale, re-derived from the float cell's range on
  the calibration data (the kernel takes log2 of it for its tanh);
* LOGISTIC / TANH / SOFTMAX outputs get the fixed 1/32768 scale their int16 kernels require;
* gate pre-activations need nothing: the TFLM kernel uses a fixed 2^-12 scale for them (and
  2^-15 for gate outputs) and reads no intermediate tensor; the int8 model's one quantized
  intermediate (effective hidden scale) is retyped with the hidden state for consistency.

Weights are not re-quantized: the converter's int8 weights are the same symmetric int8 a 16x8
model uses. Anything outside the small op set below is refused with the op's name.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgelstm.errors import UnsupportedLayerError
from edgelstm.tflite.passes import load_model, opcode_index, pack_model
from edgelstm.tflite_info import schema

PATH_NOTE = (
    "int16x8 via flatbuffer requantization of the int8 model: the converter refuses 16x8 for "
    "UNIDIRECTIONAL_SEQUENCE_LSTM"
)

# Ops whose int8 form this pass knows how to turn into the 16x8 form. Pass-through ops keep the
# input's quantization on their output, which the deterministic int8 -> int16 mapping preserves.
_PASS_THROUGH = ("RESHAPE", "STRIDED_SLICE", "SQUEEZE", "EXPAND_DIMS", "PAD")
_FIXED_OUTPUT = ("LOGISTIC", "TANH", "SOFTMAX")  # int16 kernels: output scale 1/32768, zp 0
_SUPPORTED = (
    "UNIDIRECTIONAL_SEQUENCE_LSTM",
    "FULLY_CONNECTED",
    "CONV_2D",  # Conv1D front-ends
    "GATHER",  # Embedding front-ends: stays int8, a QUANTIZE to int16 follows
    "QUANTIZE",
    "DEQUANTIZE",
    *_PASS_THROUGH,
    *_FIXED_OUTPUT,
)
_INT16_MAX = 32767
# The cell scale is a power of two >= (headroom * calibrated max|c|) / 32767, the hidden-state
# scale (headroom * max|h|, at most 1) / 32767: the headroom keeps sequences slightly beyond the
# calibration data from saturating the state.
CELL_HEADROOM = 1.25


@dataclass
class LstmRange:
    """Calibrated float ranges of one LSTM layer's hidden and cell state (max absolute value)."""

    h_absmax: float
    c_absmax: float


def _op_name(model: Any, op: Any) -> str:
    fb = schema()
    code = model.operatorCodes[op.opcodeIndex]
    num = max(code.builtinCode, code.deprecatedBuiltinCode)
    names = {v: k for k, v in vars(fb.BuiltinOperator).items() if not k.startswith("_")}
    return names.get(num, f"op{num}")


def _quant(t: Any) -> tuple[np.ndarray, np.ndarray]:
    q = t.quantization
    if q is None or q.scale is None:
        return np.zeros(0), np.zeros(0, np.int64)
    return np.asarray(q.scale, np.float64), np.asarray(q.zeroPoint, np.int64)


def _set_quant(t: Any, scale: float | np.ndarray, zero_point: int = 0) -> None:
    fb = schema()
    q = t.quantization if t.quantization is not None else fb.QuantizationParametersT()
    scales = np.atleast_1d(np.asarray(scale, np.float32))
    q.scale = [float(s) for s in scales]
    q.zeroPoint = [int(zero_point)] * len(scales)
    q.min = None
    q.max = None
    t.quantization = q


def _int16_scale_from_int8(t: Any) -> float:
    """Symmetric int16 scale covering the int8 tensor's calibrated real range."""
    s, zp = _quant(t)
    lo, hi = (-128 - zp[0]) * s[0], (127 - zp[0]) * s[0]
    return max(abs(lo), abs(hi), 1e-8) / _INT16_MAX


def _pot_scale(absmax: float) -> float:
    """Smallest power of two s with absmax <= 32767 * s."""
    absmax = max(absmax, 1e-6)
    return 2.0 ** math.ceil(math.log2(absmax / _INT16_MAX))


def _buffer_data(model: Any, t: Any) -> np.ndarray | None:
    data = model.buffers[t.buffer].data
    if data is None or len(data) == 0:
        return None
    return np.asarray(data, np.uint8)


def _set_buffer(model: Any, t: Any, values: np.ndarray) -> None:
    """Store `values` as `t`'s data: in place when `t` alone uses its buffer, else a new one.

    The converter deduplicates equal constants (e.g. zero biases of two gates), and those may
    need different int64 values now.
    """
    fb = schema()
    raw = np.frombuffer(np.ascontiguousarray(values).tobytes(), np.uint8).copy()
    users = sum(x.buffer == t.buffer for sg in model.subgraphs for x in sg.tensors)
    if users == 1 and t.buffer != 0:
        model.buffers[t.buffer].data = raw
        return
    buf = fb.BufferT()
    buf.data = raw
    model.buffers.append(buf)
    t.buffer = len(model.buffers) - 1


def requantize_int8_to_int16x8(
    data: bytes, lstm_ranges: list[LstmRange] | None = None
) -> tuple[bytes, list[str]]:
    """The int16x8 form of an int8 .tflite with fused LSTMs. Returns (model, notes).

    `lstm_ranges` (one per fused LSTM, graph order) sets the hidden and cell state scales from
    the float model's calibrated ranges; without it the int8 model's ranges are kept.
    """
    fb = schema()
    model = load_model(data)
    if len(model.subgraphs) != 1:
        raise UnsupportedLayerError(
            "int16x8 requantization handles single-subgraph models only "
            f"(this one has {len(model.subgraphs)})"
        )
    sg = model.subgraphs[0]
    ops = [(_op_name(model, op), op) for op in sg.operators]
    bad = sorted({name for name, _ in ops if name not in _SUPPORTED})
    if bad:
        raise UnsupportedLayerError(
            f"int16x8 sequence model: op(s) {', '.join(bad)} cannot be requantized to 16x8 "
            "(int8 takes them, and so does the int16x8 step model of a model that streams)"
        )
    if any(name == "GATHER" for name, _ in ops):
        _requantize_after_gather(model, sg)
        ops = [(_op_name(model, op), op) for op in sg.operators]
    lstms = [op for name, op in ops if name == "UNIDIRECTIONAL_SEQUENCE_LSTM"]
    if lstm_ranges is not None and len(lstm_ranges) != len(lstms):
        lstm_ranges = None  # layers and fused ops do not line up: keep the converter's ranges

    # 1. New int16 scales for every int8 activation (non-constant) tensor, except GATHER
    #    outputs, which stay int8 (see _requantize_after_gather).
    keep_int8 = {op.outputs[0] for name, op in ops if name == "GATHER"}
    new_scale: dict[int, float] = {}
    for i, t in enumerate(sg.tensors):
        if (
            t.type == fb.TensorType.INT8
            and i not in keep_int8
            and _buffer_data(model, t) is None
            and _quant(t)[0].size
        ):
            new_scale[i] = _int16_scale_from_int8(t)
    notes: list[str] = []
    for k, op in enumerate(lstms):
        h_idx, c_idx, out_idx = op.inputs[18], op.inputs[19], op.outputs[0]
        h_scale = new_scale.get(h_idx, new_scale.get(out_idx))
        c_t = sg.tensors[c_idx]
        c_scale = float(_quant(c_t)[0][0])
        if lstm_ranges is not None:
            r = lstm_ranges[k]
            # h = o * tanh(c) stays inside (-1, 1); the calibrated max (with headroom) is tighter.
            h_scale = min(max(CELL_HEADROOM * r.h_absmax, 1e-3), 1.0) / _INT16_MAX
            new_c = _pot_scale(CELL_HEADROOM * r.c_absmax)
            if new_c != c_scale:
                notes.append(
                    f"{sg.tensors[out_idx].name.decode()}: cell state scale 2^{int(math.log2(new_c))}"
                    f" from the float cell's calibrated max |c| = {r.c_absmax:.3g} "
                    f"(int8 model: 2^{int(math.log2(c_scale))})"
                )
                c_scale = new_c
        if h_scale is None:
            raise UnsupportedLayerError("fused LSTM without a quantized hidden state")
        new_scale[h_idx] = new_scale[out_idx] = h_scale
        _set_quant(c_t, c_scale)
        for im in op.intermediates if op.intermediates is not None else []:
            if sg.tensors[im].type == fb.TensorType.INT8:
                new_scale[im] = h_scale
    # Pass-through ops: the output keeps the input's scale (propagated in graph order, after
    # the LSTM overrides above).
    for name, op in ops:
        if name in _PASS_THROUGH and op.inputs[0] in new_scale and op.outputs[0] in new_scale:
            new_scale[op.outputs[0]] = new_scale[op.inputs[0]]
        if name in _FIXED_OUTPUT:
            new_scale[op.outputs[0]] = 1.0 / 32768.0

    # 2. Biases to int64 at input_scale * weight_scale (per channel where the weights are).
    for name, op in ops:
        if name in ("FULLY_CONNECTED", "CONV_2D"):
            bias_slots = [(op.inputs[0], op.inputs[1], op.inputs[2])] if len(op.inputs) > 2 else []
        elif name == "UNIDIRECTIONAL_SEQUENCE_LSTM":
            # Gate biases 12..15 pair with input-to-gate weights 1..4 (kernel: input FC bias).
            bias_slots = [
                (op.inputs[0], op.inputs[w], op.inputs[b])
                for w, b in zip((1, 2, 3, 4), (12, 13, 14, 15), strict=True)
            ]
        else:
            continue
        for x_idx, w_idx, b_idx in bias_slots:
            if b_idx < 0:
                continue
            b_t = sg.tensors[b_idx]
            raw = _buffer_data(model, b_t)
            if b_t.type != fb.TensorType.INT32 or raw is None:
                continue
            old_s, _ = _quant(b_t)
            w_s, _ = _quant(sg.tensors[w_idx])
            real = raw.view(np.int32).astype(np.float64) * old_s
            # The input is int8 now (retyped below) or already int16 (after a GATHER).
            x_s = new_scale.get(x_idx, float(_quant(sg.tensors[x_idx])[0][0]))
            s = x_s * w_s
            b_t.type = fb.TensorType.INT64
            _set_quant(b_t, s)
            b_t.quantization.quantizedDimension = 0
            _set_buffer(model, b_t, np.round(real / s).astype(np.int64))

    # 3. Retype the activations.
    for i, s in new_scale.items():
        t = sg.tensors[i]
        t.type = fb.TensorType.INT16
        _set_quant(t, s, 0)

    # 4. A bias-less FULLY_CONNECTED takes its accumulator width from this option (64 in 16x8).
    for name, op in ops:
        opts = op.builtinOptions
        if name == "FULLY_CONNECTED" and hasattr(opts, "quantizedBiasType"):
            opts.quantizedBiasType = fb.TensorType.INT64
    return pack_model(model), notes


def _requantize_after_gather(model: Any, sg: Any) -> None:
    """Keep each embedding GATHER in int8 and add an int8 -> int16 QUANTIZE after it.

    TFLite Micro's GATHER has no int16 kernel (float32/int8 only), so the table stays as the
    converter wrote it and the looked-up rows are requantized into the int16 graph.
    """
    fb = schema()
    quant_code = None
    k = 0
    while k < len(sg.operators):
        op = sg.operators[k]
        out_idx = op.outputs[0]
        t = sg.tensors[out_idx]
        if _op_name(model, op) != "GATHER" or t.type != fb.TensorType.INT8:
            k += 1
            continue
        if quant_code is None:
            quant_code = opcode_index(model, fb.BuiltinOperator.QUANTIZE, 2)
        new = copy.deepcopy(t)
        new.name = t.name + b"/int16"
        new.buffer = 0
        new.type = fb.TensorType.INT16
        _set_quant(new, _int16_scale_from_int8(t), 0)
        sg.tensors.append(new)
        new_idx = len(sg.tensors) - 1
        for later in sg.operators[k + 1 :]:
            later.inputs = [new_idx if i == out_idx else i for i in later.inputs]
        sg.outputs = [new_idx if o == out_idx else o for o in sg.outputs]
        for sig in model.signatureDefs or []:
            for entry in sig.outputs or []:
                if entry.tensorIndex == out_idx:
                    entry.tensorIndex = new_idx
        q = fb.OperatorT()
        q.opcodeIndex = quant_code
        q.inputs = [out_idx]
        q.outputs = [new_idx]
        sg.operators.insert(k + 1, q)
        k += 2


def has_fused_lstm(ms: Any) -> bool:
    """Whether the sequence model will contain UNIDIRECTIONAL_SEQUENCE_LSTM (unmasked LSTMs)."""
    return any(s.kind == "LSTM" and not s.masked for s in ms.layers)


__all__ = [
    "PATH_NOTE",
    "LstmRange",
    "has_fused_lstm",
    "requantize_int8_to_int16x8",
]
