"""The int8 LSTM cell of a step model as one kernel call (el_lstm_cell_s8).

TFLite unrolls a Keras LSTM step into ADD (the two FC outputs) -> SPLIT into 4 gates ->
LOGISTIC/TANH per gate -> MUL(f, c), MUL(i, g) -> ADD (the new cell) -> TANH -> MUL(o, tanh c).
When every op of that chain has the fast fixed-point form (el_add_s8_fast / el_mul_s8_fast), the
kernel runs the chain per unit, with the same integer formulas at the same points, so the result
is the same bytes; only the new cell and the hidden state are written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from edgelstm.codegen.engine import quant
from edgelstm.codegen.engine.graph import Op
from edgelstm.codegen.engine.lower.elementwise import (
    AddFast,
    MulFast,
    _add_fast,
    _lut_table,
)
from edgelstm.codegen.engine.lower.program import _act, _is_int8

if TYPE_CHECKING:
    from edgelstm.codegen.engine.lower.core import Lowering


@dataclass(frozen=True)
class LstmCell:
    """One matched chain: the gate ADD (`root`) and the ops it absorbs."""

    root: Op
    gate: AddFast
    gate_swap: bool  # the gate ADD's fast form takes its inputs the other way round
    acts: dict[str, Op]  # "i", "f", "g", "o" -> LOGISTIC/TANH
    offsets: dict[str, int]  # gate -> element offset in the pre-activations
    mul_fc: Op
    mul_ig: Op
    mul_oh: Op
    cell_add: Op
    cell: AddFast
    cell_swap: bool  # the cell ADD's fast form puts i * g first
    tanh_c: Op
    c_prev: int  # tensor index of the previous cell state
    fused: frozenset[int]  # op indices folded into the root
    internal: frozenset[int]  # tensors never materialized (all but the gates)


def add_table(fast: AddFast) -> np.ndarray:
    """el_lstm_cell_t's gate table: el_add_s8_fast's second-input term, doubled, per int8 code
    (exact integers: SMMULR is floor((a b + 2^31) / 2^32), the tie-away shift
    (s + (s >> 31)) >> e)."""
    out = np.empty(256, np.int64)
    for i, v in enumerate(range(-128, 128)):
        s = (fast.c2 + v * (1 << 21)) * fast.m2 + (1 << 31) >> 32
        t = (s + (-1 if s < 0 else 0)) >> fast.e2
        out[i] = 2 * (fast.c1 + fast.sign * ((t + 1) >> 1))
    assert np.abs(out).max() < 2**30
    return out.astype(np.int32)


def gate_line(fast: AddFast) -> tuple[np.ndarray, int, int] | None:
    """add_table as a + b v + r[v] with an int8 residual r (the line through the table's ends,
    centred), or None when the residual does not fit (then the cell is not fused)."""
    t = add_table(fast).astype(np.int64)
    v = np.arange(-128, 128)
    b = round(float(t[-1] - t[0]) / 255)
    rest = t - b * v
    a = (int(rest.max()) + int(rest.min())) // 2
    r = rest - a
    if np.abs(r).max() > 127:
        return None
    return r.astype(np.int8), a, b


def keo(e1: int, k: int) -> int:
    """el_lstm_cell_t's packed (e - 1, k): (k << 8) | (e - 1)."""
    return (k << 8) | e1


def cell_params(gate_r: str, line: tuple[int, int], gate: AddFast, mul_a: MulFast, mul_b: MulFast,
                mul_o: MulFast, add: AddFast, a_is_ig: bool, offsets: list[int],
                luts: list[str]) -> str:  # fmt: skip
    """el_lstm_cell_t's initializer (table names, the tables' entry 128 as the kernel reads)."""
    vals = [f"{gate_r} + 128", str(gate.mo), str(keo(gate.eo, gate.k))]
    for m in (mul_a, mul_b, mul_o):
        vals.append(f"{{{m.c1}, {m.c2}, {m.mo}, {keo(m.eo, m.k)}}}")
    assert add.sign == 1
    vals.append("{" + ", ".join(map(str, (add.c1, add.c2, add.m2, add.e2, add.mo))))
    vals[-1] += f", {keo(add.eo, add.k)}}}"
    vals += [str(int(a_is_ig)), *map(str, offsets)]
    vals += [f"{t} + 128" for t in luts]
    vals += [str(line[0]), str(line[1])]
    return "{" + ", ".join(vals) + "}"


def _fast_add(lw: Lowering, op: Op) -> tuple[AddFast, bool] | None:
    a, b, y = lw.t(op.inputs[0]), lw.t(op.inputs[1]), lw.t(op.outputs[0])
    lo, hi = quant.activation_range_s8(_act(op), y.scale, y.zp)
    prm = quant.addsub_params(a.scale, a.zp, b.scale, b.zp, y.scale, y.zp)
    fast = _add_fast(prm, 1, lo, hi)
    if fast is not None:
        return fast, False
    fast = _add_fast(prm.swapped(), 1, lo, hi)
    return (fast, True) if fast is not None else None


def _fast_mul(lw: Lowering, op: Op, first: int) -> MulFast | None:
    """el_mul_fast_t with input tensor `first` as the kernel's first operand (MUL commutes:
    (o1 + x1)(o2 + x2) is the same integer either way)."""
    second = op.inputs[1] if op.inputs[0] == first else op.inputs[0]
    a, b, y = lw.t(first), lw.t(second), lw.t(op.outputs[0])
    lo, hi = quant.activation_range_s8(_act(op), y.scale, y.zp)
    m, s = quant.quantize_multiplier(a.scale * b.scale / y.scale)
    if (lo, hi) != (-128, 127) or s > -1:
        return None
    return MulFast(-2 * a.zp, -b.zp, m, -s - 1, 1 + 2 * y.zp)


def _other(op: Op, idx: int) -> int | None:
    ins = [i for i in op.inputs if i >= 0]
    if len(ins) != 2 or idx not in ins:
        return None
    return ins[1] if ins[0] == idx else ins[0]


def match_cells(lw: Lowering) -> dict[int, LstmCell]:
    """Every fusable LSTM cell, keyed by its gate ADD's op index (SPLIT views planned; a Helium
    export runs the kernel's 4-lane vector loops). None for the native runtime's build, whose
    recurrent FC fuses the gates' ADD instead (`fuse_fc_add`, measured on x86)."""
    if lw.fuse_fc_add:
        return {}
    g = lw.g
    users: dict[int, list[Op]] = {}
    producer: dict[int, Op] = {}
    for op in g.ops:
        for i in op.inputs:
            if i >= 0:
                users.setdefault(i, []).append(op)
        for o in op.outputs:
            producer[o] = op
    outputs = set(g.outputs.values())

    def only_user(idx: int, name: str) -> Op | None:
        u = users.get(idx, [])
        if len(u) != 1 or u[0].name != name or idx in outputs:
            return None
        return u[0]

    found: dict[int, LstmCell] = {}
    for op in g.ops:
        if op.name != "ADD" or not all(_is_int8(lw.t(i)) for i in [*op.inputs, *op.outputs]):
            continue
        y = op.outputs[0]
        split = users.get(y, [])
        if len(split) != 1 or split[0].name != "SPLIT" or y in outputs:
            continue
        parts = split[0].outputs
        if len(parts) != 4 or not all(lw.views.get(o, (None,))[0] == y for o in parts):
            continue
        n = lw.t(parts[0]).numel
        if any(lw.t(o).numel != n for o in parts) or (lw.isa == "mve" and n < 4):
            continue  # (Helium's vector loops want 4 units or more)
        acts = {}
        for o in parts:
            u = users.get(o, [])
            if len(u) != 1 or u[0].name not in ("LOGISTIC", "TANH") or o in outputs:
                break
            acts[o] = u[0]
        else:
            m = _match_chain(lw, op, parts, acts, only_user, producer)
            if m is not None:
                found[op.index] = m
    return found


def _match_chain(
    lw: Lowering,
    root: Op,
    parts: list[int],
    acts: dict[int, Op],
    only_user: Callable[[int, str], Op | None],
    producer: dict[int, Op],
) -> LstmCell | None:
    """The rest of the cell from the gate ADD's four activations, or None."""
    tanh = [o for o in parts if acts[o].name == "TANH"]
    if len(tanh) != 1 or not all(_is_int8(lw.t(a.outputs[0])) for a in acts.values()):
        return None
    a_out = {o: acts[o].outputs[0] for o in parts}
    muls = {o: only_user(a_out[o], "MUL") for o in parts}
    if any(m is None for m in muls.values()):
        return None
    pg = tanh[0]
    mul_ig = muls[pg]
    pi = next((o for o in parts if o != pg and a_out[o] == _other(mul_ig, a_out[pg])), None)
    if pi is None:
        return None
    rest = [o for o in parts if o not in (pg, pi)]
    if len(rest) != 2:
        return None
    gate_outs = set(a_out.values())
    pf = po = None
    for o in rest:
        other = _other(muls[o], a_out[o])
        if other is None or other in gate_outs:
            return None
        prod = producer.get(other)
        if prod is not None and prod.name == "TANH" and prod.index > root.index:
            po = o
        else:
            pf = o
    if pf is None or po is None:
        return None
    mul_fc, mul_oh = muls[pf], muls[po]
    c_prev = _other(mul_fc, a_out[pf])
    if c_prev in producer and producer[c_prev].index > root.index:
        return None  # the kernel reads the previous cell at the gate ADD
    tanh_c = producer[_other(mul_oh, a_out[po])]
    cell_add = producer.get(tanh_c.inputs[0])
    fc_y, ig_y = mul_fc.outputs[0], mul_ig.outputs[0]
    if (
        cell_add is None
        or cell_add.name != "ADD"
        or sorted(cell_add.inputs) != sorted([fc_y, ig_y])
        or only_user(fc_y, "ADD") is not cell_add
        or only_user(ig_y, "ADD") is not cell_add
        or only_user(tanh_c.outputs[0], "MUL") is not mul_oh
    ):
        return None
    c_new, h = cell_add.outputs[0], mul_oh.outputs[0]
    n = lw.t(parts[0]).numel
    tensors = [c_prev, c_new, h, tanh_c.outputs[0], fc_y, ig_y]
    if any(not _is_int8(lw.t(i)) or lw.t(i).numel != n for i in tensors):
        return None
    gate = _fast_add(lw, root)
    cell = _fast_add(lw, cell_add)
    fast_muls = [_fast_mul(lw, mul_fc, a_out[pf]), _fast_mul(lw, mul_ig, a_out[pi])]
    fast_muls.append(_fast_mul(lw, mul_oh, a_out[po]))
    if gate is None or cell is None or any(m is None for m in fast_muls):
        return None
    if gate_line(gate[0]) is None:
        return None
    # the cell ADD's fast form: (in1, in2) = inputs[0], inputs[1], or swapped
    cell_first = cell_add.inputs[1] if cell[1] else cell_add.inputs[0]
    fused = [*acts.values(), mul_fc, mul_ig, mul_oh, cell_add, tanh_c]
    internal = {*a_out.values(), fc_y, ig_y, tanh_c.outputs[0]}  # the gates stay
    off = {o: lw.views[o][1] for o in parts}
    return LstmCell(
        root=root,
        gate=gate[0],
        gate_swap=gate[1],
        acts={"i": acts[pi], "f": acts[pf], "g": acts[pg], "o": acts[po]},
        offsets={"i": off[pi], "f": off[pf], "g": off[pg], "o": off[po]},
        mul_fc=mul_fc,
        mul_ig=mul_ig,
        mul_oh=mul_oh,
        cell_add=cell_add,
        cell=cell[0],
        cell_swap=cell_first == ig_y,
        tanh_c=tanh_c,
        c_prev=c_prev,
        fused=frozenset(o.index for o in fused),
        internal=frozenset(internal),
    )


def lstm_cell(lw: Lowering, cell: LstmCell) -> list[str]:
    """The el_lstm_cell_s8 call replacing the chain (emitted at the gate ADD)."""
    root = cell.root
    x1, x2 = root.inputs[0], root.inputs[1]
    if cell.gate_swap:
        x1, x2 = x2, x1
    pn = f"{lw.name}_p{root.index}"
    tables = {k: _lut_table(lw, a, centred=True) for k, a in cell.acts.items()}
    tables["c"] = _lut_table(lw, cell.tanh_c, centred=True)
    line = gate_line(cell.gate)
    assert line is not None
    gr = lw.add_const("int8_t", f"{lw.name}_addr{root.index}", line[0],
                      "gate ADD: the second input's term, residual of a + b v")  # fmt: skip
    a_out = {k: a.outputs[0] for k, a in cell.acts.items()}
    fc, ig, oh = (
        _fast_mul(lw, cell.mul_fc, a_out["f"]),
        _fast_mul(lw, cell.mul_ig, a_out["i"]),
        _fast_mul(lw, cell.mul_oh, a_out["o"]),
    )
    assert fc is not None and ig is not None and oh is not None
    mul_a, mul_b = (ig, fc) if cell.cell_swap else (fc, ig)
    init = cell_params(gr, line[1:], cell.gate, mul_a, mul_b, oh, cell.cell, cell.cell_swap,
                       [cell.offsets[k] for k in "ifgo"], [tables[k] for k in "ifgoc"])  # fmt: skip
    lw.prog.consts.append(f"static const el_lstm_cell_t {pn} = {init};")
    lw.prog.const_bytes += 4 * 34
    n = lw.t(cell.c_prev).numel
    c_new, h = cell.cell_add.outputs[0], cell.mul_oh.outputs[0]
    return [
        f"el_lstm_cell_s8(&{pn}, {lw.ref(x1, True)}, {lw.ref(x2, True)}, "
        f"{lw.ref(cell.c_prev, True)}, {lw.ref(root.outputs[0])}, {lw.ref(c_new)}, "
        f"{lw.ref(h)}, {n});"
    ]
