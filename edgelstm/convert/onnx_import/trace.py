"""Trace an ONNX graph into a chain of Keras layers.

Every non-constant tensor is the output of the chain built so far, described by a label per ONNX
axis ('B' batch, 'T' time, 'F' features, 'D' directions, '1' a unit axis). Layout ops (Transpose,
Squeeze, Reshape, ...) only relabel; weight-carrying ops (LSTM, GRU, RNN, MatMul/Gemm, Gather on a
table, Conv, ...) append a Keras layer. Anything else is refused naming the node, its op type and
the nearest supported alternative. Constant subgraphs (the exporter's shape arithmetic for zero
initial states, pads, ...) are folded with onnx's reference evaluator at the fixed deploy shape.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from edgelstm.convert.onnx_import.common import ImportedONNX
from edgelstm.convert.onnx_import.keras_build import _build_keras
from edgelstm.convert.onnx_import.ops_conv import ConvOps
from edgelstm.convert.onnx_import.ops_layout import LayoutOps
from edgelstm.convert.onnx_import.ops_recurrent import RecurrentOps, _state_notes
from edgelstm.convert.onnx_import.ops_step import StepOps
from edgelstm.convert.onnx_import.reference import _reference
from edgelstm.errors import BadInputError, MissingDependencyError, UnsupportedLayerError


class _Tracer(LayoutOps, StepOps, ConvOps, RecurrentOps):
    """The tracer: the core walk (core.py) with every op family's op_<OpType> handlers."""


def load_onnx(path: str | Path, seq_len: int | None) -> ImportedONNX:
    """Parse an .onnx file into the equivalent Keras model plus its onnxruntime reference."""
    path = Path(path)
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "converting an ONNX model", "convert") from None
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:
        raise BadInputError(
            f"{path}: not a valid ONNX model ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
        ) from None
    g = model.graph
    inits = {i.name for i in g.initializer}
    inputs = [i for i in g.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise BadInputError(
            f"{path}: the graph has {len(inputs)} inputs ({names}); edgelstm deploys single-input "
            "models (export without passing h0/c0: the step model carries the state)"
        )
    dims = inputs[0].type.tensor_type.shape.dim
    errors: list[UnsupportedLayerError | BadInputError] = []
    for layout in ("BT", "TB"):
        t_axis, b_axis = (1, 0) if layout == "BT" else (0, 1)
        if len(dims) < 2:
            raise BadInputError(f"{path}: input '{inputs[0].name}' is not a sequence")
        t_dim, b_dim = dims[t_axis].dim_value, dims[b_axis].dim_value
        if b_dim not in (0, 1):
            errors.append(
                BadInputError(
                    f"{path}: the batch axis is fixed at {b_dim}; export with batch 1 or a dynamic batch axis"
                )
            )
            continue
        if t_dim:
            if seq_len is not None and seq_len != t_dim:
                errors.append(
                    BadInputError(
                        f"--seq-len {seq_len} differs from the model's fixed sequence length {t_dim}"
                    )
                )
                continue
            t = int(t_dim)
        elif seq_len is None:
            errors.append(
                BadInputError(
                    "the model's sequence length is dynamic: pass --seq-len T to fix it for deployment"
                )
            )
            continue
        else:
            t = int(seq_len)
        if t < 2:
            errors.append(BadInputError("the sequence length must be at least 2"))
            continue
        tracer = _Tracer(model, str(path), layout, t)
        try:
            out, in_name = tracer.run()
        except (UnsupportedLayerError, BadInputError) as exc:
            # A reason found while tracing outranks a shape pre-check of the other reading, and
            # a layout mismatch is the weakest tracing reason (the other reading may be right).
            exc.rank = 1 if "do not match layout" in str(exc) else 2  # type: ignore[attr-defined]
            errors.append(exc)
            continue
        keras_model = _build_keras(tracer)
        in_labels = ["B", "T", "F"] if layout == "BT" else ["T", "B", "F"]
        if tracer.token_input:
            in_labels = in_labels[:2] if layout == "BT" else ["T", "B"]
        np_dtype = onnx.helper.tensor_dtype_to_np_dtype(inputs[0].type.tensor_type.elem_type)
        ref_notes: list[str] = []
        ref = _reference(path, in_name, in_labels, out, np_dtype, ref_notes)
        shape = tuple(keras_model.output_shape[1:])

        def reference(xs: np.ndarray, _r: Callable = ref, _s: tuple = shape) -> np.ndarray:
            y = _r(xs)
            return y.reshape(len(xs), *_s)

        notes = [
            f"source: ONNX ({'time-major' if layout == 'TB' else 'batch-first'} input, opset "
            f"{max((o.version for o in model.opset_import if o.domain in ('', 'ai.onnx')), default=0)}); "
            "verified against onnxruntime",
            *ref_notes,
            *_state_notes(tracer.layers),
        ]
        return ImportedONNX(model=keras_model, reference=reference, notes=notes, seq_len=t)
    # Both readings failed: report the most specific reason (the batch-first one on a tie).
    raise max(errors, key=lambda e: getattr(e, "rank", 0))
