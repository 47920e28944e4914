"""Edits of a converted .tflite through the official schema's object API (no byte surgery)."""

from __future__ import annotations

import copy
from typing import Any

from edgelstm.tflite_info import schema


def _load(data: bytes) -> Any:
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def _pack(model: Any) -> bytes:
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _opcode_index(model: Any, builtin: int, version: int) -> int:
    fb = schema()
    for i, oc in enumerate(model.operatorCodes):
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == builtin:
            oc.version = max(oc.version, version)
            return i
    oc = fb.OperatorCodeT()
    oc.builtinCode = builtin
    oc.deprecatedBuiltinCode = min(builtin, 127)
    oc.version = version
    model.operatorCodes.append(oc)
    return len(model.operatorCodes) - 1


def _quant_params(t: Any) -> tuple[tuple[float, ...], tuple[int, ...]]:
    q = t.quantization
    if q is None or q.scale is None:
        return (), ()
    return tuple(float(v) for v in q.scale), tuple(int(v) for v in q.zeroPoint)


def tie_state_quantization(data: bytes, pairs: list[tuple[str, str]]) -> tuple[bytes, list[str]]:
    """Make each state output carry exactly its input's scale and zero point.

    `pairs` are (input name, output name) signature names. Where the converter calibrated the two
    differently, an int8->int8 QUANTIZE op is appended that requantizes the output, so firmware can
    copy the raw state bytes from output to input. Returns the new model and what was changed.
    """
    fb = schema()
    model = _load(data)
    sg = model.subgraphs[0]
    sig = model.signatureDefs[0] if model.signatureDefs else None
    by_name_in = {t.name.decode(): t.tensorIndex for t in sig.inputs} if sig else {}
    out_entries = {t.name.decode(): t for t in sig.outputs} if sig else {}
    changed: list[str] = []
    quant_op = None
    for in_name, out_name in pairs:
        if in_name not in by_name_in or out_name not in out_entries:
            continue
        ti = by_name_in[in_name]
        entry = out_entries[out_name]
        to = entry.tensorIndex
        t_in, t_out = sg.tensors[ti], sg.tensors[to]
        qin, qout = _quant_params(t_in), _quant_params(t_out)
        if not qin[0] or qin == qout or t_in.type != t_out.type:
            continue
        if quant_op is None:
            quant_op = _opcode_index(model, fb.BuiltinOperator.QUANTIZE, 2)
        new = copy.deepcopy(t_out)
        new.quantization = copy.deepcopy(t_in.quantization)
        new.buffer = 0
        t_out.name = t_out.name + b"/pre_tie"
        sg.tensors.append(new)
        new_index = len(sg.tensors) - 1
        op = fb.OperatorT()
        op.opcodeIndex = quant_op
        op.inputs = [to]
        op.outputs = [new_index]
        sg.operators.append(op)
        sg.outputs = [new_index if o == to else o for o in sg.outputs]
        entry.tensorIndex = new_index
        changed.append(
            f"{out_name}: requantized to {in_name}'s scale {qin[0][0]:.6g}, zero point {qin[1][0]}"
        )
    if not changed:
        return data, []
    return _pack(model), changed


def remove_lstm_cell_clip(data: bytes) -> tuple[bytes, list[str]]:
    """Set cell_clip (and proj_clip) of every fused LSTM to 0, i.e. no clipping.

    The converter writes cell_clip=10 into UNIDIRECTIONAL_SEQUENCE_LSTM, but a Keras LSTM never
    clips its cell state: a model whose |c| exceeds 10 would silently disagree with its source.
    With 0 the kernels (LiteRT, TFLite Micro; float and integer) skip the clip, as Keras does.
    """
    fb = schema()
    model = _load(data)
    changed: list[str] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != (
                fb.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
            ):
                continue
            opt = op.builtinOptions
            if opt is None or (opt.cellClip == 0.0 and opt.projClip == 0.0):
                continue
            name = sg.tensors[op.outputs[0]].name.decode()
            changed.append(
                f"{name}: removed the converter's cell_clip={opt.cellClip:g} (Keras does not clip)"
            )
            opt.cellClip = 0.0
            opt.projClip = 0.0
    if not changed:
        return data, []
    return _pack(model), changed
