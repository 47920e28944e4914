"""Lower a step .tflite to a static schedule of C kernel calls.

`lower(graph, name, layers)` walks the operators in order; a handler per TFLite builtin op
precomputes the kernel parameters (fixed-point multipliers, folded biases, activation tables,
re-ordered weights) and returns C statements. Layout-only ops (RESHAPE, a SPLIT along the outer
axis) become views of their input, so they cost nothing. Activations live in one static arena
planned by liveness (first fit); the recurrent state lives in the caller's struct.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edgelstm.errors import BadInputError, UnsupportedLayerError
from edgelstm.export.cengine import quant
from edgelstm.export.cengine.graph import Graph, Op, Tensor
from edgelstm.export.cgen import c_float

ALIAS_OPS = ("RESHAPE", "SQUEEZE", "EXPAND_DIMS")
# elementwise kernels that read element i before writing element i: may run in place
INPLACE_OPS = (
    "ADD",
    "SUB",
    "MUL",
    "LOGISTIC",
    "TANH",
    "RELU",
    "RELU6",
    "RELU_N1_TO_1",
    "QUANTIZE",
    "SOFTMAX",
)
ARENA_ALIGN = 8


@dataclass
class Program:
    """The lowered model: C definitions (constants, params) and the body of the step function."""

    consts: list[str] = field(default_factory=list)
    body: list[str] = field(default_factory=list)
    arena_bytes: int = 0
    scratch_i16: int = 0  # int16 elements of the FC input-expansion buffer
    const_bytes: int = 0  # bytes of constant data (weights, tables, params)
    weight_bytes: int = 0  # bytes of the model's constant tensors as stored in the .tflite
    macs: int = 0
    kernels: list[str] = field(default_factory=list)  # TFLite ops used, in order of appearance
    may_fail: bool = False  # an op can report an error (GATHER index)
    refs: dict[int, str] = field(default_factory=dict)  # graph outputs -> C pointer expression
    # per op, in schedule order: (EL_PROFILE index, TFLite op, Keras layer, fused into another op)
    ops: list[tuple[int, str, str, bool]] = field(default_factory=list)


def _c_int_list(values: np.ndarray, per_line: int = 16) -> str:
    vals = [int(v) for v in np.asarray(values).reshape(-1)]
    text = [str(v) if v != -(2**31) else "(-2147483647 - 1)" for v in vals]
    lines = [", ".join(text[i : i + per_line]) for i in range(0, len(text), per_line)]
    return ",\n    ".join(lines) if lines else "0"


def _c_float_list(values: np.ndarray, per_line: int = 6) -> str:
    vals = [c_float(float(v)) for v in np.asarray(values, dtype=np.float32).reshape(-1)]
    lines = [", ".join(vals[i : i + per_line]) for i in range(0, len(vals), per_line)]
    return ",\n    ".join(lines) if lines else "0.0f"


class Lowering:
    """State of one lowering pass (see module docstring)."""

    def __init__(
        self,
        graph: Graph,
        name: str,
        layers: list[dict],
        rounding: str = "tflm",
        isa: str = "dsp",
    ) -> None:
        self.g = graph
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
        self.state_inputs = {
            idx: nm for nm, idx in graph.inputs.items() if nm != "x" and nm.startswith("state")
        }
        # int8 ADD -> SPLIT -> one in-place LOGISTIC/TANH per part (an LSTM's gates): the ADD
        # applies the tables as it writes, the activation ops become no-ops
        self.lut_after: dict[int, list[Op]] = {}
        self.lut_fused: set[int] = set()

    # -- errors -------------------------------------------------------------------------------

    def layer_of(self, op: Op) -> str:
        """Best guess of the Keras layer an op belongs to (tensor names carry layer names)."""
        names = [self.g.tensors[i].name for i in op.outputs + op.inputs if i >= 0]
        layer_names = [str(x.get("name", "")) for x in self.layers if x.get("name")]
        for layer in sorted(layer_names, key=len, reverse=True):
            for n in names:
                parts = n.replace(";", "/").replace(":", "/").split("/")
                if layer in parts:
                    return layer
        # converted tensor names rarely keep layer names: match an activation op to the layer
        # whose (recurrent) activation it implements
        act = op.name.lower()
        hits = [
            str(x["name"])
            for x in self.layers
            if act
            in {str(v).lower() for k, v in (x.get("details") or {}).items() if "activation" in k}
            or str(x.get("kind", "")).lower() == act
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
            cname = f"{self.name}_c{idx}"
            self.add_const(t.ctype, cname, t.data, f"'{t.name}' {t.shape}")
            self.const_names[idx] = cname
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
        itemsize = 4 if ctype in ("float", "int32_t") else 2 if ctype == "int16_t" else 1
        self.prog.const_bytes += arr.size * itemsize
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
        if root == self.x_index:
            return f"(x + {elem})" if elem else "x"
        if root in self.state_inputs:
            field_ = self.state_inputs[root]
            return f"(st->{field_} + {elem})" if elem else f"st->{field_}"
        if root not in self.arena_off:
            raise BadInputError(f"tensor '{rt.name}' is read before it is written")
        byte = self.arena_off[root] + off
        return f"(({qual}{t.ctype} *)({self.name}_arena + {byte}))"

    # -- planning -----------------------------------------------------------------------------

    def plan_views(self) -> None:
        for op in self.g.ops:
            if op.name in ALIAS_OPS and self.t(op.outputs[0]).dtype == self.t(op.inputs[0]).dtype:
                self.views[op.outputs[0]] = (op.inputs[0], 0)
            elif op.name == "SPLIT":
                self._split_views(op, self.t(op.inputs[0]), op.inputs[1])
            elif op.name == "SPLIT_V":
                self._split_views(op, self.t(op.inputs[2]), op.inputs[0])
        self._inplace_views()

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
                    or root == self.x_index
                    or root in self.state_inputs
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
        outer = int(np.prod([max(d, 1) for d in data.shape[:axis]], dtype=np.int64))
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
        roots = [
            r
            for r in first
            if self.t(r).data is None and r != self.x_index and r not in self.state_inputs
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

    def run(self) -> Program:
        self.plan_views()
        self.plan_lut_fusion()
        for op in self.g.ops:  # check every op before any work, so errors come first
            if op.name not in HANDLERS:
                raise self.unsupported(op)
        self.plan_arena()
        for op in self.g.ops:
            self.prog.kernels.append(op.name)
            out = self.t(op.outputs[0]) if op.outputs else None
            self.prog.body.append(f"/* {op.index}: {op.name} -> '{out.name if out else ''}' */")
            self.prog.body.extend(HANDLERS[op.name](self, op))
            self.prog.body.append(f"EL_PROFILE({op.index});")
            fused = op.index in self.lut_fused
            self.prog.ops.append((op.index, op.name, self.layer_of(op), fused))
        for idx in self.g.outputs.values():
            self.prog.refs[idx] = self.ref(idx, True)
        self.prog.weight_bytes = sum(t.nbytes for t in self.g.tensors if t.data is not None)
        return self.prog


# ---- handlers ------------------------------------------------------------------------------


def _act(op: Op) -> int:
    return int(getattr(op.options, "fusedActivationFunction", 0) or 0)


def _is_int8(t: Tensor) -> bool:
    return t.dtype == "int8"


def _fc(lw: Lowering, op: Op) -> list[str]:
    x, w = lw.t(op.inputs[0]), lw.t(op.inputs[1])
    b = lw.t(op.inputs[2]) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    y = lw.t(op.outputs[0])
    if w.data is None or len(w.shape) != 2:
        raise lw.unsupported(op, "non-constant or non-2-D weights")
    rows, cols = w.shape
    if x.numel != cols:
        raise lw.unsupported(op, f"batched input {x.shape}")
    act = _act(op)
    lw.prog.macs += rows * cols
    k = op.index
    p = lw.name
    if x.dtype == "float32" and w.dtype == "float32" and y.dtype == "float32":
        if act not in (0, 1, 2, 3, 4):
            raise lw.unsupported(op, f"fused activation {act}")
        wn = lw.add_const("float", f"{p}_w{k}", w.data, f"'{w.name}' {w.shape}")
        bn = lw.add_const("float", f"{p}_b{k}", b.data, f"'{b.name}'") if b is not None else "0"
        return [
            f"el_fc_f32({lw.ref(op.inputs[0], True)}, {cols}, {wn}, {bn}, {rows}, {act}, "
            f"{lw.ref(op.outputs[0])});"
        ]
    if not (_is_int8(x) and _is_int8(w) and _is_int8(y)):
        if x.dtype == "int16" or y.dtype == "int16":  # an int16x8 step model
            raise lw.unsupported(
                op, "int16 activations: the engine runs float and int8 step models; export the "
                "int8 (or float) artifact"
            )  # fmt: skip
        raise lw.unsupported(
            op, f"{x.dtype} input with {w.dtype} weights (dynamic-range quantization): export "
            "the int8 or float artifact"
        )  # fmt: skip
    if act not in (0, 1, 2, 3):
        raise lw.unsupported(op, f"fused activation {act}")
    if any(z != 0 for z in w.zero_points):
        raise lw.unsupported(op, "asymmetric int8 weights")
    wq = w.data.astype(np.int64)
    bias = (b.data.astype(np.int64) if b is not None else np.zeros(rows, np.int64)).reshape(-1)
    folded = bias + (-x.zp) * wq.sum(axis=1)  # input zero point folded into the bias offline
    if np.abs(folded).max(initial=0) >= 2**31:
        raise lw.unsupported(op, "bias overflows int32 after folding the zero point")
    scales = w.scales if len(w.scales) == rows else [w.scale] * rows
    mults, shifts = zip(
        *(quant.quantize_multiplier(x.scale * s / y.scale) for s in scales), strict=True
    )
    # 4 rows x 8 columns (Helium: 16-column tiles, the last one may be 8 wide)
    rp, cp = -(-rows // 4) * 4, -(-cols // 8) * 8
    wpad = np.zeros((rp, cp), np.int8)
    wpad[:rows, :cols] = w.data
    bpad = np.zeros(rp, np.int64)
    bpad[:rows] = folded
    pad = [0] * (rp - rows)  # the kernel reads whole 4-row blocks
    lo, hi = quant.activation_range_s8(act, y.scale, y.zp)
    lw.prog.scratch_i16 = max(lw.prog.scratch_i16, cp)
    # worst-case |accumulator| per row: the int8 input is at most 128 in magnitude
    bound = 128 * np.abs(wpad.astype(np.int64)).sum(axis=1) + np.abs(bpad)
    flags = []
    if bound[1::2].max(initial=0) < 2**23:
        flags.append("EL_FC_PAIRED_DSP")
    fast_rq = bound.max(initial=0) < 2**30 and max(shifts) <= -1 and (lo, hi) == (-128, 127)
    if fast_rq:
        flags.append("EL_FC_FAST_RQ")
        shifts = tuple(-s - 1 for s in shifts)  # the kernel's fast path wants e - 1
    if fast_rq and lw.isa == "mve":  # no paired-row bound: plain signed weights
        stream = fc_rows_stream(wpad, bpad, np.array([*mults, *pad]), np.array([*shifts, *pad]))
        sn = lw.add_const("int8_t", f"{p}_w{k}", stream, f"'{w.name}' {w.shape} fc row tiles")
        return [
            f"el_fc_s8_rows({lw.ref(op.inputs[0], True)}, {cols}, {cp}, {sn}, {rows}, {y.zp}, "
            f"{p}_xs, {lw.ref(op.outputs[0])}, {int(lw.single_round)});"
        ]
    if len(flags) == 2:  # one stream: per block bias, weights, multipliers, e - 1
        stream = fc_stream(wpad, bpad, np.array([*mults, *pad]), np.array([*shifts, *pad]))
        sn = lw.add_const("int8_t", f"{p}_w{k}", stream, f"'{w.name}' {w.shape} fc stream")
        fn = "el_fc_s8_fast_sr" if lw.single_round else "el_fc_s8_fast"
        return [
            f"{fn}({lw.ref(op.inputs[0], True)}, {cols}, {cp}, {sn}, {rows}, {y.zp}, "
            f"{p}_xs, {lw.ref(op.outputs[0])});"
        ]
    if lw.single_round:
        flags.append("EL_FC_SINGLE_ROUND")
    wn = lw.add_const("int8_t", f"{p}_w{k}", _paired_layout(wpad), f"'{w.name}' {w.shape} paired")
    bn = lw.add_const("int32_t", f"{p}_b{k}", bpad, "bias with the input zero point folded in")
    mn = lw.add_const("int32_t", f"{p}_m{k}", np.array([*mults, *pad]), "requantize multipliers")
    what = "requantize e - 1" if fast_rq else "requantize shifts"
    sn = lw.add_const("int8_t", f"{p}_s{k}", np.array([*shifts, *pad]), what)
    return [
        f"el_fc_s8({lw.ref(op.inputs[0], True)}, {cols}, {cp}, {wn}, {bn}, {rows}, {mn}, "
        f"{sn}, {y.zp}, {lo}, {hi}, {' | '.join(flags) or '0'}, {p}_xs, "
        f"{lw.ref(op.outputs[0])});"
    ]


def fc_stream(wpad: np.ndarray, bias: np.ndarray, mult: np.ndarray, e1: np.ndarray) -> np.ndarray:
    """el_fc_s8_fast's byte stream: per 4-row block the bias (int32 LE), the paired weights
    (columns c0 c2 c1 c3 per group of 4), the multipliers (int32 LE) and e - 1 (int8). All
    arguments padded to whole 4-row blocks."""
    rp, cp = wpad.shape
    # columns in the order the kernel expands x: c0 c2 c1 c3 per group of 4
    order = (np.arange(cp).reshape(-1, 4)[:, [0, 2, 1, 3]]).reshape(-1)
    paired = _paired_layout(wpad[:, order])
    parts = []
    for blk in range(rp // 4):
        rows = slice(4 * blk, 4 * blk + 4)
        parts += [
            np.asarray(bias[rows], np.int64).astype("<i4").view(np.int8),
            paired[blk * 4 * cp : (blk + 1) * 4 * cp],
            np.asarray(mult[rows], np.int64).astype("<i4").view(np.int8),
            np.asarray(e1[rows], np.int64).astype(np.int8),
        ]
    return np.concatenate(parts)


def fc_rows_stream(
    wpad: np.ndarray, bias: np.ndarray, mult: np.ndarray, e1: np.ndarray
) -> np.ndarray:
    """el_fc_s8_rows' byte stream (Helium): per 4-row block the bias (int32 LE), per 16 columns
    the 4 rows' 16 int8 weights (a last tile of 8 columns when C % 16 == 8), the multipliers
    (int32 LE) and e - 1 (int8). wpad [R, C] with R % 4 == 0 and C % 8 == 0."""
    rp, cp = wpad.shape
    w8 = wpad.astype(np.int8)
    parts = []
    for blk in range(rp // 4):
        rows = slice(4 * blk, 4 * blk + 4)
        # 16-column tiles, the last one 8 wide when cp % 16 == 8: row-major within a tile
        tiles = [w8[rows, c : c + 16].reshape(-1) for c in range(0, cp, 16)]
        parts += [
            np.asarray(bias[rows], np.int64).astype("<i4").view(np.int8),
            *tiles,
            np.asarray(mult[rows], np.int64).astype("<i4").view(np.int8),
            np.asarray(e1[rows], np.int64).astype(np.int8),
        ]
    return np.concatenate(parts)


def _paired_layout(wpad: np.ndarray) -> np.ndarray:
    """int8 [R, C] (R % 4 == 0, C % 4 == 0) -> the kernel's paired byte order: per 4-row block and
    4-column group, row pair 0 then 1, columns 0-1 then 2-3, per column (w_a + 128, w_b)."""
    rp, cp = wpad.shape
    w4 = wpad.astype(np.int16).reshape(rp // 4, 2, 2, cp // 4, 2, 2)  # blk, pair, row, g, j, c
    ua = (w4[:, :, 0] + 128).astype(np.uint8).view(np.int8)  # blk, pair, g, j, c
    wb = w4[:, :, 1].astype(np.int8)
    out = np.stack([ua, wb], axis=-1)  # blk, pair, g, j, c, byte
    return np.ascontiguousarray(out.transpose(0, 2, 1, 3, 4, 5)).reshape(-1)


def _broadcast(lw: Lowering, op: Op) -> tuple[int, int, int]:
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    n = y.numel
    sa = 1 if a.numel == n else 0 if a.numel == 1 else -1
    sb = 1 if b.numel == n else 0 if b.numel == 1 else -1
    if sa < 0 or sb < 0:
        raise lw.unsupported(op, f"broadcast {a.shape} with {b.shape}")
    return sa, sb, n


def _binary(lw: Lowering, op: Op) -> list[str]:
    sa, sb, n = _broadcast(lw, op)
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    act = _act(op)
    ra, rb, ry = lw.ref(op.inputs[0], True), lw.ref(op.inputs[1], True), lw.ref(op.outputs[0])
    if y.dtype == "float32":
        code = {"ADD": 0, "SUB": 1, "MUL": 2}[op.name]
        return [f"el_binary_f32({code}, {ra}, {sa}, {rb}, {sb}, {ry}, {n}, {act});"]
    if not (_is_int8(a) and _is_int8(b) and _is_int8(y)):
        raise lw.unsupported(op, f"{a.dtype}/{b.dtype} -> {y.dtype}")
    if act not in (0, 1, 2, 3):
        raise lw.unsupported(op, f"fused activation {act}")
    lo, hi = quant.activation_range_s8(act, y.scale, y.zp)
    pn = f"{lw.name}_p{op.index}"
    if op.name == "MUL":
        m, s = quant.quantize_multiplier(a.scale * b.scale / y.scale)
        if (lo, hi) == (-128, 127) and s <= -1:
            vals = [-2 * a.zp, -b.zp, m, -s - 1, 1 + 2 * y.zp]
            lw.prog.consts.append(
                f"static const el_mul_fast_t {pn} = {{{', '.join(map(str, vals))}}};"
            )
            lw.prog.const_bytes += 20
            return [f"el_mul_s8_fast(&{pn}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
        vals = [-a.zp, -b.zp, y.zp, m, s, lo, hi]
        lw.prog.consts.append(f"static const el_mul_s8_t {pn} = {{{', '.join(map(str, vals))}}};")
        lw.prog.const_bytes += 28
        return [f"el_mul_s8(&{pn}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
    prm = quant.addsub_params(a.scale, a.zp, b.scale, b.zp, y.scale, y.zp)
    keys = [
        "in1_off",
        "in1_mult",
        "in1_shift",
        "in2_off",
        "in2_mult",
        "in2_shift",
        "out_off",
        "out_mult",
        "out_shift",
        "left_shift",
    ]
    sign = 1 if op.name == "ADD" else -1
    fast = _add_fast(prm, sign, lo, hi)
    if fast is None and sign > 0:  # ADD commutes: try the inputs the other way round
        swapped = {
            **{k.replace("in1", "in2"): v for k, v in prm.items() if k.startswith("in1")},
            **{k.replace("in2", "in1"): v for k, v in prm.items() if k.startswith("in2")},
        }
        fast = _add_fast({**prm, **swapped}, sign, lo, hi)
        if fast is not None:
            ra, sa, rb, sb = rb, sb, ra, sa
    acts = lw.lut_after.get(op.index, [])
    fuse = fast is not None and bool(acts) and sa == 1 and sb == 1
    tables = [_lut_table(lw, a, centred=fuse) for a in acts]
    if fast is not None:
        lw.prog.consts.append(f"static const el_add_fast_t {pn} = {{{', '.join(map(str, fast))}}};")
        lw.prog.const_bytes += 32
        if fuse:
            lw.prog.consts.append(
                f"static const int8_t *const {pn}_luts[{len(tables)}] = {{{', '.join(tables)}}};"
            )
            lw.prog.const_bytes += 4 * len(tables)
            seg = n // len(tables)
            return [
                f"el_add_s8_fast_lut(&{pn}, {ra}, {rb}, {ry}, {seg}, {len(tables)}, {pn}_luts);"
            ]
        lines = [f"el_add_s8_fast(&{pn}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
    else:
        vals = [prm[k] for k in keys] + [lo, hi]
        lw.prog.consts.append(
            f"static const el_addsub_s8_t {pn} = {{{', '.join(map(str, vals))}}};"
        )
        lw.prog.const_bytes += 48
        lines = [f"el_addsub_s8(&{pn}, {sign}, {ra}, {sa}, {rb}, {sb}, {ry}, {n});"]
    for a, tn in zip(acts, tables, strict=True):  # not fused: the tables as separate passes
        ref = lw.ref(a.inputs[0])
        lines.append(f"el_lut_s8({tn}, {ref}, {ref}, {lw.t(a.inputs[0]).numel});")
    return lines


def _lut_table(lw: Lowering, op: Op, centred: bool = False) -> str:
    """The activation's 256-entry table: indexed by (uint8_t)v, or by v + 128 when centred."""
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    table = quant.lut_s8(op.name, x.scale, x.zp, y.scale, y.zp)
    if centred:
        return lw.add_const(
            "int8_t", f"{lw.name}_clut{op.index}", np.roll(table, 128), f"{op.name} table, centred"
        )
    return lw.add_const("int8_t", f"{lw.name}_lut{op.index}", table, f"{op.name} table")


def _add_fast(prm: dict[str, int], sign: int, lo: int, hi: int) -> list[int] | None:
    """el_add_fast_t values when el_add_s8_fast reproduces el_addsub_s8 (see the header)."""
    half = (1 << 30, 0)
    if (lo, hi) != (-128, 127) or prm["left_shift"] != 20 or prm["out_shift"] > -1:
        return None
    if (prm["in1_mult"], prm["in1_shift"]) != half:
        return None
    if (prm["in2_mult"], prm["in2_shift"]) == half:
        # SMMULR(2X, 2^31 - 1) = X for |X| < 2^30; e2 = 0 then halves the even X exactly
        m2, e2 = (1 << 31) - 1, 0
    elif prm["in2_shift"] <= -1:
        m2, e2 = prm["in2_mult"], -prm["in2_shift"] - 1
    else:
        return None
    c1 = prm["in1_off"] * (1 << 19)
    c2 = prm["in2_off"] * (1 << 21)
    mo, eo, k = prm["out_mult"], -prm["out_shift"] - 1, 1 + 2 * prm["out_off"]
    return [c1, c2, m2, e2, sign, mo, eo, k]


def _activation(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if y.dtype == "float32":
        fn = "el_logistic_f32" if op.name == "LOGISTIC" else "el_tanh_f32"
        return [f"{fn}({rx}, {ry}, {y.numel});"]
    if not (_is_int8(x) and _is_int8(y)):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    if op.index in lw.lut_fused:
        return ["/* applied by the ADD that produced the input */"]
    return [f"el_lut_s8({_lut_table(lw, op)}, {rx}, {ry}, {y.numel});"]


def _relu(lw: Lowering, op: Op) -> list[str]:
    y = lw.t(op.outputs[0])
    if y.dtype != "float32":
        raise lw.unsupported(op, f"{y.dtype} (only float32 RELU is lowered)")
    lo, hi = {"RELU": (0.0, 3.0e38), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}[op.name]
    return [
        f"el_relu_f32({lw.ref(op.inputs[0], True)}, {lw.ref(op.outputs[0])}, {y.numel}, "
        f"{c_float(lo)}, {c_float(hi)});"
    ]


def _softmax(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    beta = float(getattr(op.options, "beta", 1.0) or 1.0)
    n = x.shape[-1] if x.shape else 1
    outer = x.numel // max(n, 1)
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if y.dtype == "float32":
        return [f"el_softmax_f32({rx}, {ry}, {outer}, {n}, {c_float(beta)});"]
    if not (_is_int8(x) and _is_int8(y)):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    tn = lw.add_const(
        "float", f"{lw.name}_exp{op.index}", quant.softmax_table(x.scale, beta), "softmax exp table"
    )
    return [f"el_softmax_s8({tn}, {c_float(y.scale)}, {y.zp}, {rx}, {ry}, {outer}, {n});"]


def _quantize(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    rx, ry = lw.ref(op.inputs[0], True), lw.ref(op.outputs[0])
    if _is_int8(x) and _is_int8(y):
        m, s = quant.quantize_multiplier(x.scale / y.scale)
        if y.numel >= 32:  # a 256-byte table beats per-element fixed-point math
            table = quant.requant_table(x.zp, y.zp, m, s)
            tn = lw.add_const("int8_t", f"{lw.name}_rq{op.index}", table, "requantize table")
            return [f"el_lut_s8({tn}, {rx}, {ry}, {y.numel});"]
        return [f"el_requant_s8({rx}, {x.zp}, {m}, {s}, {y.zp}, {ry}, {y.numel});"]
    if x.dtype == "float32" and _is_int8(y):
        return [f"el_quantize_f32_s8({rx}, {c_float(y.scale)}, {y.zp}, {ry}, {y.numel});"]
    raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")


def _dequantize(lw: Lowering, op: Op) -> list[str]:
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    if not (_is_int8(x) and y.dtype == "float32"):
        raise lw.unsupported(op, f"{x.dtype} -> {y.dtype}")
    return [
        f"el_dequantize_s8_f32({lw.ref(op.inputs[0], True)}, {c_float(x.scale)}, {x.zp}, "
        f"{lw.ref(op.outputs[0])}, {y.numel});"
    ]


def _outer_inner(shape: list[int], axis: int) -> tuple[int, int]:
    outer = int(np.prod([max(d, 1) for d in shape[:axis]], dtype=np.int64))
    inner = int(np.prod([max(d, 1) for d in shape[axis + 1 :]], dtype=np.int64))
    return outer, inner


def _split(lw: Lowering, op: Op) -> list[str]:
    data_idx = op.inputs[1] if op.name == "SPLIT" else op.inputs[0]
    if all(o in lw.views for o in op.outputs):
        return ["/* view: no copy */"]
    data = lw.t(data_idx)
    axis_t = lw.t(op.inputs[0] if op.name == "SPLIT" else op.inputs[2])
    axis = int(np.asarray(axis_t.data).reshape(-1)[0]) % len(data.shape)
    outer, inner = _outer_inner(data.shape, axis)
    row = data.shape[axis] * inner * data.itemsize
    lines, off = [], 0
    for o in op.outputs:
        t = lw.t(o)
        chunk = t.shape[axis] * inner * t.itemsize
        lines.append(
            f"el_copy_rows((const uint8_t *){lw.ref(data_idx, True)} + {off}, {row}, "
            f"{lw.ref(o)}, {chunk}, {outer}, {chunk});"
        )
        off += chunk
    return lines


def _concat(lw: Lowering, op: Op) -> list[str]:
    y = lw.t(op.outputs[0])
    axis = int(getattr(op.options, "axis", 0)) % len(y.shape)
    if _act(op):
        raise lw.unsupported(op, "fused activation")
    outer, inner = _outer_inner(y.shape, axis)
    row = y.shape[axis] * inner * y.itemsize
    lines, off = [], 0
    for i in op.inputs:
        t = lw.t(i)
        if _is_int8(y) and (t.scale != y.scale or t.zp != y.zp):
            raise lw.unsupported(op, "inputs with different quantization")
        chunk = t.shape[axis] * inner * t.itemsize
        lines.append(
            f"el_copy_rows({lw.ref(i, True)}, {chunk}, (uint8_t *){lw.ref(op.outputs[0])}"
            f" + {off}, {row}, {outer}, {chunk});"
        )
        off += chunk
    return lines


def _alias(lw: Lowering, op: Op) -> list[str]:
    if op.outputs[0] in lw.views:
        return ["/* view: no copy */"]
    y = lw.t(op.outputs[0])
    return [f"memcpy({lw.ref(op.outputs[0])}, {lw.ref(op.inputs[0], True)}, {y.nbytes});"]


def _strided_slice(lw: Lowering, op: Op) -> list[str]:
    """Any constant slice whose elements form equal, evenly spaced contiguous runs."""
    x, y = lw.t(op.inputs[0]), lw.t(op.outputs[0])
    begin, end, strides = (lw.t(i).data for i in op.inputs[1:4])
    o = op.options
    if begin is None or end is None or strides is None:
        raise lw.unsupported(op, "non-constant bounds")
    if getattr(o, "ellipsisMask", 0) or getattr(o, "newAxisMask", 0):
        raise lw.unsupported(op, "ellipsis/new-axis mask")
    idx = np.arange(x.numel).reshape([max(d, 1) for d in x.shape])
    sl = []
    for d in range(len(x.shape)):
        b = None if (o.beginMask >> d) & 1 else int(begin[d])
        e = None if (o.endMask >> d) & 1 else int(end[d])
        s = int(strides[d])
        if (o.shrinkAxisMask >> d) & 1:
            sl.append(int(begin[d]))
        else:
            sl.append(slice(b, e, s))
    picked = np.asarray(idx[tuple(sl)]).reshape(-1)
    if picked.size != y.numel:
        raise lw.unsupported(op, "unexpected output size")
    run = picked.size
    for k in range(1, picked.size):
        if picked[k] != picked[k - 1] + 1:
            run = k
            break
    rows = picked.size // run
    starts = picked[::run]
    stride = int(starts[1] - starts[0]) if rows > 1 else run
    ok = picked.size % run == 0 and all(
        np.array_equal(picked[r * run : (r + 1) * run], starts[0] + r * stride + np.arange(run))
        for r in range(rows)
    )
    if not ok:
        raise lw.unsupported(op, "non-rectangular slice")
    sz = x.itemsize
    return [
        f"el_copy_rows((const uint8_t *){lw.ref(op.inputs[0], True)} + {int(starts[0]) * sz}, "
        f"{stride * sz}, {lw.ref(op.outputs[0])}, {run * sz}, {rows}, {run * sz});"
    ]


def _gather(lw: Lowering, op: Op) -> list[str]:
    table, ids = lw.t(op.inputs[0]), lw.t(op.inputs[1])
    if table.data is None or int(getattr(op.options, "axis", 0)) != 0 or ids.dtype != "int32":
        raise lw.unsupported(op, "only a constant table gathered by int32 ids along axis 0")
    if getattr(op.options, "batchDims", 0):
        raise lw.unsupported(op, "batch_dims")
    n_rows = table.shape[0]
    row = table.nbytes // n_rows
    lw.prog.may_fail = True
    return [
        f"if (el_gather({lw.ref(op.inputs[0], True)}, {n_rows}, {row}, "
        f"{lw.ref(op.inputs[1], True)}, {ids.numel}, {lw.ref(op.outputs[0])}) != EL_OK) "
        "{ return EL_ERR_INDEX; }"
    ]


HANDLERS: dict[str, Callable[[Lowering, Op], list[str]]] = {
    "FULLY_CONNECTED": _fc,
    "ADD": _binary,
    "SUB": _binary,
    "MUL": _binary,
    "LOGISTIC": _activation,
    "TANH": _activation,
    "RELU": _relu,
    "RELU6": _relu,
    "RELU_N1_TO_1": _relu,
    "SOFTMAX": _softmax,
    "QUANTIZE": _quantize,
    "DEQUANTIZE": _dequantize,
    "SPLIT": _split,
    "SPLIT_V": _split,
    "CONCATENATION": _concat,
    "RESHAPE": _alias,
    "SQUEEZE": _alias,
    "EXPAND_DIMS": _alias,
    "STRIDED_SLICE": _strided_slice,
    "GATHER": _gather,
}


ROUNDINGS = ("tflm", "litert-ref")


def lower(
    graph: Graph,
    name: str,
    layers: list[dict] | None = None,
    rounding: str = "tflm",
    isa: str = "dsp",
) -> Program:
    """Lower `graph` (a step model) to a Program; UnsupportedLayerError names a missing kernel.
    `rounding` picks whose int8 FULLY_CONNECTED rounding to reproduce (ROUNDINGS), `isa` the
    int8 FC weight layout ("dsp" or "mve")."""
    return Lowering(graph, name, layers or [], rounding, isa).run()
