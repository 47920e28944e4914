"""Lower a step .tflite to a static schedule of C kernel calls.

`lower(graph, name, layers)` walks the operators in order; a handler per TFLite builtin op
precomputes the kernel parameters (fixed-point multipliers, folded biases, activation tables,
re-ordered weights) and returns C statements. Layout-only ops (RESHAPE, a SPLIT along the outer
axis) become views of their input, so they cost nothing. Activations live in one static arena
planned by liveness (first fit); the recurrent state lives in the caller's struct.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from edgelstm.codegen.engine import quant
from edgelstm.codegen.engine.graph import Graph, Op, Tensor, data_io
from edgelstm.codegen.engine.lower import arith, cell, elementwise, fc, layout, logic, reduce
from edgelstm.codegen.engine.lower.program import (
    ALIAS_OPS,
    ARENA_ALIGN,
    INPLACE_OPS,
    PRE_ALIGN,
    CStruct,
    Program,
    _c_float_list,
    _c_int_list,
    _is_int8,
)
from edgelstm.errors import BadInputError, UnsupportedLayerError
from edgelstm.types import LayerSummary


class Lowering:
    """State of one lowering pass (see module docstring)."""

    def __init__(
        self,
        graph: Graph,
        name: str,
        layers: Sequence[LayerSummary],
        rounding: str = "tflm",
        isa: str = "dsp",
        split_input: bool = False,
        fuse_fc_add: bool = False,
    ) -> None:
        self.g = graph
        # an int8 FC read only by an ADD with fused tables (an LSTM's recurrent FC and its gates)
        # becomes one el_fc_s8_fast_add_lut call: FC op index -> ADD op index
        self.fuse_fc_add = fuse_fc_add
        self.fc_into_add: dict[int, int] = {}
        self.fc_deferred: dict[int, tuple[str, str]] = {}  # FC output -> (its args, its call)
        # hoist the state-independent ops into <name>_step_input (see Program.body_input)
        self.split_input = split_input
        self.input_ops: set[int] = set()  # op indices that do not depend on the state
        self.producer: dict[int, int] = {}  # tensor -> index of the op that writes it
        self.pre_off: dict[int, int] = {}  # root tensor -> byte offset in the per-step buffer
        # int8 FC weight layout: "dsp" (row pairs for SMLAD, portable C elsewhere) or "mve"
        # (16-column row tiles for Helium's VMLADAVA; also runs as portable C)
        self.isa = isa
        # int8 FULLY_CONNECTED requantization: "tflm" = TFLite Micro's reference kernels
        # (MultiplyByQuantizedMultiplier, two roundings), "litert-ref" = LiteRT BUILTIN_REF (one)
        self.single_round = rounding == "litert-ref"
        self.name = name
        self.layers = layers
        self.prog = Program()
        self.views: dict[int, tuple[int, int]] = {}  # tensor -> (root tensor, byte offset)
        self.arena_off: dict[int, int] = {}
        self.const_names: dict[int, str] = {}
        self.dedup: dict[tuple[str, str, bytes], str] = {}
        self.x_index = graph.inputs.get("x", -1)
        # input tensor -> its element offset in the x buffer (several inputs are packed in it)
        self.x_roots = {self.x_index: 0} if self.x_index >= 0 else {}
        if self.x_index < 0:
            off = 0
            for nm in data_io(graph)[0]:
                self.x_roots[graph.inputs[nm]] = off
                off += graph.tensors[graph.inputs[nm]].numel
        self.state_inputs = {
            idx: nm for nm, idx in graph.inputs.items() if nm != "x" and nm.startswith("state")
        }
        # int8 ADD -> SPLIT -> one in-place LOGISTIC/TANH per part (an LSTM's gates): the ADD
        # applies the tables as it writes, the activation ops become no-ops
        self.lut_after: dict[int, list[Op]] = {}
        self.lut_fused: set[int] = set()
        # int8 LSTM cells run as one kernel at their gate ADD (cell.match_cells); their other
        # ops emit nothing and their intermediate tensors get no arena space
        self.cells: dict[int, cell.LstmCell] = {}
        self.cell_fused: set[int] = set()
        self.cell_internal: set[int] = set()

    # -- errors -------------------------------------------------------------------------------

    def layer_of(self, op: Op) -> str:
        """Best guess of the Keras layer an op belongs to (tensor names carry layer names)."""
        names = [self.g.tensors[i].name for i in op.outputs + op.inputs if i >= 0]
        layer_names = [x.name for x in self.layers if x.name]
        for layer in sorted(layer_names, key=len, reverse=True):
            for n in names:
                parts = n.replace(";", "/").replace(":", "/").split("/")
                if layer in parts:
                    return layer
        # converted tensor names rarely keep layer names: match an activation op to the layer
        # whose (recurrent) activation it implements
        act = op.name.lower()
        hits = [
            x.name
            for x in self.layers
            if act in {str(v).lower() for k, v in (x.details or {}).items() if "activation" in k}
            or x.kind.lower() == act
        ]
        return ", ".join(hits)

    def unsupported(self, op: Op, why: str = "") -> UnsupportedLayerError:
        layer = self.layer_of(op)
        out = self.g.tensors[op.outputs[0]].name if op.outputs else "?"
        where = f"layer '{layer}' (tensor '{out}')" if layer else f"output tensor '{out}'"
        detail = f" ({why})" if why else ""
        return UnsupportedLayerError(
            f"the C engine has no kernel for TFLite op {op.name}{detail} in {where}"
        )

    # -- tensors ------------------------------------------------------------------------------

    def t(self, idx: int) -> Tensor:
        return self.g.tensors[idx]

    def root(self, idx: int) -> tuple[int, int]:
        off = 0
        while idx in self.views:
            idx, o = self.views[idx]
            off += o
        return idx, off

    def const_ref(self, idx: int) -> str:
        """A constant tensor as a C array (emitted once, in its own dtype)."""
        if idx not in self.const_names:
            t = self.t(idx)
            assert t.data is not None
            # add_const may hand back an identical array emitted before under another name
            self.const_names[idx] = self.add_const(
                t.ctype, f"{self.name}_c{idx}", t.data, f"'{t.name}' {t.shape}"
            )
        return self.const_names[idx]

    def add_const(self, ctype: str, cname: str, values: np.ndarray, comment: str = "") -> str:
        arr = np.asarray(values).reshape(-1)
        key = (ctype, arr.dtype.str, arr.tobytes())
        if key in self.dedup:  # e.g. the LOGISTIC tables of one layer's gates are identical
            return self.dedup[key]
        self.dedup[key] = cname
        body = _c_float_list(arr) if ctype == "float" else _c_int_list(arr)
        note = f"/* {comment} */\n" if comment else ""
        align = f"{self.name.upper()}_ALIGN "
        self.prog.consts.append(
            f"{note}{align}static const {ctype} {cname}[{max(arr.size, 1)}] = {{\n    {body}\n}};"
        )
        itemsize = {"float": 4, "int32_t": 4, "int64_t": 8, "int16_t": 2}.get(ctype, 1)
        self.prog.const_bytes += arr.size * itemsize
        return cname

    def add_struct(self, cname: str, params: CStruct) -> str:
        """A kernel's parameter struct as a constant; returns its name."""
        self.prog.consts.append(params.definition(cname))
        self.prog.const_bytes += params.nbytes
        return cname

    def ref(self, idx: int, const: bool = False) -> str:
        """C expression for a typed pointer to tensor `idx`'s data."""
        t = self.t(idx)
        root, off = self.root(idx)
        rt = self.t(root)
        if off % t.itemsize:
            raise BadInputError(f"tensor '{t.name}' is misaligned in its buffer")
        elem = off // t.itemsize
        qual = "const " if const else ""
        if rt.data is not None:
            base = self.const_ref(root)
            return f"({base} + {elem})" if elem else base
        if root in self.x_roots:
            elem += self.x_roots[root]
            return f"(x + {elem})" if elem else "x"
        if root in self.state_inputs:
            field_ = self.state_inputs[root]
            return f"(st->{field_} + {elem})" if elem else f"st->{field_}"
        if root in self.pre_off:
            return f"(({qual}{t.ctype} *)(pre + {self.pre_off[root] + off}))"
        if root not in self.arena_off:
            raise BadInputError(f"tensor '{rt.name}' is read before it is written")
        byte = self.arena_off[root] + off
        return f"(({qual}{t.ctype} *)({self.name}_arena + {byte}))"

    # -- planning -----------------------------------------------------------------------------

    def plan_input_ops(self) -> None:
        """The ops that read no recurrent state, directly or through other ops (split_input)."""
        for op in self.g.ops:
            for o in op.outputs:
                self.producer[o] = op.index
        if not self.split_input:
            return
        on_state = set(self.state_inputs)
        for op in self.g.ops:  # the ops are in execution (topological) order
            if any(i in on_state for i in op.inputs if i >= 0):
                on_state.update(op.outputs)
            else:
                self.input_ops.add(op.index)
        if len(self.input_ops) == len(self.g.ops):
            self.input_ops.clear()  # no recurrent part (no state): nothing to split

    def _hoisted(self, idx: int) -> bool:
        """Tensor `idx` is written by a state-independent op (so by <name>_step_input)."""
        return self.producer.get(idx, -1) in self.input_ops

    def plan_pre(self) -> None:
        """Place in the per-step buffer every hoisted result the recurrent part reads (and the
        graph outputs that are hoisted): by root, after views, each at a PRE_ALIGN offset."""
        if not self.input_ops:
            return
        needed = [
            i
            for op in self.g.ops
            if op.index not in self.input_ops
            for i in op.inputs
            if i >= 0 and self._hoisted(i)
        ]
        needed += [i for i in self.g.outputs.values() if self._hoisted(i)]
        top = 0
        for idx in needed:
            root, _ = self.root(idx)
            if root in self.pre_off or self.t(root).data is not None or root in self.x_roots:
                continue
            self.pre_off[root] = top
            top += -(-self.t(root).nbytes // PRE_ALIGN) * PRE_ALIGN
        self.prog.pre_bytes = top
        if not top:
            self.input_ops.clear()  # only views of x or constants: nothing worth a split

    def plan_views(self) -> None:
        for op in self.g.ops:
            if op.name in ALIAS_OPS and self.t(op.outputs[0]).dtype == self.t(op.inputs[0]).dtype:
                self.views[op.outputs[0]] = (op.inputs[0], 0)
            elif op.name in ("SPLIT", "SPLIT_V"):
                data_idx, axis_idx = layout.split_operands(op)
                self._split_views(op, self.t(axis_idx), data_idx)
            elif op.name == "QUANTIZE" and self._identity_requant(op):
                self.views[op.outputs[0]] = (op.inputs[0], 0)
        self.cells = cell.match_cells(self)
        for c in self.cells.values():
            self.cell_fused.update(c.fused)
            self.cell_internal.update(c.internal)
        self._inplace_views()

    def _identity_requant(self, op: Op) -> bool:
        """An int8 -> int8 QUANTIZE whose table is the identity (scales a rounding apart, as a
        state's copy): a view of its input, when that lives in the arena."""
        x, y = self.t(op.inputs[0]), self.t(op.outputs[0])
        root, _ = self.root(op.inputs[0])
        if not (_is_int8(x) and _is_int8(y)) or x.zp != y.zp:
            return False
        if self.t(root).data is not None or root in self.x_roots or root in self.state_inputs:
            return False
        m, s = quant.quantize_multiplier(x.scale / y.scale)
        table = quant.requant_table(x.zp, y.zp, m, s)
        return bool((table == np.arange(256, dtype=np.uint8).view(np.int8)).all())

    def _inplace_views(self) -> None:
        """Let an elementwise op write over an input that dies with it (same size and dtype)."""
        n_ops = len(self.g.ops)
        last: dict[int, int] = {}

        def touch(idx: int, when: int) -> None:
            while True:  # a use of a view is a use of everything it views
                last[idx] = max(last.get(idx, -1), when)
                if idx not in self.views:
                    return
                idx = self.views[idx][0]

        for op in self.g.ops:
            for i in op.inputs:
                if i >= 0:
                    touch(i, op.index)
        for idx in self.g.outputs.values():
            touch(idx, n_ops)
        for op in self.g.ops:
            if op.name not in INPLACE_OPS or not op.outputs or op.outputs[0] in self.views:
                continue
            if op.index in self.cell_fused:
                continue
            y = self.t(op.outputs[0])
            for i in op.inputs:
                if i < 0:
                    continue
                t = self.t(i)
                root, _ = self.root(i)
                if (
                    t.dtype != y.dtype
                    or t.numel != y.numel
                    or last.get(i) != op.index
                    or self.t(root).data is not None
                    or root in self.x_roots
                    or root in self.state_inputs
                    # the per-step buffer is read-only to the recurrent part
                    or (op.index not in self.input_ops and self._hoisted(root))
                ):
                    continue
                self.views[op.outputs[0]] = (i, 0)
                # the output's later uses now keep the input's buffer alive
                break

    def _split_views(self, op: Op, axis_t: Tensor, data_idx: int) -> None:
        data = self.t(data_idx)
        if axis_t.data is None:
            raise self.unsupported(op, "non-constant axis")
        axis = int(np.asarray(axis_t.data).reshape(-1)[0]) % max(len(data.shape), 1)
        outer, _ = layout.outer_inner(data.shape, axis)
        if outer != 1:
            return  # copied by the handler instead
        off = 0
        for o in op.outputs:
            self.views[o] = (data_idx, off)
            off += self.t(o).nbytes

    def plan_arena(self) -> None:
        """First-fit allocation of every non-view, non-input, non-constant tensor by liveness."""
        first: dict[int, int] = {}
        last: dict[int, int] = {}
        n_ops = len(self.g.ops)
        for op in self.g.ops:
            for i in op.outputs:
                r, _ = self.root(i)
                first.setdefault(r, op.index)
                last[r] = max(last.get(r, op.index), op.index)
            for i in op.inputs:
                if i >= 0:
                    r, _ = self.root(i)
                    last[r] = max(last.get(r, op.index), op.index)
        for idx in self.g.outputs.values():  # copied out after the last op
            r, _ = self.root(idx)
            last[r] = n_ops
        for c in self.cells.values():  # the fused cell writes its outputs at the gate ADD
            for o in (c.cell_add.outputs[0], c.mul_oh.outputs[0]):
                r, _ = self.root(o)
                first[r] = min(first[r], c.root.index)
        roots = [
            r
            for r in first
            if self.t(r).data is None
            and r not in self.x_roots
            and r not in self.state_inputs
            and r not in self.pre_off
            and r not in self.cell_internal
        ]
        roots.sort(key=lambda r: (-self.t(r).nbytes, first[r], r))
        placed: list[tuple[int, int, int, int]] = []  # (start, end, first, last)
        top = 0
        for r in roots:
            size = -(-self.t(r).nbytes // ARENA_ALIGN) * ARENA_ALIGN
            busy = sorted((s, e) for s, e, f, la in placed if not (la < first[r] or last[r] < f))
            pos = 0
            for s, e in busy:
                if pos + size <= s:
                    break
                pos = max(pos, e)
            self.arena_off[r] = pos
            placed.append((pos, pos + size, first[r], last[r]))
            top = max(top, pos + size)
        self.prog.arena_bytes = top

    # -- emission -----------------------------------------------------------------------------

    def plan_lut_fusion(self) -> None:
        """Find ADD -> SPLIT (views) -> LOGISTIC/TANH (in place) chains (see __init__)."""
        users: dict[int, list[Op]] = {}
        for op in self.g.ops:
            for i in op.inputs:
                if i >= 0:
                    users.setdefault(i, []).append(op)
        outputs = set(self.g.outputs.values())
        for op in self.g.ops:
            if op.name != "ADD" or not _is_int8(self.t(op.outputs[0])):
                continue
            y = op.outputs[0]
            split = users.get(y, [])
            if len(split) != 1 or split[0].name not in ("SPLIT", "SPLIT_V") or y in outputs:
                continue
            parts = split[0].outputs
            if not all(self.views.get(o, (None,))[0] == y for o in parts):
                continue
            parts = sorted(parts, key=lambda o: self.views[o][1])
            sizes = {self.t(o).numel for o in parts}
            offsets = [self.views[o][1] for o in parts]
            if len(sizes) != 1 or offsets != [
                k * self.t(parts[0]).nbytes for k in range(len(parts))
            ]:
                continue
            acts = []
            for o in parts:
                u = users.get(o, [])
                if (
                    len(u) != 1
                    or u[0].name not in ("LOGISTIC", "TANH")
                    or o in outputs
                    or self.views.get(u[0].outputs[0]) != (o, 0)
                    or not _is_int8(self.t(u[0].outputs[0]))
                ):
                    break
                acts.append(u[0])
            else:
                self.lut_after[op.index] = acts
                self.lut_fused.update(a.index for a in acts)

    def plan_fc_add_fusion(self) -> None:
        """Find int8 FC -> ADD-with-tables pairs (see __init__); after plan_lut_fusion."""
        if not self.fuse_fc_add:
            return
        readers: dict[int, list[int]] = {}
        for op in self.g.ops:
            for i in op.inputs:
                if i >= 0:
                    readers.setdefault(i, []).append(op.index)
        outputs = set(self.g.outputs.values())
        for add in self.lut_after:
            a = self.g.ops[add]
            for i in a.inputs:
                f = self.g.ops[self.producer[i]] if i in self.producer else None
                if (
                    f is not None
                    and f.name == "FULLY_CONNECTED"
                    and _is_int8(self.t(i))
                    and readers.get(i) == [add]
                    and i not in outputs
                    and (f.index in self.input_ops) == (add in self.input_ops)
                ):
                    self.fc_into_add[f.index] = add
                    break

    def run(self) -> Program:
        self.plan_input_ops()
        self.plan_views()
        self.plan_lut_fusion()
        self.plan_fc_add_fusion()
        for op in self.g.ops:  # check every op before any work, so errors come first
            if op.name not in HANDLERS:
                raise self.unsupported(op)
        self.plan_pre()
        self.plan_arena()
        for op in self.g.ops:
            self.prog.kernels.append(op.name)
            out = self.t(op.outputs[0]) if op.outputs else None
            # with a split, the state-independent ops keep their order in <name>_step_input
            body = self.prog.body_input if op.index in self.input_ops else self.prog.body
            body.append(f"/* {op.index}: {op.name} -> '{out.name if out else ''}' */")
            if op.index in self.cells:
                body.extend(cell.lstm_cell(self, self.cells[op.index]))
            elif op.index in self.cell_fused:
                body.append("/* in the fused LSTM cell */")
            else:
                body.extend(HANDLERS[op.name](self, op))
            body.append(f"EL_PROFILE({op.index});")
            fused = op.index in self.lut_fused or op.index in self.cell_fused
            self.prog.ops.append((op.index, op.name, self.layer_of(op), fused))
        if self.fc_deferred:  # every deferred FC is emitted by the ADD that reads it
            raise BadInputError("internal: an FC fused into an ADD was never emitted")
        for idx in self.g.outputs.values():
            self.prog.refs[idx] = self.ref(idx, True)
        self.prog.weight_bytes = sum(t.nbytes for t in self.g.tensors if t.data is not None)
        return self.prog


# ---- handlers ------------------------------------------------------------------------------


HANDLERS: dict[str, Callable[[Lowering, Op], list[str]]] = {
    "FULLY_CONNECTED": fc._fc,
    "ADD": elementwise._binary,
    "SUB": elementwise._binary,
    "MUL": elementwise._binary,
    "MAXIMUM": elementwise._maxmin,
    "MINIMUM": elementwise._maxmin,
    "LOGISTIC": elementwise._activation,
    "TANH": elementwise._activation,
    "RELU": elementwise._relu,
    "RELU6": elementwise._relu,
    "RELU_N1_TO_1": elementwise._relu,
    "SOFTMAX": elementwise._softmax,
    "ABS": arith._unary,
    "EXP": arith._unary,
    "LOG": arith._unary,
    "RSQRT": arith._unary,
    "ELU": arith._unary,
    "DIV": arith._div,
    "MEAN": reduce._mean,
    "REDUCE_ANY": reduce._reduce_any,
    "EQUAL": logic._compare,
    "NOT_EQUAL": logic._compare,
    "LESS": logic._compare,
    "LESS_EQUAL": logic._compare,
    "GREATER": logic._compare,
    "GREATER_EQUAL": logic._compare,
    "SELECT": logic._select,
    "SELECT_V2": logic._select,
    "CAST": logic._cast,
    "QUANTIZE": elementwise._quantize,
    "DEQUANTIZE": elementwise._dequantize,
    "SPLIT": layout._split,
    "SPLIT_V": layout._split,
    "CONCATENATION": layout._concat,
    "RESHAPE": layout._alias,
    "SQUEEZE": layout._alias,
    "EXPAND_DIMS": layout._alias,
    "STRIDED_SLICE": layout._strided_slice,
    "GATHER": layout._gather,
}


ROUNDINGS = ("tflm", "litert-ref")


def lower(
    graph: Graph,
    name: str,
    layers: Sequence[LayerSummary] | None = None,
    rounding: str = "tflm",
    isa: str = "dsp",
    split_input: bool = False,
    fuse_fc_add: bool = False,
) -> Program:
    """Lower `graph` (a step model) to a Program; UnsupportedLayerError names a missing kernel.
    `rounding` picks whose int8 FULLY_CONNECTED rounding to reproduce (ROUNDINGS), `isa` the
    int8 FC weight layout ("dsp" or "mve"). `split_input`: emit the state-independent ops
    separately (Program.body_input), for callers that run them for many steps ahead.
    `fuse_fc_add`: an int8 FC read only by an ADD with fused tables becomes one
    el_fc_s8_fast_add_lut call (declared in edgelstm_kernels_simd.h: native builds only)."""
    return Lowering(graph, name, layers or [], rounding, isa, split_input, fuse_fc_add).run()
