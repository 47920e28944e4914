"""Per-step layers: MatMul/Gemm (+Add bias) as Dense, activations, softmax, normalizations."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.convert.onnx_import.common import Act, Layer, _attrs, _keras_name, _refuse
from edgelstm.convert.onnx_import.core import _TracerCore


class StepOps(_TracerCore):
    """MatMul, Gemm, Add, the activations, Softmax/LogSoftmax, Layer/BatchNormalization."""

    # --- per-step layers -------------------------------------------------------------------------

    def _features_last(self, node: Any, a: Act) -> None:
        f = a.axis("F")
        big = [i for i, s in enumerate(a.sizes) if s > 1 or a.labels[i] == "F"]
        if f is None or f != big[-1]:
            raise _refuse(node, f"needs the feature axis last (axes are {a.labels})")

    def op_MatMul(self, node: Any) -> None:
        a = self.act_in(node)
        w = self.need_const(node, node.input[1], "the weight")
        self._dense(node, a, w.astype(np.float32), None)

    def op_Gemm(self, node: Any) -> None:
        a = self.act_in(node)
        at = _attrs(node)
        if at.get("transA", 0):
            raise _refuse(node, "transA=1 is not supported")
        w = self.need_const(node, node.input[1], "the weight").astype(np.float32)
        if at.get("transB", 0):
            w = w.T
        w = w * float(at.get("alpha", 1.0))
        b = None
        if len(node.input) > 2 and node.input[2]:
            b = self.need_const(node, node.input[2], "the bias").astype(np.float32)
            b = np.broadcast_to(b * float(at.get("beta", 1.0)), (w.shape[1],)).copy()
        self._dense(node, a, w, b)

    def _dense(self, node: Any, a: Act, w: np.ndarray, b: np.ndarray | None) -> None:
        a = self.materialize(node, a)
        self.head(node, a)
        self._features_last(node, a)
        if w.ndim != 2 or w.shape[0] != a.sizes[a.axis("F")]:  # type: ignore[index]
            raise _refuse(
                node, f"weight of shape {w.shape} does not match {a.sizes[a.axis('F')]} features"
            )  # type: ignore[index]
        bias = np.zeros(w.shape[1], np.float32) if b is None else b
        pos = self.add(
            Layer(
                "Dense",
                _keras_name(node.name or "dense", self.names),
                node.name,
                {"units": int(w.shape[1])},
                [w, bias],
            )
        )
        sizes = list(a.sizes)
        sizes[a.axis("F")] = int(w.shape[1])  # type: ignore[index]
        self.set_out(node, Act(list(a.labels), sizes, pos, dense=pos - 1))

    def op_Add(self, node: Any) -> None:
        v0, v1 = (self.values.get(n) for n in node.input)
        a, c = (v0, v1) if isinstance(v0, Act) else (v1, v0)
        if not isinstance(c, np.ndarray) or not isinstance(a, Act):
            raise _refuse(
                node,
                "adds two tensors computed from the input (a skip connection)",
                "a single chain (no residual connections)",
            )
        if a.dense is None or a.pos != len(self.layers):
            raise _refuse(node, "adds a constant that is not the bias of a MatMul")
        dense = self.layers[a.dense]
        units = dense.weights[0].shape[1]
        try:
            bias = np.broadcast_to(c.astype(np.float32), (units,)) if c.size in (1, units) else None
        except ValueError:
            bias = None
        if bias is None or (c.ndim > 1 and c.reshape(-1).size != units):
            raise _refuse(node, f"adds a constant of shape {c.shape}, not a per-feature bias")
        dense.weights[1] = dense.weights[1] + bias
        self.set_out(node, Act(list(a.labels), list(a.sizes), a.pos, dense=a.dense))

    def _activation(self, node: Any, name: str) -> None:
        a = self.materialize(node, self.act_in(node))
        self.head(node, a)
        pos = self.add(
            Layer(
                "Activation",
                _keras_name(node.name or name, self.names),
                node.name,
                {"activation": name},
                [],
            )
        )
        self.set_out(node, Act(list(a.labels), list(a.sizes), pos))

    def op_Relu(self, node: Any) -> None:
        self._activation(node, "relu")

    def op_Sigmoid(self, node: Any) -> None:
        self._activation(node, "sigmoid")

    def op_Tanh(self, node: Any) -> None:
        self._activation(node, "tanh")

    def op_Elu(self, node: Any) -> None:
        if abs(_attrs(node).get("alpha", 1.0) - 1.0) > 1e-6:
            raise _refuse(node, "alpha != 1 is not supported", "Elu with alpha=1")
        self._activation(node, "elu")

    def op_LeakyRelu(self, node: Any) -> None:
        from edgelstm.convert.layers import supported_layers

        if "LeakyReLU" not in supported_layers():
            raise _refuse(node, "LeakyReLU is not in edgelstm's layer registry", "Relu")
        a = self.materialize(node, self.act_in(node))
        self.head(node, a)
        slope = float(_attrs(node).get("alpha", 0.01))
        pos = self.add(
            Layer(
                "LeakyReLU",
                _keras_name(node.name or "leaky_relu", self.names),
                node.name,
                {"negative_slope": slope},
                [],
            )
        )
        self.set_out(node, Act(list(a.labels), list(a.sizes), pos))

    def op_Softplus(self, node: Any) -> None:
        self._activation(node, "softplus")

    def op_Softsign(self, node: Any) -> None:
        self._activation(node, "softsign")

    def op_HardSigmoid(self, node: Any) -> None:
        at = _attrs(node)
        alpha, beta = at.get("alpha", 0.2), at.get("beta", 0.5)
        if abs(alpha - 1 / 6) < 1e-6 and abs(beta - 0.5) < 1e-6:
            self._activation(node, "hard_sigmoid")  # nn.Hardsigmoid = Keras 3's hard_sigmoid
        else:
            raise _refuse(
                node, f"alpha={alpha:g}, beta={beta:g} is not supported", "nn.Hardsigmoid"
            )

    def _softmax(self, node: Any, name: str) -> None:
        a = self.materialize(node, self.act_in(node))
        axis = _attrs(node).get("axis", -1) % len(a.labels)
        if a.labels[axis] != "F":
            raise _refuse(node, f"normalizes over the {a.labels[axis]} axis, not the features")
        self._features_last(node, a)
        self._activation(node, name)

    def op_Softmax(self, node: Any) -> None:
        self._softmax(node, "softmax")

    def op_LogSoftmax(self, node: Any) -> None:
        self._softmax(node, "log_softmax")

    def op_LayerNormalization(self, node: Any) -> None:
        from edgelstm.convert.layers import supported_layers

        a = self.materialize(node, self.act_in(node))
        self.head(node, a)
        at = _attrs(node)
        if "LayerNormalization" not in supported_layers():
            raise _refuse(
                node,
                "LayerNormalization is not in edgelstm's layer registry yet",
                "BatchNormalization (nn.BatchNorm1d) or no normalization",
            )
        if at.get("axis", -1) % len(a.labels) != a.axis("F"):
            raise _refuse(node, "normalizes over more than the feature axis")
        self._features_last(node, a)
        f = a.sizes[a.axis("F")]  # type: ignore[index]
        gamma = self.need_const(node, node.input[1], "scale").astype(np.float32).reshape(f)
        beta = (
            self.need_const(node, node.input[2], "bias").astype(np.float32).reshape(f)
            if len(node.input) > 2 and node.input[2]
            else np.zeros(f, np.float32)
        )
        pos = self.add(
            Layer(
                "LayerNormalization",
                _keras_name(node.name or "layer_norm", self.names),
                node.name,
                {"epsilon": float(at.get("epsilon", 1e-5))},
                [gamma, beta],
            )
        )
        self.set_out(node, Act(list(a.labels), list(a.sizes), pos))

    def op_BatchNormalization(self, node: Any) -> None:
        a = self.materialize(node, self.act_in(node))
        self.head(node, a)
        if len(a.labels) < 2 or a.labels[1] != "F" or a.labels[0] != "B":
            raise _refuse(
                node,
                f"normalizes axis 1, which is {a.labels[1] if len(a.labels) > 1 else '?'}, "
                "not the channels of a (batch, channels, time) tensor",
            )
        ws = [
            self.need_const(node, n, "the statistics").astype(np.float32).reshape(-1)
            for n in node.input[1:5]
        ]
        pos = self.add(
            Layer(
                "BatchNormalization",
                _keras_name(node.name or "batch_norm", self.names),
                node.name,
                {"epsilon": float(_attrs(node).get("epsilon", 1e-5))},
                ws,
            )
        )
        self.set_out(node, Act(list(a.labels), list(a.sizes), pos))
