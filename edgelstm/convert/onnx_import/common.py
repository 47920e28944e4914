"""What the tracer's parts share: the traced tensor (Act), the chain's layers, the import result,
the refusal naming the nearest supported alternative, and small helpers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgelstm.errors import UnsupportedLayerError

INT_MAX = 2**62

# What to suggest for an op edgelstm does not take.
_ALTERNATIVES = {
    "Scan": "export nn.LSTM/nn.GRU/nn.RNN as the ONNX LSTM/GRU/RNN op (torch.onnx.export(..., dynamo=False))",
    "Loop": "export nn.LSTM/nn.GRU/nn.RNN as the ONNX LSTM/GRU/RNN op (torch.onnx.export(..., dynamo=False))",
    "ReduceMean": "nn.LayerNorm exported at opset >= 17 (one LayerNormalization node)",
    "Conv": "a 1-D Conv (nn.Conv1d, group=1)",
    "Gelu": "Relu, Tanh or Sigmoid",
    "Attention": "a recurrent layer (LSTM/GRU/RNN)",
    "MultiHeadAttention": "a recurrent layer (LSTM/GRU/RNN)",
}
_SUPPORTED = (
    "LSTM, GRU, RNN, MatMul/Gemm (+Add bias), Gather (embedding table, last step, final state), "
    "Conv (1-D) with Pad/Slice for causal padding, BatchNormalization, LayerNormalization, "
    "Relu, LeakyRelu, Sigmoid, Tanh, Softmax, LogSoftmax, Elu, Softplus, Softsign, HardSigmoid, "
    "Dropout, Identity, Transpose, Squeeze, Unsqueeze, Reshape, Flatten, Concat of final states"
)
_ACT = {
    "Relu": "relu",
    "Sigmoid": "sigmoid",
    "Tanh": "tanh",
    "Elu": "elu",
    "Softplus": "softplus",
    "Softsign": "softsign",
}
_RNN_ACT = {"Sigmoid": "sigmoid", "Tanh": "tanh", "Relu": "relu", "HardSigmoid": None}


@dataclass
class Act:
    """A tensor computed from the model input: the output of the chain so far."""

    labels: list[str]
    sizes: list[int]
    pos: int  # number of layers in the chain when it was made (must be the head when used)
    final: list[tuple[int, int]] | None = None  # recurrent final states: (layer, direction)
    lpad: int = 0  # zero steps padded in front on T (waiting for a Conv)
    trim: int = 0  # extra steps at the end of T (a Conv padded on both sides, waiting for a Slice)
    dense: int | None = None  # a Dense layer whose bias an Add can take

    def axis(self, label: str) -> int | None:
        return self.labels.index(label) if label in self.labels else None


@dataclass
class Layer:
    """One Keras layer of the chain, built once the whole graph is traced."""

    kind: str
    name: str
    node: str  # the ONNX node it came from
    cfg: dict[str, Any]
    weights: list[np.ndarray]
    bidirectional: bool = False
    backward_weights: list[np.ndarray] = field(default_factory=list)


@dataclass
class ImportedONNX:
    """What `convert` needs from an ONNX file: the equivalent Keras model and the reference."""

    model: Any
    reference: Callable[[np.ndarray], np.ndarray]
    notes: list[str]
    seq_len: int


def _refuse(node: Any, why: str, alt: str | None = None) -> UnsupportedLayerError:
    alt = alt or _ALTERNATIVES.get(node.op_type)
    tail = f"; nearest supported: {alt}" if alt else f"; supported: {_SUPPORTED}"
    return UnsupportedLayerError(
        f"node '{node.name or node.output[0]}' ({node.op_type}): {why}{tail}"
    )


def _attrs(node: Any) -> dict[str, Any]:
    import onnx

    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, bytes):
            v = v.decode()
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[a.name] = v
    return out


def _keras_name(node_name: str, used: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_]+", "_", node_name).strip("_") or "layer"
    if not base[0].isalpha():
        base = "n_" + base
    name, i = base, 1
    while name in used:
        i += 1
        name = f"{base}_{i}"
    used.add(name)
    return name


class _Poison:
    """An output edgelstm cannot reproduce: refused if anything live reads it."""

    def __init__(self, node: Any, what: str, alt: str) -> None:
        self.node, self.what, self.alt = node, what, alt


def _replace(a: Act, labels: list[str], sizes: list[int], **kw: Any) -> Act:
    return Act(
        labels,
        sizes,
        a.pos,
        final=kw.get("final", a.final),
        lpad=kw.get("lpad", a.lpad),
        trim=kw.get("trim", a.trim),
        dense=kw.get("dense", a.dense),
    )


def _clamp(v: int, n: int) -> int:
    if v < 0:
        v += n
    return max(0, min(v, n))
