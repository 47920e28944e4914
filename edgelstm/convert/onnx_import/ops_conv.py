"""Embedding tables and the 1-D convolution with its causal padding."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.convert.onnx_import.common import Act, Layer, _attrs, _keras_name, _refuse, _replace
from edgelstm.convert.onnx_import.core import _TracerCore


class ConvOps(_TracerCore):
    """Embedding (a Gather on a table), Pad, Conv."""

    # --- embedding and convolution ---------------------------------------------------------------

    def _embedding(self, node: Any, table: np.ndarray) -> None:
        ids = self.values.get(node.input[1])
        if not isinstance(ids, Act) or not self.token_input or ids.pos != 0 or self.layers:
            raise _refuse(
                node,
                "gathers from a constant table with something other than the input token ids",
                "nn.Embedding as the first layer on (batch, time) integer input",
            )
        if _attrs(node).get("axis", 0) != 0 or table.ndim != 2:
            raise _refuse(node, "is not an embedding lookup (axis 0 of a 2-D table)")
        pos = self.add(
            Layer(
                "Embedding",
                _keras_name(node.name or "embedding", self.names),
                node.name,
                {"input_dim": int(table.shape[0]), "output_dim": int(table.shape[1])},
                [table.astype(np.float32)],
            )
        )
        self.set_out(node, Act([*ids.labels, "F"], [*ids.sizes, int(table.shape[1])], pos))

    def op_Pad(self, node: Any) -> None:
        a = self.act_in(node)
        at = _attrs(node)
        if at.get("mode", "constant") != "constant":
            raise _refuse(
                node, f"mode={at.get('mode')} padding is not supported", "zero (constant) padding"
            )
        pads = [int(v) for v in self.need_const(node, node.input[1], "pads").reshape(-1)]
        if len(node.input) > 2 and node.input[2]:
            value = self.const(node.input[2])
            if value is None or np.any(value != 0):
                raise _refuse(node, "pads with a non-zero value", "zero padding")
        if len(node.input) > 3 and node.input[3]:
            raise _refuse(node, "the axes input is not supported")
        rank = len(a.labels)
        t = a.axis("T")
        for ax in range(rank):
            if (pads[ax] or pads[ax + rank]) and (ax != t or pads[ax + rank]):
                raise _refuse(
                    node,
                    "pads something other than the front of the time axis",
                    "F.pad(x, (k - 1, 0)) in front of a Conv1d (causal)",
                )
        sizes = list(a.sizes)
        sizes[t] += pads[t]  # type: ignore[index]
        self.set_out(node, _replace(a, list(a.labels), sizes, lpad=a.lpad + pads[t]))  # type: ignore[index]

    def op_Conv(self, node: Any) -> None:
        a = self.act_in(node)
        if a.labels != ["B", "F", "T"]:
            raise _refuse(
                node, f"expects a (batch, channels, time) input, got axes {a.labels}", "nn.Conv1d"
            )
        at = _attrs(node)
        w = self.need_const(node, node.input[1], "the kernel").astype(np.float32)
        if w.ndim != 3 or at.get("group", 1) != 1:
            raise _refuse(node, "only 1-D convolutions with group=1 are supported")
        out_ch, _, k = w.shape
        d = int(at.get("dilations", [1])[0])
        s = int(at.get("strides", [1])[0])
        if at.get("auto_pad", "NOTSET") not in ("NOTSET", ""):
            raise _refuse(node, f"auto_pad={at['auto_pad']} is not supported", "explicit pads")
        pads = list(at.get("pads", [0, 0]))
        left, right = a.lpad + int(pads[0]), int(pads[1])
        span = (k - 1) * d
        trim = 0
        if left == span and right == 0:
            padding = "causal"
        elif left == span and right == span and s == 1 and a.lpad == 0:
            padding, trim = "causal", span  # padded both sides; a Slice must drop the tail
        elif left == right == span // 2 and span % 2 == 0 and s == 1:
            padding = "same"
        elif left == right == 0:
            padding = "valid"
        else:
            raise _refuse(
                node,
                f"pads ({left}, {right}) match neither causal, 'same' nor 'valid'",
                f"causal padding F.pad(x, ({span}, 0)) or padding={span // 2}",
            )
        bias = (
            self.need_const(node, node.input[2], "the bias").astype(np.float32)
            if len(node.input) > 2 and node.input[2]
            else np.zeros(out_ch, np.float32)
        )
        a2 = _replace(a, list(a.labels), list(a.sizes), lpad=0)
        self.head(node, a2)
        pos = self.add(
            Layer(
                "Conv1D",
                _keras_name(node.name or "conv1d", self.names),
                node.name,
                {
                    "filters": int(out_ch),
                    "kernel_size": int(k),
                    "strides": s,
                    "dilation_rate": d,
                    "padding": padding,
                },
                [w.transpose(2, 1, 0).copy(), bias],
            )
        )
        t_in = a.sizes[2] - a.lpad
        t_out = t_in if padding in ("causal", "same") else (t_in - span - 1) // s + 1
        if padding == "causal" and s != 1:
            t_out = (t_in - 1) // s + 1
        self.set_out(node, Act(["B", "F", "T"], [1, int(out_ch), t_out + trim], pos, trim=trim))
