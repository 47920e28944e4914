"""Trace an ONNX graph into a chain of Keras layers.

Every non-constant tensor is the output of the chain built so far, described by a label per ONNX
axis ('B' batch, 'T' time, 'F' features, 'D' directions, '1' a unit axis). Layout ops (Transpose,
Squeeze, Reshape, ...) only relabel; weight-carrying ops (LSTM, GRU, RNN, MatMul/Gemm, Gather on a
table, Conv, ...) append a Keras layer. Anything else is refused naming the node, its op type and
the nearest supported alternative. Constant subgraphs (the exporter's shape arithmetic for zero
initial states, pads, ...) are folded with onnx's reference evaluator at the fixed deploy shape.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError, MissingDependencyError, UnsupportedLayerError

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


class _Tracer:
    def __init__(self, model: Any, source: str, layout: str, seq_len: int) -> None:
        self.model = model
        self.source = source
        self.layout = layout  # 'BT' or 'TB': which input axis is time
        self.seq_len = seq_len
        self.layers: list[Layer] = []
        self.names: set[str] = set()
        self.values: dict[str, Any] = {}
        self.notes: list[str] = []
        self.token_input = False
        self.in_dim: int | None = None

    # --- helpers ---------------------------------------------------------------------------------

    def head(self, node: Any, act: Act) -> None:
        if act.pos != len(self.layers):
            raise _refuse(
                node,
                "uses a tensor from earlier in the graph again (a skip connection or branch); "
                "edgelstm deploys a single chain of layers",
                "a single chain (no residual/skip connections, one input, one output)",
            )
        if act.lpad or act.trim:
            raise _refuse(node, "follows a Pad/Conv whose padding is not a causal or 'same' Conv1d")

    def add(self, layer: Layer) -> int:
        self.layers.append(layer)
        return len(self.layers)

    def const(self, name: str) -> np.ndarray | None:
        v = self.values.get(name)
        return v if isinstance(v, np.ndarray) else None

    def need_const(self, node: Any, name: str, what: str) -> np.ndarray:
        v = self.const(name)
        if v is None:
            raise _refuse(
                node, f"{what} must be a constant (initializer), not computed from the input"
            )
        return v

    def materialize(self, node: Any, act: Act) -> Act:
        """Turn final states (h_n) into the chain output: the last layer with return_sequences=False."""
        if act.final is None:
            return act
        d = act.axis("D")
        labels, sizes = list(act.labels), list(act.sizes)
        if d is not None:
            if sizes[d] != 1:
                raise _refuse(
                    node,
                    "uses the stacked final states of several layers/directions; select one "
                    "(h_n[-1]) or concatenate the last layer's two directions "
                    "(torch.cat([h_n[-2], h_n[-1]], -1))",
                )
            labels[d] = "1"
        last = len(self.layers) - 1
        layer = self.layers[last] if self.layers else None
        want = [(last, 0), (last, 1)] if layer is not None and layer.bidirectional else [(last, 0)]
        if layer is None or act.final != want or act.pos != len(self.layers):
            raise _refuse(
                node,
                "uses a final hidden state other than the last recurrent layer's (both directions, "
                "forward then backward, for a bidirectional one)",
                "h_n[-1] of the last layer, or torch.cat([h_n[-2], h_n[-1]], -1) when bidirectional",
            )
        layer.cfg["return_sequences"] = False
        return Act(labels, sizes, act.pos)

    def last_step(self, node: Any, act: Act) -> None:
        """out[:, -1]: the last recurrent layer returns its last output, the per-step layers after it
        are unchanged."""
        for layer in reversed(self.layers):
            if layer.kind in ("Dense", "Activation", "LayerNormalization", "BatchNormalization"):
                continue
            if layer.kind in ("LSTM", "GRU", "SimpleRNN") and not layer.bidirectional:
                if layer.cfg.get("go_backwards"):
                    break
                layer.cfg["return_sequences"] = False
                return
            break
        raise _refuse(
            node,
            "takes the last time step of something other than a forward recurrent layer (for a "
            "bidirectional layer that mixes the forward final state with the backward first step)",
            "the final states h_n (torch.cat([h_n[-2], h_n[-1]], -1) for a bidirectional layer) or "
            "the whole sequence",
        )

    # --- constant folding ------------------------------------------------------------------------

    def fold(self, node: Any) -> None:
        from onnx.reference import ReferenceEvaluator

        ins = [self.values.get(n) if n else None for n in node.input]
        try:
            ev = ReferenceEvaluator(node)
            feeds = {n: v for n, v in zip(node.input, ins, strict=True) if n}
            outs = ev.run(None, feeds)
        except Exception as exc:
            raise _refuse(
                node, f"could not fold this constant node ({type(exc).__name__}: {exc})"
            ) from None
        for name, v in zip(node.output, outs, strict=False):
            self.values[name] = np.asarray(v)

    # --- the walk --------------------------------------------------------------------------------

    def run(self) -> tuple[Act, str]:
        g = self.model.graph
        for init in g.initializer:
            from onnx import numpy_helper

            self.values[init.name] = numpy_helper.to_array(init)
        inputs = [i for i in g.input if i.name not in self.values]
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise BadInputError(
                f"{self.source}: the graph has {len(inputs)} inputs ({names}); edgelstm deploys "
                "single-input models (export without passing h0/c0: the step model carries the state)"
            )
        if len(g.output) != 1:
            raise BadInputError(
                f"{self.source}: the graph has {len(g.output)} outputs "
                f"({', '.join(o.name for o in g.output)}); return one tensor from forward()"
            )
        x = inputs[0]
        tt = x.type.tensor_type
        rank = len(tt.shape.dim)
        import onnx

        np_type = onnx.helper.tensor_dtype_to_np_dtype(tt.elem_type)
        if np_type.kind in "iu":
            if rank != 2:
                raise BadInputError(
                    f"{self.source}: integer input '{x.name}' must be (batch, time) token ids"
                )
            self.token_input = True
            labels = ["B", "T"] if self.layout == "BT" else ["T", "B"]
            sizes = [1, self.seq_len] if self.layout == "BT" else [self.seq_len, 1]
        else:
            if rank != 3:
                raise BadInputError(
                    f"{self.source}: input '{x.name}' has rank {rank}; expected (batch, time, "
                    "features) or (time, batch, features)"
                )
            dim = tt.shape.dim[2].dim_value
            if not dim:
                raise BadInputError(
                    f"{self.source}: the feature axis of input '{x.name}' must be static"
                )
            self.in_dim = int(dim)
            labels = ["B", "T", "F"] if self.layout == "BT" else ["T", "B", "F"]
            sizes = (
                [1, self.seq_len, self.in_dim]
                if self.layout == "BT"
                else [self.seq_len, 1, self.in_dim]
            )
        self.values[x.name] = Act(labels, sizes, 0)
        live = self._live_nodes()
        for k, node in enumerate(g.node):
            if k not in live:
                continue
            ins = [self.values.get(n) for n in node.input if n]
            if node.op_type == "Constant" or all(isinstance(v, np.ndarray) for v in ins):
                self.fold(node)
                continue
            missing = [n for n in node.input if n and n not in self.values]
            if missing:
                raise _refuse(node, f"reads '{missing[0]}', which nothing computes")
            for n in node.input:
                v = self.values.get(n)
                if isinstance(v, _Poison):
                    raise _refuse(
                        v.node,
                        f"{v.what} is used (by '{node.name}'), which is not supported",
                        v.alt,
                    )
            handler = getattr(self, f"op_{node.op_type}", None)
            if handler is None:
                raise _refuse(node, "this op type is not supported")
            handler(node)
        out = self.values.get(g.output[0].name)
        if not isinstance(out, Act):
            raise BadInputError(f"{self.source}: the output does not depend on the input")
        out = self.materialize(g.node[-1], out)
        if (
            out.lpad
            or out.trim
            or "D" in [lab for lab, s in zip(out.labels, out.sizes, strict=True) if s > 1]
        ):
            raise BadInputError(
                f"{self.source}: the output '{g.output[0].name}' still has a direction axis or padding; "
                "concatenate the directions (reshape to (batch, time, 2*hidden))"
            )
        return out, x.name

    def _live_nodes(self) -> set[int]:
        """Indices of the nodes the output depends on (the exporter leaves unused h_n/c_n paths)."""
        nodes = list(self.model.graph.node)
        producer = {o: k for k, n in enumerate(nodes) for o in n.output}
        live: set[int] = set()
        stack = [self.model.graph.output[0].name]
        seen: set[str] = set()
        while stack:
            name = stack.pop()
            if name in seen or name not in producer:
                continue
            seen.add(name)
            k = producer[name]
            live.add(k)
            stack.extend(i for i in nodes[k].input if i)
        return live

    def act_in(self, node: Any, i: int = 0) -> Act:
        v = self.values.get(node.input[i])
        if not isinstance(v, Act):
            raise _refuse(node, f"input {i} is expected to come from the model input")
        return v

    def set_out(self, node: Any, act: Act, i: int = 0) -> None:
        self.values[node.output[i]] = act

    # --- layout ops ------------------------------------------------------------------------------

    def op_Shape(self, node: Any) -> None:
        a = self.act_in(node)
        at = _attrs(node)
        n = len(a.sizes)
        lo, hi = _clamp(at.get("start", 0), n), _clamp(at.get("end", n), n)
        self.values[node.output[0]] = np.asarray(a.sizes[lo:hi], np.int64)

    def op_Identity(self, node: Any) -> None:
        self.set_out(node, self.act_in(node))

    def op_Dropout(self, node: Any) -> None:
        self.set_out(node, self.act_in(node))  # inference: the identity

    def op_Transpose(self, node: Any) -> None:
        a = self.act_in(node)
        perm = _attrs(node).get("perm", list(range(len(a.labels)))[::-1])
        self.set_out(node, _replace(a, [a.labels[p] for p in perm], [a.sizes[p] for p in perm]))

    def _axes(self, node: Any, rank: int) -> list[int]:
        attrs = _attrs(node)
        if len(node.input) > 1 and node.input[1]:
            axes = [int(v) for v in self.need_const(node, node.input[1], "axes").reshape(-1)]
        else:
            axes = list(attrs.get("axes", []))
        return [ax % rank for ax in axes]

    def op_Squeeze(self, node: Any) -> None:
        a = self.act_in(node)
        axes = self._axes(node, len(a.labels)) or [i for i, s in enumerate(a.sizes) if s == 1]
        if any(a.sizes[i] != 1 for i in axes):
            raise _refuse(node, "squeezes an axis that is not of size 1")
        keep = [i for i in range(len(a.labels)) if i not in axes]
        self.set_out(node, _replace(a, [a.labels[i] for i in keep], [a.sizes[i] for i in keep]))

    def op_Unsqueeze(self, node: Any) -> None:
        a = self.act_in(node)
        rank = len(a.labels) + len(self._axes(node, len(a.labels) + 1))
        axes = sorted(self._axes(node, rank))
        labels, sizes = list(a.labels), list(a.sizes)
        for ax in axes:
            labels.insert(ax, "1")
            sizes.insert(ax, 1)
        self.set_out(node, _replace(a, labels, sizes))

    def op_Flatten(self, node: Any) -> None:
        a = self.act_in(node)
        axis = _attrs(node).get("axis", 1) % max(len(a.labels), 1)
        lead = int(np.prod(a.sizes[:axis]))
        self._reshape(node, a, [lead, int(np.prod(a.sizes[axis:]))])

    def op_Reshape(self, node: Any) -> None:
        a = self.act_in(node)
        shape = [int(v) for v in self.need_const(node, node.input[1], "the target shape")]
        shape = [a.sizes[i] if s == 0 and i < len(a.sizes) else s for i, s in enumerate(shape)]
        if -1 in shape:
            known = int(np.prod([s for s in shape if s != -1]))
            shape[shape.index(-1)] = int(np.prod(a.sizes)) // max(known, 1)
        self._reshape(node, a, shape)

    def _reshape(self, node: Any, a: Act, shape: list[int]) -> None:
        src = [(lab, s) for lab, s in zip(a.labels, a.sizes, strict=True) if s > 1]
        labels: list[str] = []
        final = a.final
        j = 0
        flatten = False
        for s in shape:
            if s == 1:
                labels.append("B" if "B" in a.labels and "B" not in labels else "1")
                continue
            group = []
            prod = 1
            while j < len(src) and prod < s:
                group.append(src[j][0])
                prod *= src[j][1]
                j += 1
            if prod != s:
                raise _refuse(node, f"reshape to {shape} splits an axis of {a.sizes}")
            if len(group) == 1:
                labels.append(group[0])
            elif group == ["D", "F"]:
                labels.append("F")  # the directions side by side: Keras' concat merge
            elif group == ["T", "F"]:
                labels.append("F")
                flatten = True
            else:
                raise _refuse(node, f"reshape merges the axes {group} (from {a.labels})")
        if "D" in labels and final is not None and a.axis("D") is not None:
            pass  # still stacked
        if flatten:
            self.head(node, a)
            a = self.materialize(node, a)
            pos = self.add(
                Layer("Flatten", _keras_name(node.name or "flatten", self.names), node.name, {}, [])
            )
            self.set_out(node, Act(labels, [max(s, 1) for s in shape], pos))
            return
        self.set_out(node, _replace(a, labels, list(shape)))

    # --- selection -------------------------------------------------------------------------------

    def op_Gather(self, node: Any) -> None:
        data = self.values.get(node.input[0])
        if isinstance(data, np.ndarray):
            return self._embedding(node, data)
        a = self.act_in(node)
        idx = self.need_const(node, node.input[1], "the gather index")
        axis = _attrs(node).get("axis", 0) % len(a.labels)
        if idx.size != 1:
            raise _refuse(node, "gathers several entries of an axis")
        i = int(idx.reshape(-1)[0]) % a.sizes[axis]
        labels = [lab for k, lab in enumerate(a.labels) if k != axis]
        sizes = [s for k, s in enumerate(a.sizes) if k != axis]
        if idx.ndim == 1:
            labels.insert(axis, "1")
            sizes.insert(axis, 1)
        self._select(node, a, axis, i, labels, sizes)

    def op_Slice(self, node: Any) -> None:
        a = self.act_in(node)
        starts = self.need_const(node, node.input[1], "starts").reshape(-1)
        ends = self.need_const(node, node.input[2], "ends").reshape(-1)
        axes = (
            self.need_const(node, node.input[3], "axes").reshape(-1)
            if len(node.input) > 3 and node.input[3]
            else np.arange(len(starts))
        )
        steps = (
            self.need_const(node, node.input[4], "steps").reshape(-1)
            if len(node.input) > 4 and node.input[4]
            else np.ones(len(starts), np.int64)
        )
        out = a
        for st, en, ax, sp in zip(starts, ends, axes, steps, strict=True):
            ax = int(ax) % len(a.labels)
            n = out.sizes[ax]
            lo, hi = _clamp(int(st), n), _clamp(int(en), n)
            if int(sp) != 1:
                raise _refuse(node, "slices with a step other than 1")
            if lo == 0 and hi == n:
                continue
            lab = out.labels[ax]
            if lab == "T" and out.trim and lo == 0 and hi == n - out.trim:
                sizes = list(out.sizes)
                sizes[ax] = hi
                out = _replace(out, list(out.labels), sizes, trim=0)
            elif lab in ("T", "D") and hi - lo == 1:
                labels, sizes = list(out.labels), list(out.sizes)
                labels[ax], sizes[ax] = "1", 1
                self._select(node, out, ax, lo, labels, sizes)
                out = self.values[node.output[0]]
            else:
                raise _refuse(node, f"slices {lab} axis [{lo}:{hi}] of {n}")
        self.set_out(node, out)

    def _select(
        self, node: Any, a: Act, axis: int, i: int, labels: list[str], sizes: list[int]
    ) -> None:
        lab = a.labels[axis]
        if lab == "D" and a.final is not None:
            self.set_out(node, Act(labels, sizes, a.pos, final=[a.final[i]]))
        elif lab == "T":
            if i != a.sizes[axis] - 1:
                raise _refuse(node, f"selects time step {i}; only the last one is supported")
            self.head(node, a)
            self.last_step(node, a)
            self.set_out(node, Act(labels, sizes, a.pos, dense=None))
        elif a.sizes[axis] == 1:
            self.set_out(node, _replace(a, labels, sizes))
        else:
            raise _refuse(node, f"selects entry {i} of the {lab} axis")

    def op_Concat(self, node: Any) -> None:
        parts = [self.values.get(n) for n in node.input]
        if not all(isinstance(p, Act) and p.final is not None for p in parts):
            raise _refuse(
                node,
                "concatenates tensors computed from the input (a branch)",
                "torch.cat of final states h_n (of the last layer's directions)",
            )
        first = parts[0]
        axis = _attrs(node)["axis"] % len(first.labels)
        lab = first.labels[axis]
        final = [e for p in parts for e in p.final]  # type: ignore[union-attr]
        sizes = list(first.sizes)
        sizes[axis] = sum(p.sizes[axis] for p in parts)  # type: ignore[union-attr]
        labels = list(first.labels)
        if lab == "1" and first.sizes[axis] == 1:
            labels[axis] = "D"
        self.set_out(node, Act(labels, sizes, max(p.pos for p in parts), final=final))  # type: ignore[union-attr]

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


# --- building the Keras model ------------------------------------------------------------------


def _build_keras(tracer: _Tracer) -> Any:
    from edgelstm._tf import import_tf

    import_tf()
    import keras

    t = tracer.seq_len
    if tracer.token_input:
        x = keras.Input(shape=(t,), dtype="int32", name="x")
    else:
        x = keras.Input(shape=(t, tracer.in_dim), name="x")
    y = x
    for layer in tracer.layers:
        c = layer.cfg
        if layer.kind in ("LSTM", "GRU", "SimpleRNN"):
            kw: dict[str, Any] = {
                "return_sequences": c["return_sequences"],
                "activation": c["activation"],
            }
            if layer.kind != "SimpleRNN":
                kw["recurrent_activation"] = c["recurrent_activation"]
            if layer.kind == "GRU":
                kw["reset_after"] = c["reset_after"]
            if c.get("go_backwards"):
                kw["go_backwards"] = True
            cls = getattr(keras.layers, layer.kind)
            if layer.bidirectional:
                k = keras.layers.Bidirectional(
                    cls(c["units"], **kw), merge_mode="concat", name=layer.name
                )
                y = k(y)
                k.set_weights([*layer.weights, *layer.backward_weights])
            else:
                k = cls(c["units"], name=layer.name, **kw)
                y = k(y)
                k.set_weights(layer.weights)
            continue
        if layer.kind == "Dense":
            k = keras.layers.Dense(c["units"], name=layer.name)
        elif layer.kind == "Activation":
            k = keras.layers.Activation(c["activation"], name=layer.name)
        elif layer.kind == "Embedding":
            k = keras.layers.Embedding(c["input_dim"], c["output_dim"], name=layer.name)
        elif layer.kind == "Conv1D":
            k = keras.layers.Conv1D(
                c["filters"],
                c["kernel_size"],
                strides=c["strides"],
                dilation_rate=c["dilation_rate"],
                padding=c["padding"],
                name=layer.name,
            )
        elif layer.kind == "LayerNormalization":
            k = keras.layers.LayerNormalization(epsilon=c["epsilon"], name=layer.name)
        elif layer.kind == "BatchNormalization":
            k = keras.layers.BatchNormalization(epsilon=c["epsilon"], name=layer.name)
        elif layer.kind == "LeakyReLU":
            k = keras.layers.LeakyReLU(negative_slope=c["negative_slope"], name=layer.name)
        elif layer.kind == "Flatten":
            k = keras.layers.Flatten(name=layer.name)
        else:  # pragma: no cover - every Layer kind made above is listed
            raise AssertionError(layer.kind)
        y = k(y)
        if layer.weights:
            k.set_weights(layer.weights)
    return keras.Model(x, y, name="onnx_import")


# --- the reference ------------------------------------------------------------------------------


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
