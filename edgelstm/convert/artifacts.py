"""One converted .tflite's manifest entry and the notes checked on it: LSTM fusion, the float
cell's range for the int16 cell state, weights a dynamic-range model kept in float.
"""

from __future__ import annotations

import numpy as np

from edgelstm.convert import build
from edgelstm.convert.graph import ModelSpec
from edgelstm.convert.layers import LayerSpec, handler_for
from edgelstm.convert.layers.configs import RecurrentConfig
from edgelstm.errors import ConversionError
from edgelstm.tflite_info import TFLiteInfo
from edgelstm.types import Artifact, Quantization, Variant


def _fused_cell_maxima(ms: ModelSpec, cal_x: np.ndarray, n_fused: int) -> list[float]:
    """max |c| of the float cell over the calibration data, one per fused LSTM op in graph order.

    Per layer where the op order is plain (a chain whose every LSTM fused); otherwise every op
    gets the model's largest |c| (a wider int16 range costs little; a narrow one saturates)."""
    maxima = build.state_abs_max(ms, cal_x[:64])
    cells = {name: v for name, v in maxima.items() if name.endswith("_c")}
    per_layer = all(n.startswith("state") and n[5:-2].isdigit() for n in cells)
    if per_layer and len(cells) == n_fused and ms.is_chain:
        return [cells[n] for n in sorted(cells, key=lambda n: int(n[5:-2]))]
    return [max(cells.values(), default=0.0)] * n_fused


def _fusable_activations(spec: LayerSpec) -> bool:
    return isinstance(spec.config, RecurrentConfig) and spec.config.fusable_activations


def _float_bias_vectors(ms: ModelSpec) -> list[np.ndarray]:
    """Every vector of the source model's weights that can be a bias: 1-D arrays and the rows of
    a GRU's [2, 3u] bias (the cells of wrappers included)."""
    out: list[np.ndarray] = []
    for spec, handler in zip(ms.layers, ms.handlers, strict=True):
        for s in [spec, *handler.cells(spec)]:
            for w in s.weights:
                w = np.asarray(w)
                if w.ndim == 1:
                    out.append(w)
                elif w.ndim == 2 and w.shape[0] <= 4:
                    out.extend(w)
    return out


def _artifact(
    file: str, info: TFLiteInfo, variant: Variant, quant: Quantization, ms: ModelSpec
) -> Artifact:
    states = info.states()
    if ms.multi_io:  # name each signature tensor's Keras input / output
        keras = {io.name: io.keras_name for io in ms.inputs + ms.outputs}
        for t in info.inputs + info.outputs:
            t.keras_name = keras.get(t.name, "")
    layout = [(k, spec) for k, spec, _ in ms.state_layout()]
    for st in states:
        k = int(st.layer[len("state") :])
        st.layer = layout[k][1].name if k < len(layout) else st.layer
    return Artifact(
        file=file,
        variant=variant,
        quantization=quant,
        ops=info.op_set,
        op_counts=info.op_counts,
        fused_lstm=info.fused_lstm,
        inputs=info.inputs,
        outputs=info.outputs,
        states=states if variant == Variant.STEP else [],
        macs_per_invoke=info.macs,
        params=info.params,
        size_bytes=info.size_bytes,
    )


def _fusion_check(ms: ModelSpec, info: TFLiteInfo, allow_unfused: bool) -> list[str]:
    """Fail when a sequence model with LSTMs kept WHILE/TensorList/Flex ops, naming the layer."""
    notes = []
    lstms = [
        cell
        for spec, handler in zip(ms.layers, ms.handlers, strict=True)
        for cell in handler.cells(spec)
        if handler_for(cell.kind, cell.name).fusable
    ]
    fused = info.op_counts.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
    unfused_lstms = [s for s in lstms if s.masked or not _fusable_activations(s) or s.return_state]
    for s in unfused_lstms:
        why = (
            "masking (a masked LSTM is unrolled into plain ops)"
            if s.masked
            else "return_state=True (the fused op has no final cell state; unrolled into plain ops)"
            if s.return_state
            else "its activations are not tanh/sigmoid (unrolled into plain ops)"
        )
        notes.append(f"{s.name}: not fused: {why}")
    bad = info.unfused_ops
    if bad:
        culprits = []
        for s in ms.layers:
            flags = {"go_backwards": s.go_backwards, "stateful": s.stateful, "masked": s.masked}
            culprits.extend(f"layer '{s.name}' ({arg})" for arg, on in flags.items() if on)
        who = (
            ", ".join(culprits)
            or ", ".join(f"layer '{s.name}'" for s in lstms)
            or "a recurrent layer"
        )
        msg = f"sequence model still has {', '.join(bad)} ops (not fused): {who}"
        if not allow_unfused:
            raise ConversionError(msg + "; pass --allow-unfused to keep it anyway")
        notes.append(msg)
    elif lstms and fused < len(lstms) - len(unfused_lstms):
        notes.append(f"{len(lstms) - fused} LSTM layer(s) not fused")
    return notes


# TFLite's dynamic-range quantizer leaves constant tensors under this many elements in float.
DYNAMIC_MIN_ELEMENTS = 1024


def _dynamic_note(info: TFLiteInfo) -> list[str]:
    """Say why a dynamic-range artifact kept (some of) its weights in float."""
    weights = [t for t in info.tensors if t.buffer_bytes and len(t.shape) >= 2]
    small = [t for t in weights if t.dtype == "float32" and np.prod(t.shape) < DYNAMIC_MIN_ELEMENTS]
    if not small:
        return []
    kept = sum(t.buffer_bytes for t in small)
    return [
        f"dynamic range: {len(small)} of {len(weights)} weight matrices stay float32 ({kept:,} B): "
        f"the converter quantizes only tensors of {DYNAMIC_MIN_ELEMENTS} elements or more, and the "
        "fused LSTM keeps each gate's matrix (units x inputs, units x units) apart; int8 "
        "quantizes all of them"
    ]
