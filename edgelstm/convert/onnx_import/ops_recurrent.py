"""The recurrent ops (LSTM, GRU, RNN) as Keras layers, their weights, and the notes on their
states.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.convert.onnx_import.common import (
    _RNN_ACT,
    Act,
    Layer,
    _attrs,
    _keras_name,
    _Poison,
    _refuse,
)
from edgelstm.convert.onnx_import.core import _TracerCore


class RecurrentOps(_TracerCore):
    """LSTM, GRU, RNN."""

    # --- recurrent layers ------------------------------------------------------------------------

    def op_LSTM(self, node: Any) -> None:
        self._recurrent(node, "LSTM", 4)

    def op_GRU(self, node: Any) -> None:
        self._recurrent(node, "GRU", 3)

    def op_RNN(self, node: Any) -> None:
        self._recurrent(node, "SimpleRNN", 1)

    def _recurrent(self, node: Any, kind: str, gates: int) -> None:
        a = self.materialize(node, self.act_in(node))
        self.head(node, a)
        at = _attrs(node)
        layout = int(at.get("layout", 0))
        want = ["T", "B", "F"] if layout == 0 else ["B", "T", "F"]
        if a.labels != want:
            raise _refuse(node, f"input axes {a.labels} do not match layout={layout} ({want})")
        direction = at.get("direction", "forward")
        dirs = 2 if direction == "bidirectional" else 1
        for bad, why in (
            ("clip", "cell clipping (clip)"),
            ("input_forget", "coupled input/forget gates"),
        ):
            if at.get(bad):
                raise _refuse(
                    node,
                    f"{bad}={at[bad]}: {why} has no Keras/TFLite equivalent",
                    f"the same op without {bad}",
                )
        for bad in ("activation_alpha", "activation_beta"):
            if at.get(bad):
                raise _refuse(node, f"{bad} is not supported", "default activations")
        w = self.need_const(node, node.input[1], "W").astype(np.float32)
        r = self.need_const(node, node.input[2], "R").astype(np.float32)
        hidden = int(at.get("hidden_size", r.shape[-1]))
        feat = a.sizes[2]
        if w.shape != (dirs, gates * hidden, feat) or r.shape != (dirs, gates * hidden, hidden):
            raise _refuse(
                node,
                f"W {w.shape} / R {r.shape} do not match {dirs} direction(s), "
                f"hidden_size={hidden}, {feat} input features",
            )
        opt = list(node.input) + [""] * 8
        b = (
            self.need_const(node, opt[3], "B").astype(np.float32)
            if opt[3]
            else np.zeros((dirs, 2 * gates * hidden), np.float32)
        )
        if opt[4]:
            lens = self.const(opt[4])
            if lens is None or np.any(lens != self.seq_len):
                raise _refuse(
                    node,
                    "sequence_lens varies per batch entry (padded batches)",
                    "fixed-length sequences (pack_padded_sequence is not supported)",
                )
        for k, role in ((5, "initial_h"), (6, "initial_c")):
            if opt[k]:
                init = self.values.get(opt[k])
                if not isinstance(init, np.ndarray):
                    raise _refuse(
                        node,
                        f"{role} is computed from a graph input; the deployed model "
                        "starts from zero state (the step model takes the state as input)",
                        f"export without passing {role}",
                    )
                if np.any(init != 0):
                    raise _refuse(
                        node,
                        f"{role} is a non-zero constant; the deployed model starts from zero state",
                        f"a zero {role} (the step model's state inputs)",
                    )
        if kind == "LSTM" and opt[7]:
            p = self.const(opt[7])
            if p is None or np.any(p != 0):
                raise _refuse(
                    node,
                    "peepholes (input P) have no Keras/TFLite fused-LSTM equivalent",
                    "an LSTM without peepholes",
                )
        acts = at.get("activations")
        defaults = {
            "LSTM": ["Sigmoid", "Tanh", "Tanh"],
            "GRU": ["Sigmoid", "Tanh"],
            "SimpleRNN": ["Tanh"],
        }[kind]
        acts = list(acts) if acts else defaults * dirs
        per = len(defaults)
        if len(acts) != per * dirs or any(acts[i] != acts[i % per] for i in range(len(acts))):
            raise _refuse(
                node, f"activations={acts}: both directions must use the same activations"
            )
        acts = acts[:per]
        for name in acts:
            if name not in _RNN_ACT or _RNN_ACT[name] is None:
                raise _refuse(node, f"activation {name} is not supported", "Sigmoid, Tanh or Relu")
        cfg: dict[str, Any] = {"units": hidden, "return_sequences": True}
        if kind == "LSTM":
            if acts[1] != acts[2]:
                raise _refuse(
                    node,
                    f"activations {acts}: the cell input and output activations differ",
                    "g == h (Keras uses one activation for both)",
                )
            cfg |= {"recurrent_activation": _RNN_ACT[acts[0]], "activation": _RNN_ACT[acts[1]]}
        elif kind == "GRU":
            cfg |= {
                "recurrent_activation": _RNN_ACT[acts[0]],
                "activation": _RNN_ACT[acts[1]],
                "reset_after": bool(at.get("linear_before_reset", 0)),
            }
        else:
            cfg |= {"activation": _RNN_ACT[acts[0]]}
        if direction == "reverse":
            cfg["go_backwards"] = True
        weights = [_keras_weights(kind, w[d], r[d], b[d], hidden, cfg) for d in range(dirs)]
        layer = Layer(
            kind,
            _keras_name(node.name or kind.lower(), self.names),
            node.name,
            cfg,
            weights[0],
            bidirectional=dirs == 2,
            backward_weights=weights[1] if dirs == 2 else [],
        )
        pos = self.add(layer)
        idx = pos - 1
        t = self.seq_len
        y_labels = ["T", "D", "B", "F"] if layout == 0 else ["B", "T", "D", "F"]
        y_sizes = [t, dirs, 1, hidden] if layout == 0 else [1, t, dirs, hidden]
        h_labels = ["D", "B", "F"] if layout == 0 else ["B", "D", "F"]
        h_sizes = [dirs, 1, hidden] if layout == 0 else [1, dirs, hidden]
        finals = [(idx, d) for d in range(dirs)]
        outs = [*list(node.output), "", "", ""]
        if outs[0]:
            if direction == "reverse":
                self.values[outs[0]] = _Poison(
                    node,
                    "the output sequence Y of a reverse-direction "
                    "layer (Keras returns it in reversed order)",
                    "its final state Y_h, or direction=bidirectional",
                )
            else:
                self.values[outs[0]] = Act(y_labels, y_sizes, pos)
        if outs[1]:
            self.values[outs[1]] = Act(h_labels, h_sizes, pos, final=finals)
        if kind == "LSTM" and outs[2]:
            self.values[outs[2]] = _Poison(
                node, "the final cell state Y_c", "the outputs Y or Y_h (the step model returns c)"
            )


def _state_notes(layers: list[Layer]) -> list[str]:
    """Which step-model state inputs are which PyTorch h0/c0 entries (state{k} counts the layers
    that carry state, as the step model does; h0[j] counts the ONNX ops of one nn.LSTM/GRU/RNN)."""
    notes = []
    k = 0
    per_module: dict[str, int] = {}
    for layer in layers:
        if layer.kind == "Conv1D":
            if layer.cfg["padding"] == "causal" and layer.cfg["kernel_size"] > 1:
                k += 1
            continue
        if layer.kind not in ("LSTM", "GRU", "SimpleRNN"):
            continue
        module = layer.node.rsplit("/", 1)[0].strip("/")  # '' when the exporter named no module
        j = per_module.get(module, 0)
        per_module[module] = j + 1
        dirs = 2 if layer.bidirectional else 1
        what = f"{layer.name}: ONNX node '{layer.node}' ({layer.kind}, {layer.cfg['units']} units"
        what += ", bidirectional)" if dirs == 2 else ")"
        if dirs == 1:
            roles = ["h", "c"] if layer.kind == "LSTM" else ["h"]
            torch_names = [f"{r}0[{j}]" for r in roles]
            what += (
                f"; step-model state inputs {', '.join(f'state{k}_{r}' for r in roles)} = "
                f"PyTorch {', '.join(torch_names)}"
                + (f" of '{module}'" if module else " (counting recurrent ops in graph order)")
            )
        notes.append(what)
        k += 1
    return notes


def _keras_weights(
    kind: str, w: np.ndarray, r: np.ndarray, b: np.ndarray, h: int, cfg: dict[str, Any]
) -> list[np.ndarray]:
    """One direction's ONNX W [G*H, F], R [G*H, H], B [2*G*H] as Keras kernel/recurrent/bias."""
    wb, rb = b[: b.size // 2], b[b.size // 2 :]
    if kind == "LSTM":
        # ONNX gate blocks i, o, f, c; Keras i, f, c, o.
        order = np.concatenate([np.arange(g * h, (g + 1) * h) for g in (0, 2, 3, 1)])
        return [w[order].T.copy(), r[order].T.copy(), (wb + rb)[order].copy()]
    if kind == "GRU":
        # ONNX and Keras both order the gates z, r, h. linear_before_reset=1 is Keras'
        # reset_after=True: the recurrent bias stays inside r * (h R + Rb).
        bias = np.stack([wb, rb]) if cfg["reset_after"] else wb + rb
        return [w.T.copy(), r.T.copy(), bias.astype(np.float32)]
    return [w.T.copy(), r.T.copy(), (wb + rb).copy()]
