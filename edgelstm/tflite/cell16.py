"""The int8 step model's LSTM cells in int16: the 8x8->16 scheme of the integer fused LSTM.

The converter's int8 step graph runs every LSTM cell in int8: the gate pre-activations (one
tensor for the four gates), the gate activations, the products and the cell state. On the zoo's
char-lm (LSTM(128), |c| up to 5, gate pre-activations up to 11) that misses the int8 parity bound:
max probability error 0.12-0.16 (fake-quantizing one tensor at a time in the float step math,
64 windows: the gate pre-activation alone 0.072, the cell state and its products 0.051; int16
cell state alone still 0.145; int16 gates and cell 0.038). `int16_lstm_cells` rewrites each cell
as the fused op computes it: the two gate FULLY_CONNECTEDs keep their int8 weights and write
int16 (as int16x8 FCs: LiteRT has no int8-in, int16-out FC; a QUANTIZE widens each int8 input
exactly, at its own scale), and everything up to h (ADD, SPLIT, LOGISTIC, TANH, MUL, the cell
state ADD, the state input and output c) is int16 with power-of-two scales and zero point 0; a
QUANTIZE turns h back into the int8 tensor the rest of the graph (and the h state) reads. The c
state's range comes from the float cell's |c| on the calibration data, like the fused op's cell
(`passes.widen_lstm_cell_range`); the gate pre-activations' from the converter's int8 ranges.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgelstm.tflite.passes import _quant_params, load_model, opcode_index, pack_model
from edgelstm.tflite_info import schema

# int16 LOGISTIC/TANH write with scale 2^-15 (LiteRT and TFLite Micro require it); the cell
# state's exponent is at least this (tanh reads it: a range below +-1 gains nothing).
_ACT_EXP = -15


@dataclass(frozen=True)
class _Cell:
    """Operator indices of one matched LSTM cell in subgraph 0."""

    fcs: tuple[int, int]  # the gate FCs (x and h)
    gate_add: int
    split: int
    acts: tuple[int, ...]  # LOGISTIC x3 and TANH (the gates)
    mul_fc: int  # f * c
    mul_ig: int  # i * g
    cell_add: int  # c' = f*c + i*g
    tanh_c: int
    mul_h: int  # h = o * tanh(c')
    c_in: int  # tensor indices
    c_out: int


def _pow2_scale(abs_max: float, lo_exp: int = -24) -> float:
    """The smallest power of two s with 32767 s >= abs_max (and s >= 2^lo_exp)."""
    need = int(np.ceil(np.log2(abs_max / 32767))) if abs_max > 0 else lo_exp
    return float(2.0 ** max(need, lo_exp))


def _int8_abs_max(t: Any) -> float:
    (s, *_), (z, *_) = _quant_params(t)
    return max(abs((-128 - z) * s), abs((127 - z) * s))


def _match(model: Any, c_inputs: dict[int, int]) -> list[_Cell]:
    """Every LSTM cell whose state c is an int8 graph input (`c_inputs`: tensor -> output)."""
    fb = schema()
    sg = model.subgraphs[0]
    code = {
        i: max(oc.builtinCode, oc.deprecatedBuiltinCode) for i, oc in enumerate(model.operatorCodes)
    }
    ops = list(sg.operators)
    kind = [code[op.opcodeIndex] for op in ops]
    producer = {int(o): i for i, op in enumerate(ops) for o in op.outputs}
    users: dict[int, list[int]] = {}
    for i, op in enumerate(ops):
        for t in op.inputs:
            users.setdefault(int(t), []).append(i)
    graph_outs = {int(t) for t in sg.outputs}
    B = fb.BuiltinOperator

    def only(t: int, want: int) -> int | None:
        us = users.get(t, [])
        return us[0] if len(us) == 1 and kind[us[0]] == want else None

    def made_by(t: int, want: int) -> int | None:
        p = producer.get(t)
        return p if p is not None and kind[p] == want else None

    def int8(t: int) -> bool:
        return sg.tensors[t].type == fb.TensorType.INT8 and bool(_quant_params(sg.tensors[t])[0])

    cells: list[_Cell] = []
    for c_in, c_out in c_inputs.items():
        mul_fc = only(c_in, B.MUL)
        if mul_fc is None or not int8(c_in):
            continue
        cell_add = only(int(ops[mul_fc].outputs[0]), B.ADD)
        if cell_add is None or int(ops[cell_add].outputs[0]) != c_out:
            continue
        ig = [int(t) for t in ops[cell_add].inputs if int(t) != int(ops[mul_fc].outputs[0])]
        mul_ig = made_by(ig[0], B.MUL) if len(ig) == 1 else None
        if mul_ig is None or len(users.get(ig[0], [])) != 1:
            continue
        c_users = users.get(c_out, [])
        tanh_c = c_users[0] if len(c_users) == 1 and kind[c_users[0]] == B.TANH else None
        if tanh_c is None:
            continue
        mul_h = only(int(ops[tanh_c].outputs[0]), B.MUL)
        if mul_h is None:
            continue
        f_t = next(int(t) for t in ops[mul_fc].inputs if int(t) != c_in)
        gate_ts = [f_t, *(int(t) for t in ops[mul_ig].inputs)]
        gate_ts += [int(t) for t in ops[mul_h].inputs if int(t) != int(ops[tanh_c].outputs[0])]
        acts = [producer.get(t) for t in gate_ts]
        if len(acts) != 4 or any(a is None for a in acts) or len(set(acts)) != 4:
            continue
        if sorted(kind[a] for a in acts) != sorted([B.LOGISTIC] * 3 + [B.TANH]):  # type: ignore[index]
            continue
        if any(len(users.get(t, [])) != 1 or t in graph_outs for t in gate_ts):
            continue
        srcs = {int(ops[a].inputs[0]) for a in acts}  # type: ignore[index]
        splits = {producer.get(t) for t in srcs}
        if len(splits) != 1 or None in splits:
            continue
        split = splits.pop()
        if kind[split] != B.SPLIT or len(ops[split].outputs) != 4:  # type: ignore[index]
            continue
        if {int(t) for t in ops[split].outputs} != srcs:  # type: ignore[index]
            continue
        z = int(ops[split].inputs[1])  # type: ignore[index]
        gate_add = made_by(z, B.ADD)
        if gate_add is None or len(users.get(z, [])) != 1:
            continue
        fcs = [made_by(int(t), B.FULLY_CONNECTED) for t in ops[gate_add].inputs]
        if len(fcs) != 2 or None in fcs:
            continue
        if any(len(users.get(int(ops[f].outputs[0]), [])) != 1 for f in fcs):  # type: ignore[index]
            continue
        if any(
            ops[i].builtinOptions is not None
            and getattr(ops[i].builtinOptions, "fusedActivationFunction", 0)
            for i in [*fcs, gate_add, mul_fc, mul_ig, cell_add, mul_h]
        ):  # type: ignore[misc]
            continue
        if not all(int8(int(ops[i].outputs[0])) for i in [*fcs, gate_add, mul_h]):  # type: ignore[misc]
            continue
        cells.append(
            _Cell(
                fcs=(fcs[0], fcs[1]),  # type: ignore[arg-type]
                gate_add=gate_add, split=split,  # type: ignore[arg-type]
                acts=tuple(acts),  # type: ignore[arg-type]
                mul_fc=mul_fc, mul_ig=mul_ig, cell_add=cell_add, tanh_c=tanh_c, mul_h=mul_h,
                c_in=c_in, c_out=c_out,
            )
        )  # fmt: skip
    return cells


def _set_int16(t: Any, scale: float) -> None:
    fb = schema()
    q = fb.QuantizationParametersT()
    q.scale = [np.float32(scale)]
    q.zeroPoint = [0]
    q.quantizedDimension = 0
    t.type = fb.TensorType.INT16
    t.quantization = q


def _per_tensor_weights(model: Any, ops: list[Any], fc_ins: list[int]) -> None:
    """Requantize a per-channel int8 weight matrix (and its int64 bias) to one scale, the rows'
    largest: CMSIS-NN's int16x8 FULLY_CONNECTED (TFLite Micro on Cortex-M) takes per-tensor
    weights only. Each row keeps its values to within half a step of the new scale."""
    sg = model.subgraphs[0]
    w = sg.tensors[fc_ins[1]]
    ws = np.asarray(w.quantization.scale, np.float64)
    if len(ws) <= 1:
        return
    if sum(int(t) == fc_ins[1] for o in ops for t in o.inputs) > 1:  # shared: edit a copy
        w2 = copy.deepcopy(w)
        model.buffers.append(copy.deepcopy(model.buffers[w.buffer]))
        w2.buffer = len(model.buffers) - 1
        sg.tensors.append(w2)
        fc_ins[1], w = len(sg.tensors) - 1, w2
    top = float(ws.max())
    ratio = ws / top
    q = np.frombuffer(bytes(model.buffers[w.buffer].data), np.int8).reshape(len(ws), -1)
    q = np.clip(np.round(q * ratio[:, None]), -127, 127).astype(np.int8)
    model.buffers[w.buffer].data = q.reshape(-1).view(np.uint8)
    w.quantization.scale = [np.float32(top)]
    w.quantization.zeroPoint = [0]
    w.quantization.quantizedDimension = 0
    if len(fc_ins) > 2 and fc_ins[2] >= 0:  # the int64 bias, at input scale x weight scale
        b = sg.tensors[fc_ins[2]]
        v = np.frombuffer(bytes(model.buffers[b.buffer].data), np.int64)
        model.buffers[b.buffer].data = np.round(v * ratio).astype(np.int64).view(np.uint8)
        in_scale = float(b.quantization.scale[0]) / float(ws[0])
        b.quantization.scale = [np.float32(in_scale * top)]
        b.quantization.zeroPoint = [0]


def int16_lstm_cells(data: bytes, c_max: dict[str, float]) -> tuple[bytes, list[str]]:
    """Rewrite every int8 step model's LSTM cell to int16 gates and cell state (module doc).

    `c_max` maps a state input's signature name (`state{k}_c`) to the largest |c| the float
    cell reaches on the calibration data. Cells that do not match the converter's pattern (an
    int8 state c read by one MUL, ..., h = o * tanh(c')) are left as they are. Returns the new
    model and one note per rewritten cell."""
    fb = schema()
    model = load_model(data)
    sg = model.subgraphs[0]
    sig = model.signatureDefs[0] if model.signatureDefs else None
    if sig is None:
        return data, []
    ins = {t.name.decode(): int(t.tensorIndex) for t in sig.inputs}
    outs = {t.name.decode(): int(t.tensorIndex) for t in sig.outputs}
    c_inputs = {
        ti: outs[name + "_out"]
        for name, ti in ins.items()
        if name.startswith("state") and name.endswith("_c") and name + "_out" in outs
    }
    name_of = {ti: name for name, ti in ins.items()}
    cells = _match(model, c_inputs)
    if not cells:
        return data, []
    ops = sg.operators
    quant = opcode_index(model, fb.BuiltinOperator.QUANTIZE, 2)
    notes: list[str] = []
    after: dict[int, Any] = {}  # op index -> the QUANTIZE that follows it
    before: dict[int, list[Any]] = {}  # op index -> the QUANTIZEs that precede it
    for cell in cells:
        T = sg.tensors
        out = lambda i, ops=ops: int(ops[i].outputs[0])  # noqa: E731
        z = out(cell.gate_add)
        z_scale = _pow2_scale(_int8_abs_max(T[z]))
        for f in cell.fcs:
            # int16x8 FC: its int8 input requantized to int16 at the same scale (exact), the
            # int32 bias widened to int64 (same values, same scale).
            x8 = int(ops[f].inputs[0])
            x16 = copy.deepcopy(T[x8])
            x16.name = T[x8].name + b"/int16"
            x16.buffer = 0
            _set_int16(x16, _quant_params(T[x8])[0][0])
            sg.tensors.append(x16)
            q = fb.OperatorT()
            q.opcodeIndex = quant
            q.inputs = [x8]
            q.outputs = [len(sg.tensors) - 1]
            before.setdefault(f, []).append(q)
            fc_ins = [int(t) for t in ops[f].inputs]
            fc_ins[0] = len(sg.tensors) - 1
            if len(fc_ins) > 2 and fc_ins[2] >= 0:
                b32 = T[fc_ins[2]]
                wide = np.frombuffer(bytes(model.buffers[b32.buffer].data), np.int32)
                shared = sum(int(t) == fc_ins[2] for o in ops for t in o.inputs) > 1
                if shared:  # another op reads the int32 bias: the int64 one is a copy
                    b64 = copy.deepcopy(b32)
                    b64.name = b32.name + b"/int64"
                    model.buffers.append(fb.BufferT())
                    b64.buffer = len(model.buffers) - 1
                    sg.tensors.append(b64)
                    fc_ins[2] = len(sg.tensors) - 1
                else:  # widened in place: no int32 copy left behind
                    b64 = b32
                b64.type = fb.TensorType.INT64
                model.buffers[b64.buffer].data = wide.astype(np.int64).view(np.uint8)
            _per_tensor_weights(model, ops, fc_ins)
            ops[f].inputs = fc_ins
            _set_int16(T[out(f)], _pow2_scale(_int8_abs_max(T[out(f)])))
        _set_int16(T[z], z_scale)
        for t in ops[cell.split].outputs:
            _set_int16(T[int(t)], z_scale)
        for a in cell.acts:
            _set_int16(T[out(a)], 2.0**_ACT_EXP)
        name = name_of[cell.c_in]
        want = float(c_max.get(name, 0.0))
        conv = _int8_abs_max(T[cell.c_in])  # the converter's range (from the same float cell)
        c_scale = _pow2_scale(max(want, conv, 1.0), _ACT_EXP)
        for t in (cell.c_in, out(cell.mul_fc), cell.c_out):
            _set_int16(T[t], c_scale)
        _set_int16(T[out(cell.mul_ig)], 2.0**_ACT_EXP)
        _set_int16(T[out(cell.tanh_c)], 2.0**_ACT_EXP)
        # h: the MUL writes an int16 copy; a QUANTIZE makes the int8 tensor everything reads.
        h8 = out(cell.mul_h)
        h16 = copy.deepcopy(T[h8])
        h16.name = T[h8].name + b"/int16"
        h16.buffer = 0
        _set_int16(h16, 2.0**_ACT_EXP)
        sg.tensors.append(h16)
        h16_index = len(sg.tensors) - 1
        ops[cell.mul_h].outputs = [h16_index]
        q = fb.OperatorT()
        q.opcodeIndex = quant
        q.inputs = [h16_index]
        q.outputs = [h8]
        after[cell.mul_h] = q
        for a in [cell.gate_add, cell.cell_add]:
            # general int16 scales: without options LiteRT's ADD takes the power-of-two path
            if ops[a].builtinOptions is None:
                ops[a].builtinOptionsType = fb.BuiltinOptions.AddOptions
                ops[a].builtinOptions = fb.AddOptionsT()
            ops[a].builtinOptions.potScaleInt16 = False
        notes.append(
            f"{name}: the cell state is int16 (+-{32768 * c_scale:.3g}; the float cell reaches "
            f"|c| = {want:.3g} on the calibration data), and so are the gates (int16x8 "
            "FULLY_CONNECTEDs) up to h, which returns to int8: the fused LSTM's 8x8->16 scheme"
        )
    sg.operators = [
        o
        for i, op in enumerate(ops)
        for o in [*before.get(i, []), op, *([after[i]] if i in after else [])]
    ]
    return pack_model(model), notes
