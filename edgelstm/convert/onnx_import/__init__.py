"""ONNX models in (as `torch.onnx.export` writes them, or plain ONNX LSTM/GRU/RNN graphs).

The graph is traced into the *same* Keras layer chain a Keras user would write (LSTM, GRU,
SimpleRNN, Bidirectional, Dense, Embedding, Conv1D, ...), weights mapped to Keras layouts, so the
rest of `edgelstm convert` (registry, fused sequence model, step model, quantization, export) is
the Keras path unchanged. The verification reference is onnxruntime running the source file.
"""

from __future__ import annotations

from edgelstm.convert.onnx_import.trace import ImportedONNX, load_onnx

__all__ = ["ImportedONNX", "load_onnx"]
