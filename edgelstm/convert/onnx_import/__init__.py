"""ONNX models in (as `torch.onnx.export` writes them, or plain ONNX LSTM/GRU/RNN graphs).

The graph is traced into the *same* Keras layer chain a Keras user would write (LSTM, GRU,
SimpleRNN, Bidirectional, Dense, Embedding, Conv1D, ...), weights mapped to Keras layouts, so the
rest of `edgelstm convert` (registry, fused sequence model, step model, quantization, export) is
the Keras path unchanged. The verification reference is onnxruntime running the source file.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from edgelstm.convert.onnx_import.trace import ImportedONNX, load_onnx

SUFFIXES = (".onnx", ".pt", ".pth")


def load_model_file(path: str | Path, cfg: Any) -> ImportedONNX:
    """An .onnx file, or a PyTorch file exported to ONNX first (needs torch and
    cfg.example_input_shape)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return load_onnx(path, cfg.seq_len)
    from edgelstm.convert.onnx_import.torch_export import export_torch

    work = Path(tempfile.mkdtemp(prefix="edgelstm_pt_"))
    try:
        shape = getattr(cfg, "example_input_shape", None)
        onnx_path = export_torch(path, shape, work / "model.onnx", unsafe=cfg.unsafe)
        seq = cfg.seq_len or (shape[1] if shape else None)
        imported = load_onnx(onnx_path, seq)  # the reference session holds the model in memory
        imported.notes.insert(0, f"exported from {path.name} with torch.onnx.export, input {shape}")
        return imported
    finally:
        shutil.rmtree(work, ignore_errors=True)


__all__ = ["SUFFIXES", "ImportedONNX", "load_model_file", "load_onnx"]
