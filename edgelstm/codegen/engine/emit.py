"""Render the model-specific C files around a lowered Program from the templates in
firmware_export/cengine/templates/ (kernels are copied verbatim from firmware_export/cengine/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgelstm import __version__
from edgelstm.codegen.c import align_macro, c_float
from edgelstm.codegen.engine.graph import Graph, Tensor, data_io
from edgelstm.codegen.engine.lower import Program, _c_float_list, _c_int_list
from edgelstm.codegen.templates import render
from edgelstm.errors import BadInputError
from edgelstm.paths import bundled_dir

KERNEL_DIR = bundled_dir("firmware_export") / "cengine"
KERNEL_FILES = ("edgelstm_kernels.h", "edgelstm_kernels.c")
TEMPLATE_DIR = KERNEL_DIR / "templates"


@dataclass
class StateField:
    """One recurrent state tensor as a field of the caller's struct."""

    field: str  # the step model's input name, e.g. state0_h
    output: str  # its *_out tensor
    ctype: str
    numel: int
    nbytes: int
    reset_raw: list[int | float]
    dtype: str
    scale: float
    zero_point: int


@dataclass
class Interface:
    """What the generated API looks like (also drives the verification driver)."""

    name: str
    x: Tensor
    y: Tensor
    states: list[StateField] = field(default_factory=list)
    sequence: dict[str, Any] | None = None  # {"steps": T, "many_to_many": bool}
    # Several inputs / outputs: (signature name, element offset, tensor) packed into x / y
    x_parts: list[tuple[str, int, Tensor]] = field(default_factory=list)
    y_parts: list[tuple[str, int, Tensor]] = field(default_factory=list)

    @property
    def token_input(self) -> bool:
        return self.x.dtype == "int32"

    @property
    def state_bytes(self) -> int:
        """sizeof the state struct: each field at its type's alignment (an int8 h of odd length
        pads before an int16 c), the whole rounded to the widest."""
        off, widest = 0, 1
        for s in self.states:
            align = {"float32": 4, "int32": 4, "int16": 2}.get(s.dtype, 1)
            off = -(-off // align) * align + s.nbytes
            widest = max(widest, align)
        return -(-off // widest) * widest if self.states else 0


def kernel_sources() -> dict[str, str]:
    """The portable kernel files, read from firmware_export/cengine/."""
    files = {}
    for fn in KERNEL_FILES:
        path = KERNEL_DIR / fn
        if not path.is_file():
            raise BadInputError(f"firmware_export kernel source missing: {path}")
        files[fn] = path.read_text()
    return files


def build_interface(
    graph: Graph, name: str, reset_values: dict[str, float], sequence: dict | None
) -> Interface:
    """Pair inputs/outputs of the step graph into x, y and the state fields. Several inputs
    (x0, x1, ...) are packed into x in that order, several outputs (y0, y1, ...) into y."""
    ins, outs = data_io(graph)
    x_parts = _packed(graph, ins, graph.inputs, "input") if ins != ["x"] and len(ins) > 1 else []
    y_parts = _packed(graph, outs, graph.outputs, "output") if len(outs) > 1 else []
    if "x" not in graph.inputs and not x_parts:
        raise BadInputError("the step model has no input named 'x' (not an edgelstm step model)")
    y_name = "y" if "y" in graph.outputs or y_parts else None
    if y_name is None:
        others = [n for n in graph.outputs if not n.endswith("_out")]
        if len(others) != 1:
            raise BadInputError("the step model has no output named 'y'")
        y_name = others[0]
    x = _pack_tensor("x", x_parts) if x_parts else graph.tensors[graph.inputs["x"]]
    y = _pack_tensor("y", y_parts) if y_parts else graph.tensors[graph.outputs[y_name]]
    for t in (x, y):
        if not t.ctype or t.dtype in ("int16", "bool"):
            raise BadInputError(f"tensor '{t.name}' has dtype {t.dtype}, which the engine lacks")
    states = []
    for nm in graph.input_order:
        if nm == "x" or nm in ins:
            continue
        out = f"{nm}_out"
        if out not in graph.outputs:
            raise BadInputError(f"state input '{nm}' has no '{out}' output")
        t = graph.tensors[graph.inputs[nm]]
        o = graph.tensors[graph.outputs[out]]
        if (t.dtype, t.numel, t.scales, t.zero_points) != (
            o.dtype,
            o.numel,
            o.scales,
            o.zero_points,
        ):
            raise BadInputError(f"state '{nm}' and '{out}' differ in dtype, size or quantization")
        value = float(reset_values.get(nm, 0.0))
        if t.dtype in ("int8", "int16"):  # (int16: an LSTM's cell state, tflite.cell16)
            info = np.iinfo(np.int8 if t.dtype == "int8" else np.int16)
            raw = (
                int(np.clip(round(value / t.scale) + t.zp, info.min, info.max)) if t.scale else t.zp
            )
            reset: list[int | float] = [raw] * t.numel
        else:
            reset = [value] * t.numel
        states.append(
            StateField(nm, out, t.ctype, t.numel, t.nbytes, reset, t.dtype, t.scale, t.zp)
        )
    return Interface(
        name=name, x=x, y=y, states=states, sequence=sequence, x_parts=x_parts, y_parts=y_parts
    )


def _packed(
    graph: Graph, names: list[str], where: dict[str, int], kind: str
) -> list[tuple[str, int, Tensor]]:
    parts, off = [], 0
    for nm in names:
        t = graph.tensors[where[nm]]
        parts.append((nm, off, t))
        off += t.numel
    dtypes = {t.dtype for _, _, t in parts}
    if len(dtypes) > 1:
        raise BadInputError(
            f"the step model's {kind}s {', '.join(names)} differ in dtype ({', '.join(sorted(dtypes))}); "
            "the C engine packs them into one buffer of one type"
        )
    return parts


def _pack_tensor(name: str, parts: list[tuple[str, int, Tensor]]) -> Tensor:
    """One buffer holding every part end to end (its own quantization: each part's macros)."""
    total = sum(t.numel for _, _, t in parts)
    first = parts[0][2]
    return Tensor(-1, name, [1, total], first.dtype, [], [])


def _io_macros(
    p: str, kind: str, t: Tensor, parts: list[tuple[str, int, Tensor]] | None = None
) -> list[str]:
    if parts:  # several tensors packed: where each lives in the buffer, and its quantization
        lines = [f"#define {p}_{kind}_SIZE {t.numel}"]
        for nm, off, part in parts:
            q = f"{p}_{kind}_{nm.upper()}"
            lines += [f"#define {q}_OFFSET {off}", f"#define {q}_SIZE {part.numel}"]
            if part.dtype == "int8":
                lines += [
                    f"#define {q}_SCALE {c_float(part.scale)}",
                    f"#define {q}_ZERO_POINT {part.zp}",
                ]
        return lines
    lines = [f"#define {p}_{kind}_SIZE {t.numel}"]
    if t.dtype == "int8":
        lines += [
            f"#define {p}_{kind}_SCALE {c_float(t.scale)}",
            f"#define {p}_{kind}_ZERO_POINT {t.zp}",
        ]
    return lines


def _render(template: str, ifc: Interface, **ctx: Any) -> str:
    """A template of firmware_export/cengine/templates/ with the names every one uses."""
    base = {"n": ifc.name, "p": ifc.name.upper(), "ifc": ifc, "version": __version__}
    return render(TEMPLATE_DIR, template, {**base, **ctx})


def model_header(ifc: Interface, prog: Program, source: str, quantization: str) -> str:
    p = ifc.name.upper()
    return _render(
        "model.h.j2",
        ifc,
        prog=prog,
        source=source,
        quantization=quantization,
        io_macros=_io_macros(p, "INPUT", ifc.x, ifc.x_parts)
        + _io_macros(p, "OUTPUT", ifc.y, ifc.y_parts),
    )


def _reset_code(ifc: Interface) -> tuple[list[str], list[str]]:
    """(constant reset arrays, statements of <name>_reset): a uniform reset value is a loop, any
    other a memcpy from a constant array."""
    arrays, lines = [], []
    for s in ifc.states:
        vals = np.array(s.reset_raw)
        if bool(np.all(vals == vals[0])):
            v = c_float(float(vals[0])) if s.ctype == "float" else str(int(vals[0]))
            lines.append(f"    for (i = 0; i < {s.numel}; ++i) {{ st->{s.field}[i] = {v}; }}")
        else:
            body = _c_float_list(vals) if s.ctype == "float" else _c_int_list(vals)
            arrays.append(
                f"static const {s.ctype} {ifc.name}_reset_{s.field}[{s.numel}] = {{{body}}};"
            )
            lines.append(f"    memcpy(st->{s.field}, {ifc.name}_reset_{s.field}, {s.nbytes});")
    return arrays, lines or ["    st->unused = 0;"]


def model_source(ifc: Interface, prog: Program, graph: Graph) -> str:
    reset_consts, reset_lines = _reset_code(ifc)
    # outputs are copied after the last op: states back into the struct, then y
    copy_out = [
        f"    memmove(st->{s.field}, {prog.refs[graph.outputs[s.output]]}, {s.nbytes});"
        for s in ifc.states
    ]
    if ifc.y_parts:  # several outputs, packed into y in order
        for nm, off, t in ifc.y_parts:
            dst = f"(y + {off})" if off else "y"
            copy_out.append(f"    memmove({dst}, {prog.refs[graph.outputs[nm]]}, {t.nbytes});")
    else:
        y_idx = graph.outputs.get("y", ifc.y.index)
        copy_out.append(f"    memmove(y, {prog.refs[y_idx]}, {ifc.y.nbytes});")
    return _render(
        "model.c.j2",
        ifc,
        prog=prog,
        align=align_macro(ifc.name.upper(), 8),
        reset_consts=reset_consts,
        reset_lines=reset_lines,
        reset_needs_i=any(ln.startswith("    for (i") for ln in reset_lines),
        arena=max(prog.arena_bytes, 8),
        # the template indents the first statement; the rest carry their own indent
        body="\n".join("    " + ln for ln in prog.body).strip(),
        body_input="\n".join("    " + ln for ln in prog.body_input).strip(),
        copy_out=copy_out,
    )


def example_main(ifc: Interface) -> str:
    x_value = "1" if ifc.token_input else ("0" if ifc.x.dtype == "int8" else "0.0f")
    return _render("main.c.j2", ifc, x_value=x_value)


def makefile(name: str) -> str:
    return render(TEMPLATE_DIR, "Makefile.j2", {"name": name})


def readme(ifc: Interface, prog: Program, source: str, quantization: str) -> str:
    return _render("README.md.j2", ifc, prog=prog, source=source, quantization=quantization)
