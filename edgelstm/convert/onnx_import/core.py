"""The tracer's core: the walk over the ONNX graph (constant folding, dispatch to op_<OpType>
handlers), the chain it builds, and the helpers every op family uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.convert.onnx_import.common import Act, Layer, _Poison, _refuse
from edgelstm.errors import BadInputError


class _TracerCore:
    """State and helpers of a trace; `run` walks the graph and calls op_<OpType> handlers."""

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
