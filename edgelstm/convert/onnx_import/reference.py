"""The reference an imported model is verified against: onnxruntime (or onnx's evaluator)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.convert.onnx_import.common import Act
from edgelstm.errors import BadInputError, MissingDependencyError


def _session(path: Path, notes: list[str]) -> Callable[[str, np.ndarray], np.ndarray]:
    """onnxruntime on the file; onnx's reference evaluator where onnxruntime has no kernel
    (batch-wise recurrent ops, layout=1)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "verifying an ONNX model", "convert") from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        if "layout" not in str(exc):
            raise BadInputError(
                f"{path}: onnxruntime cannot load the model ({str(exc).splitlines()[0][:200]})"
            ) from None
        from onnx.reference import ReferenceEvaluator

        ev = ReferenceEvaluator(str(path))
        notes.append(
            "onnxruntime has no kernel for batch-wise (layout=1) recurrent ops: the reference is "
            "onnx's reference evaluator (onnx.reference) running the source file"
        )
        return lambda name, x: np.asarray(ev.run(None, {name: x})[0])
    return lambda name, x: np.asarray(sess.run(None, {name: x})[0])


def _reference(
    path: Path,
    in_name: str,
    in_labels: list[str],
    out: Act,
    in_dtype: Any,
    notes: list[str],
) -> Callable[[np.ndarray], np.ndarray]:
    """The source model's outputs [N, ...] (inputs/outputs moved between the Keras layout and the
    file's): batches of 32, or one sequence at a time where the graph fixes the batch (a static
    initial state, a fixed batch axis)."""
    run_one = _session(path, notes)
    to_onnx = [("B", "T", "F").index(lab) for lab in in_labels]
    labels = list(out.labels) if "B" in out.labels else ["B", *out.labels]
    pick = sorted(
        [k for k, lab in enumerate(labels) if lab in ("B", "T", "F")],
        key=lambda k: "BTF".index(labels[k]),
    )
    state = {"step": 32}

    def chunk_out(chunk: np.ndarray) -> np.ndarray:
        y = run_one(in_name, np.transpose(chunk, to_onnx).astype(in_dtype)).astype(np.float64)
        if "B" not in out.labels:
            y = y[None]
        rest = [k for k in range(y.ndim) if k not in pick]
        return np.transpose(y, pick + rest).reshape(len(chunk), -1)

    def run(xs: np.ndarray) -> np.ndarray:
        outs = []
        i = 0
        while i < len(xs):
            chunk = np.asarray(xs[i : i + state["step"]])
            try:
                outs.append(chunk_out(chunk))
            except Exception:
                if state["step"] == 1:
                    raise
                state["step"] = 1  # the graph fixes the batch: one sequence at a time
                continue
            i += len(chunk)
        return np.concatenate(outs)

    return run
