"""Edits of a converted .tflite through the official schema's object API (no byte surgery).

`POST_CONVERSION` lists the passes every converted artifact goes through, in order, each with
what it matches and why it exists; `run_passes` applies them. Two edits need the source model and
run after them, from `convert`: `widen_lstm_cell_range` (the float cell's |c|) and
`requantize_int16_fc_bias` (the float biases).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgelstm.tflite_info import TFLiteInfo, read_tflite, schema
from edgelstm.types import Quantization, Variant

# Byte vectors (buffer data above all) start on this boundary, as the converter lays them out: a
# repacked model otherwise puts int32 biases and weights at odd addresses, which 32-bit ARM
# kernels may load with alignment-sensitive instructions.
BUFFER_ALIGNMENT = 16


def load_model(data: bytes) -> Any:
    return schema().ModelT.InitFromPackedBuf(bytearray(data), 0)


def pack_model(model: Any) -> bytes:
    import flatbuffers

    class AlignedBuilder(flatbuffers.Builder):
        def StartVector(self, elemSize: int, numElems: int, alignment: int) -> int:
            if elemSize == 1:
                alignment = max(alignment, BUFFER_ALIGNMENT)
            return super().StartVector(elemSize, numElems, alignment)

    builder = AlignedBuilder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def opcode_index(model: Any, builtin: int, version: int) -> int:
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
    model = load_model(data)
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
            quant_op = opcode_index(model, fb.BuiltinOperator.QUANTIZE, 2)
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
        # Only this state's slot: a step model whose y is also the state output lists the same
        # tensor twice, and y must keep its (untied) tensor or it vanishes from the signature.
        outs = list(sg.outputs)
        if to in outs:
            outs[outs.index(to)] = new_index
        sg.outputs = outs
        entry.tensorIndex = new_index
        changed.append(
            f"{out_name}: requantized to {in_name}'s scale {qin[0][0]:.6g}, zero point {qin[1][0]}"
        )
    if not changed:
        return data, []
    return pack_model(model), changed


def remove_lstm_cell_clip(data: bytes) -> tuple[bytes, list[str]]:
    """Set cell_clip (and proj_clip) of every fused LSTM to 0, i.e. no clipping.

    The converter writes cell_clip=10 into UNIDIRECTIONAL_SEQUENCE_LSTM, but a Keras LSTM never
    clips its cell state: a model whose |c| exceeds 10 would silently disagree with its source.
    With 0 the kernels (LiteRT, TFLite Micro; float and integer) skip the clip, as Keras does.
    """
    fb = schema()
    model = load_model(data)
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
    return pack_model(model), changed


# Bias element type of a FULLY_CONNECTED, keyed by its input's TensorType name: what the
# converter itself writes when the layer has a bias (int16x8 accumulates in int64).
_BIAS_TYPE = {"INT8": "INT32", "UINT8": "INT32", "INT16": "INT64", "FLOAT32": "FLOAT32"}
_NUMPY = {"INT32": np.int32, "INT64": np.int64, "FLOAT32": np.float32}


def _fc_lacks_bias(op: Any) -> bool:
    ins = list(op.inputs) if op.inputs is not None else []
    return len(ins) < 3 or ins[2] < 0


def fc_without_bias(data: bytes) -> list[str]:
    """Output tensor names of every FULLY_CONNECTED (any subgraph) that has no bias input."""
    fb = schema()
    model = load_model(data)
    missing = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != (
                fb.BuiltinOperator.FULLY_CONNECTED
            ):
                continue
            if _fc_lacks_bias(op):
                missing.append(sg.tensors[op.outputs[0]].name.decode())
    return missing


def add_fc_bias(data: bytes) -> tuple[bytes, list[str]]:
    """Give every FULLY_CONNECTED without a bias an explicit all-zero one.

    A Dense(use_bias=False) or an LSTM cell's recurrent matmul converts to an FC with bias -1.
    tflite-runtime 2.14's int8 kernel on ARM (gemmlowp) reads that NULL bias and crashes; x86
    hides it. A zero bias changes no output: int32 for int8 inputs, int64 for int16x8, float32
    for float (hybrid FCs have float inputs). Its scale is input scale x weight scale per output
    channel, the value the kernels check a bias against. Returns the new model and the names of
    the FCs that got one.
    """
    fb = schema()
    names = {v: k for k, v in vars(fb.TensorType).items() if not k.startswith("_")}
    model = load_model(data)
    changed: list[str] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if max(code.builtinCode, code.deprecatedBuiltinCode) != (
                fb.BuiltinOperator.FULLY_CONNECTED
            ) or not _fc_lacks_bias(op):
                continue
            x, w = sg.tensors[op.inputs[0]], sg.tensors[op.inputs[1]]
            bias_type = _BIAS_TYPE.get(names.get(x.type, ""))
            if bias_type is None or w.shape is None or len(w.shape) != 2:
                continue  # nothing a kernel would accept: leave the op as it is
            rows = int(w.shape[0])
            bias = fb.TensorT()
            bias.name = sg.tensors[op.outputs[0]].name + b"/zero_bias"
            bias.shape = [rows]
            bias.type = getattr(fb.TensorType, bias_type)
            if bias_type != "FLOAT32":
                x_scale = [float(v) for v in x.quantization.scale]
                w_scale = [float(v) for v in w.quantization.scale]
                per = w_scale if len(w_scale) == rows else w_scale[:1]
                q = fb.QuantizationParametersT()
                q.scale = [np.float32(x_scale[0] * s) for s in per]
                q.zeroPoint = [0] * len(per)
                q.quantizedDimension = 0
                bias.quantization = q
            buf = fb.BufferT()
            buf.data = np.zeros(rows, _NUMPY[bias_type]).view(np.uint8)
            model.buffers.append(buf)
            bias.buffer = len(model.buffers) - 1
            sg.tensors.append(bias)
            ins = list(op.inputs)
            op.inputs = [*ins[:2], len(sg.tensors) - 1, *ins[3:]]
            changed.append(bias.name.decode()[: -len("/zero_bias")])
    if not changed:
        return data, []
    return pack_model(model), changed


def tie_lstm_hidden_intermediate(data: bytes) -> tuple[bytes, list[str]]:
    """Give each int8 fused LSTM's hidden state and effective-hidden-scale intermediate its
    output's quantization.

    LiteRT's kernel quantizes h with the intermediate's parameters, reads it back as the state
    with the state's, and copies the same bytes to the output, so the three must agree. The
    converter calibrates them apart, and before a merge (Add, Concatenate, ...) the merge sets the
    output's: measured max errors 3.07 (LiteRT; TFLite Micro 0.028) before an Add and 0.41 (both)
    before a Concatenate, 0.028 and 0.015 once tied. The output's parameters are the ones to
    keep: an int8 Concatenate needs its inputs' to equal its own."""
    fb = schema()
    model = load_model(data)
    changed: list[str] = []
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
            inter = list(op.intermediates) if op.intermediates is not None else []
            if builtin != fb.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM or len(inter) < 5:
                continue
            h, t = sg.tensors[op.inputs[18]], sg.tensors[inter[4]]
            out = sg.tensors[op.outputs[0]]
            if t.type != fb.TensorType.INT8 or not _quant_params(out)[0]:
                continue
            want = _quant_params(out)
            (s, *_), (z, *_) = want
            for role, tensor in (("hidden state", h), ("hidden intermediate", t)):
                was = _quant_params(tensor)
                if was == want:
                    continue
                was_s, was_z = (was[0][0], was[1][0]) if was[0] else (0.0, 0)
                tensor.quantization = copy.deepcopy(out.quantization)
                changed.append(
                    f"{out.name.decode()}: the LSTM's {role} takes its output's quantization "
                    f"(scale {s:.6g}, zero point {z}; was {was_s:.6g}, {was_z}): the kernel "
                    "copies one into the other"
                )
    if not changed:
        return data, []
    return pack_model(model), changed


def tie_reverse_quantization(data: bytes) -> tuple[bytes, list[str]]:
    """Give each integer REVERSE_V2's input and output one quantization.

    The kernel copies bytes, so they must agree. A Bidirectional layer's backward half ends in
    one (its output sequence back in time order), and the converter quantizes that one's
    output like the layer after it (a Concatenate, an Add, a model output) and its input like
    the LSTM: measured 0.37 max error on a merge_mode=None model's backward output. Where a
    fused LSTM makes the input, the LSTM takes the output's parameters
    (tie-lstm-hidden-intermediate, after this pass, carries them to its hidden state); else the
    output takes the input's."""
    fb = schema()
    model = load_model(data)
    changed: list[str] = []
    for sg in model.subgraphs:
        producer: dict[int, Any] = {}
        readers: dict[int, int] = {}
        for op in sg.operators:
            for t in op.outputs if op.outputs is not None else []:
                producer[int(t)] = op
            for t in op.inputs if op.inputs is not None else []:
                readers[int(t)] = readers.get(int(t), 0) + 1

        def builtin(op: Any) -> int:
            code = model.operatorCodes[op.opcodeIndex]
            return max(code.builtinCode, code.deprecatedBuiltinCode)

        for op in sg.operators:
            if builtin(op) != fb.BuiltinOperator.REVERSE_V2:
                continue
            src, dst = sg.tensors[op.inputs[0]], sg.tensors[op.outputs[0]]
            if src.type not in (fb.TensorType.INT8, fb.TensorType.INT16):
                continue
            if _quant_params(src) == _quant_params(dst) or not _quant_params(dst)[0]:
                continue
            made_by = producer.get(int(op.inputs[0]))
            lstm = (
                made_by is not None
                and builtin(made_by) == fb.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
                and readers.get(int(op.inputs[0]), 0) == 1
            )
            keep, edit = (dst, src) if lstm or not _quant_params(src)[0] else (src, dst)
            (s, *_), (z, *_) = _quant_params(keep)
            (was_s, *_), (was_z, *_) = _quant_params(edit)
            edit.quantization = copy.deepcopy(keep.quantization)
            changed.append(
                f"{dst.name.decode()}: REVERSE_V2 copies bytes, so its "
                f"{'input (the LSTM output)' if edit is src else 'output'} takes the "
                f"{'output' if edit is src else 'input'}'s quantization (scale {s:.6g}, zero "
                f"point {z}; was {was_s!r}, {was_z})"
            )
    if not changed:
        return data, []
    return pack_model(model), changed


# The integer fused LSTM's int16 cell scale is 2^k: LiteRT's kernel refuses k > -9 (|c| >= 64)
# and computes tanh(c) wrong for k < -15 (measured: the converter gave a cell whose |c| stays
# under 0.33 the range +-0.5, k = -16, and the int8 model erred 0.38; k = -15 gives 0.0028).
_CELL_EXP_MIN, _CELL_EXP_MAX = -15, -9


def widen_lstm_cell_range(data: bytes, c_max: list[float]) -> tuple[bytes, list[str]]:
    """Give the k-th integer fused LSTM's int16 cell state a power-of-two range that holds
    `c_max[k]`, the largest |c| the float cell reaches on the calibration data, and no narrower
    than +-1.

    The converter sizes that range from its own calibration: too small where the float cell
    reaches past it (a silent saturation), and below +-1 where LiteRT's kernel breaks. The
    kernels derive every cell shift from this scale when they prepare, so the scale is the only
    byte to change. Needs calibration data: run by `convert`, not in `POST_CONVERSION`."""
    fb = schema()
    model = load_model(data)
    changed: list[str] = []
    edited = False
    k = 0
    for sg in model.subgraphs:
        for op in sg.operators:
            code = model.operatorCodes[op.opcodeIndex]
            if (
                max(code.builtinCode, code.deprecatedBuiltinCode)
                != fb.BuiltinOperator.UNIDIRECTIONAL_SEQUENCE_LSTM
            ):
                continue
            k += 1
            cell = sg.tensors[op.inputs[19]] if len(op.inputs) > 19 and op.inputs[19] >= 0 else None
            if cell is None or cell.type != fb.TensorType.INT16 or not _quant_params(cell)[0]:
                continue
            want = c_max[k - 1] if k - 1 < len(c_max) else 0.0
            scale = _quant_params(cell)[0][0]
            name = sg.tensors[op.outputs[0]].name.decode()
            if want <= 32767 * scale and scale >= 2.0**_CELL_EXP_MIN:
                continue
            need = int(np.ceil(np.log2(want / 32767))) if want > 0 else _CELL_EXP_MIN
            exp = min(max(need, _CELL_EXP_MIN), _CELL_EXP_MAX)
            if 2.0**exp > scale:
                cell.quantization.scale = [2.0**exp]
                why = (
                    "the converter's range saturated it"
                    if want > 32767 * scale
                    else "LiteRT's kernel computes tanh(c) wrong below +-1"
                )
                changed.append(
                    f"{name}: int16 cell state range +-{32768 * scale:.3g} -> "
                    f"+-{32768 * 2.0**exp:.3g} (the float cell reaches |c| = {want:.3g} on the "
                    f"calibration data; {why})"
                )
                scale, edited = 2.0**exp, True
            if want > 32767 * scale:
                changed.append(
                    f"{name}: |c| = {want:.3g} is past the widest range the integer fused LSTM "
                    f"takes (+-{32768 * scale:.3g}): it saturates there; the step model (state "
                    "calibrated from the float cell) does not"
                )
    return (pack_model(model) if edited else data), changed


# Measured: where the shared bias's scale is tiny, the converter clamps it at about 2^30.
_INT16_FC_BIAS_LIMIT = 2**30


def requantize_int16_fc_bias(
    data: bytes, float_biases: list[np.ndarray]
) -> tuple[bytes, list[str]]:
    """Give every int16x8 FULLY_CONNECTED a bias of its own, quantized with its input's scale.

    An unrolled int16x8 sequence model runs one copy of a recurrent FC per step, and the
    converter gives all copies ONE bias tensor, quantized for the step with the smallest input
    range, while each copy's input has its own scale: every other step adds its bias at the wrong
    scale, and the smallest range also clamps it at 2^30 (temporal-order-gru: a recurrent bias of
    1.75 stored as 1.66; the model's max error 0.99). The kernels add the bias in units of input
    scale x weight scale, whatever the bias tensor says. The float values come from
    `float_biases` (the source model's bias vectors): the one the stored bias approximates."""
    fb = schema()
    model = load_model(data)
    sg = model.subgraphs[0]
    fc = {
        i
        for i, oc in enumerate(model.operatorCodes)
        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == fb.BuiltinOperator.FULLY_CONNECTED
    }
    changed: list[str] = []
    cache: dict[int, np.ndarray | None] = {}
    for op in sg.operators:
        if op.opcodeIndex not in fc or len(op.inputs) < 3 or op.inputs[2] < 0:
            continue
        x, w, b = (sg.tensors[i] for i in op.inputs[:3])
        buf = model.buffers[b.buffer].data
        if x.type != fb.TensorType.INT16 or b.type != fb.TensorType.INT64 or buf is None:
            continue
        ws = np.asarray(w.quantization.scale, np.float64)
        want = float(x.quantization.scale[0]) * ws * np.ones(len(b.quantization.scale))
        if want.min() < 1e-30:  # a constant-zero input: no bias scale could hold the bias
            continue
        have = np.asarray(b.quantization.scale, np.float64)
        q = np.frombuffer(bytes(buf), np.int64)
        ok = np.abs(q) < _INT16_FC_BIAS_LIMIT * 0.999  # entries not clamped
        if ok.all() and np.allclose(have, want, rtol=1e-6, atol=0):
            continue
        if op.inputs[2] not in cache:  # the float bias this stored one approximates
            approx = q * have
            cache[op.inputs[2]] = next(
                (
                    np.asarray(c, np.float64)
                    for c in float_biases
                    if c.shape == approx.shape
                    and np.all(np.abs(c - approx)[ok] <= 2 * have[ok] + 1e-5 * np.abs(c)[ok])
                ),
                None,
            )
        real = cache[op.inputs[2]]
        if real is None:
            continue
        bias = copy.deepcopy(b)
        bias.quantization.scale = [float(v) for v in want]
        new = fb.BufferT()
        new.data = np.clip(np.round(real / want), -(2**62), 2**62).astype(np.int64).tobytes()
        model.buffers.append(new)
        bias.buffer = len(model.buffers) - 1
        bias.name = b.name + b"/per_step"
        sg.tensors.append(bias)
        inputs = list(op.inputs)
        inputs[2] = len(sg.tensors) - 1
        op.inputs = inputs
        changed.append(op.outputs[0])
    if not changed:
        return data, []
    return pack_model(model), [
        f"{len(changed)} int16x8 FULLY_CONNECTED ops got a bias of their own, quantized with "
        "their input's scale (the converter shared one bias across the unrolled steps)"
    ]


def _referenced_buffers(model: Any) -> set[int]:
    used = {0}  # buffer 0 is the schema's empty sentinel
    for sg in model.subgraphs:
        used.update(int(t.buffer) for t in sg.tensors)
    used.update(int(m.buffer) for m in model.metadata or [])
    return used


def unreferenced_buffers(data: bytes) -> list[int]:
    """Indices of buffers holding bytes that no tensor and no metadata entry refers to."""
    model = load_model(data)
    used = _referenced_buffers(model)
    return [
        i
        for i, b in enumerate(model.buffers)
        if i not in used and b.data is not None and len(b.data)
    ]


def clear_unreferenced_buffers(data: bytes) -> tuple[bytes, list[str]]:
    """Empty every buffer that nothing refers to (its index stays, so no reference moves).

    The converter leaves the initial contents of a fused LSTM's state variables behind in such
    buffers: uninitialised memory, so the same conversion gave different bytes from run to run,
    and flash spent on bytes no runtime reads."""
    orphans = unreferenced_buffers(data)
    if not orphans:
        return data, []
    model = load_model(data)
    cleared = []
    for i in orphans:
        cleared.append(f"buffer {i}: {len(model.buffers[i].data)} unreferenced bytes dropped")
        model.buffers[i].data = None
    return pack_model(model), cleared


# ------------------------------------------------------------------------- the pass list


@dataclass(frozen=True)
class Pass:
    """One post-conversion edit: `matches(variant, quantization, info)` decides whether it runs
    on an artifact, `apply(data, info)` returns the new bytes and what it changed (one line per
    change; `noted`: those lines go into the artifact's manifest notes)."""

    name: str
    why: str
    matches: Callable[[Variant, Quantization, TFLiteInfo], bool]
    apply: Callable[[bytes, TFLiteInfo], tuple[bytes, list[str]]]
    noted: bool = True


# In the order they run on every converted artifact (after the int16x8 requantization of a fused
# sequence model, which needs the calibration ranges: `edgelstm.convert.orchestrate`).
POST_CONVERSION: tuple[Pass, ...] = (
    Pass(
        "fc-bias",
        "every FULLY_CONNECTED gets an explicit (zero) bias: tflite-runtime's ARM kernels crash "
        "on a missing one",
        lambda _v, _q, _i: True,
        lambda data, _info: add_fc_bias(data),
        noted=False,
    ),
    Pass(
        "tie-state-quantization",
        "an integer step model's state outputs carry their inputs' scale and zero point, so the "
        "state is copied back raw, as firmware does",
        lambda v, q, _i: v == Variant.STEP and q.is_integer,
        lambda data, info: tie_state_quantization(
            data, [(s.input, s.output) for s in info.states()]
        ),
    ),
    Pass(
        "remove-lstm-cell-clip",
        "the converter's cell_clip=10 on a fused LSTM, which Keras never applies",
        lambda v, _q, info: v == Variant.SEQUENCE and bool(info.variable_tensors),
        lambda data, _info: remove_lstm_cell_clip(data),
    ),
    Pass(
        "tie-reverse-quantization",
        "an integer REVERSE_V2 (a Bidirectional's backward half) copies bytes, but the converter "
        "quantizes its input and output apart",
        lambda v, q, info: v == Variant.SEQUENCE and q.is_integer and "REVERSE_V2" in info.op_set,
        lambda data, _info: tie_reverse_quantization(data),
    ),
    Pass(
        "tie-lstm-hidden-intermediate",
        "an int8 fused LSTM before a merge: the converter quantizes its output, hidden state and "
        "hidden intermediate differently, and the kernel copies one into the other",
        lambda v, q, info: (
            v == Variant.SEQUENCE and q == Quantization.INT8 and bool(info.variable_tensors)
        ),
        lambda data, _info: tie_lstm_hidden_intermediate(data),
    ),
    Pass(
        "clear-unreferenced-buffers",
        "the converter leaves a fused LSTM's initial state (uninitialised memory) in buffers "
        "nothing reads: bytes that differed run to run",
        lambda _v, _q, _i: True,
        lambda data, _info: clear_unreferenced_buffers(data),
        noted=False,
    ),
)


def run_passes(
    data: bytes,
    variant: Variant,
    quantization: Quantization,
    passes: tuple[Pass, ...] = POST_CONVERSION,
) -> tuple[bytes, TFLiteInfo, list[str]]:
    """Run each matching pass in order: the edited bytes, their parsed info, and the notes."""
    info = read_tflite(data)
    notes: list[str] = []
    for p in passes:
        if not p.matches(variant, quantization, info):
            continue
        new, changed = p.apply(data, info)
        if new != data:
            data, info = new, read_tflite(new)
        if p.noted:
            notes.extend(changed)
    return data, info, notes
