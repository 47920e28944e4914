"""Write the model-specific C files around a lowered Program (kernels are copied verbatim from
firmware_export/cengine/)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgelstm import __version__
from edgelstm.codegen.c import align_macro, c_float
from edgelstm.codegen.engine.graph import Graph, Tensor
from edgelstm.codegen.engine.lower import Program, _c_float_list, _c_int_list
from edgelstm.errors import BadInputError
from edgelstm.paths import bundled_dir

KERNEL_DIR = bundled_dir("firmware_export") / "cengine"
KERNEL_FILES = ("edgelstm_kernels.h", "edgelstm_kernels.c")


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

    @property
    def token_input(self) -> bool:
        return self.x.dtype == "int32"

    @property
    def state_bytes(self) -> int:
        return sum(s.nbytes for s in self.states)


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
    """Pair inputs/outputs of the step graph into x, y and the state fields."""
    if "x" not in graph.inputs:
        raise BadInputError("the step model has no input named 'x' (not an edgelstm step model)")
    y_name = "y" if "y" in graph.outputs else None
    if y_name is None:
        others = [n for n in graph.outputs if not n.endswith("_out")]
        if len(others) != 1:
            raise BadInputError("the step model has no output named 'y'")
        y_name = others[0]
    x, y = graph.tensors[graph.inputs["x"]], graph.tensors[graph.outputs[y_name]]
    for t in (x, y):
        if not t.ctype or t.dtype == "int16":
            raise BadInputError(f"tensor '{t.name}' has dtype {t.dtype}, which the engine lacks")
    states = []
    for nm in graph.input_order:
        if nm == "x":
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
        if t.dtype == "int8":
            raw = int(np.clip(round(value / t.scale) + t.zp, -128, 127)) if t.scale else t.zp
            reset: list[int | float] = [raw] * t.numel
        else:
            reset = [value] * t.numel
        states.append(
            StateField(nm, out, t.ctype, t.numel, t.nbytes, reset, t.dtype, t.scale, t.zp)
        )
    return Interface(name=name, x=x, y=y, states=states, sequence=sequence)


def _io_macros(p: str, kind: str, t: Tensor) -> list[str]:
    lines = [f"#define {p}_{kind}_SIZE {t.numel}"]
    if t.dtype == "int8":
        lines += [
            f"#define {p}_{kind}_SCALE {c_float(t.scale)}",
            f"#define {p}_{kind}_ZERO_POINT {t.zp}",
        ]
    return lines


def model_header(ifc: Interface, prog: Program, source: str, quantization: str) -> str:
    n, p = ifc.name, ifc.name.upper()
    fields = [f"    {s.ctype} {s.field}[{s.numel}];" for s in ifc.states] or [
        "    uint8_t unused; /* this model has no recurrent state */"
    ]
    seq = ""
    if ifc.sequence:
        m2m = ifc.sequence["many_to_many"]
        seq = (
            f"\n#define {p}_SEQ_STEPS {ifc.sequence['steps']}\n"
            f"#define {p}_SEQ_MANY_TO_MANY {1 if m2m else 0}\n\n"
            f"/* Run `steps` steps from the current state: x holds steps x {p}_INPUT_SIZE values;\n"
            f" * y receives {'every step' if m2m else 'the last step'}'s output"
            f" ({'steps x ' if m2m else ''}{p}_OUTPUT_SIZE values). */\n"
            f"int {n}_run_sequence({n}_state_t *st, const {n}_input_t *x, int steps, "
            f"{n}_output_t *y);\n"
        )
    return f"""/* {n}: standalone C engine for {source} ({quantization}).
 * Generated by edgelstm {__version__}; do not edit. No malloc, no TFLite Micro.
 *
 * The recurrent state lives in a caller-owned {n}_state_t: {n}_init() (or {n}_reset())
 * before the first step, then {n}_step() once per time step. The struct is plain bytes: save
 * and restore it with memcpy (or {n}_state_save / {n}_state_load). Scratch memory is one
 * static arena, so calls must not run concurrently.
 */
#ifndef {p}_MODEL_H
#define {p}_MODEL_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {{
#endif

typedef {ifc.x.ctype} {n}_input_t;   /* {"token id" if ifc.token_input else ifc.x.dtype} */
typedef {ifc.y.ctype} {n}_output_t;  /* {ifc.y.dtype} */

{chr(10).join(_io_macros(p, "INPUT", ifc.x) + _io_macros(p, "OUTPUT", ifc.y))}
#define {p}_MACS_PER_STEP {prog.macs}
#define {p}_ARENA_BYTES {prog.arena_bytes}
#define {p}_OK 0
#define {p}_ERR_INDEX 1 /* token id out of range */

typedef struct {{
{chr(10).join(fields)}
}} {n}_state_t;

void {n}_init({n}_state_t *st);
void {n}_reset({n}_state_t *st);
/* One time step: x ({p}_INPUT_SIZE values) -> y ({p}_OUTPUT_SIZE values); state updated. */
int {n}_step({n}_state_t *st, const {n}_input_t *x, {n}_output_t *y);
size_t {n}_state_save(const {n}_state_t *st, void *buf);       /* returns sizeof(state) */
void {n}_state_load({n}_state_t *st, const void *buf);
{seq}
#ifdef __cplusplus
}}
#endif
#endif /* {p}_MODEL_H */
"""


def model_source(ifc: Interface, prog: Program, graph: Graph) -> str:
    n, p = ifc.name, ifc.name.upper()
    resets, reset_lines = [], []
    for s in ifc.states:
        vals = np.array(s.reset_raw)
        uniform = bool(np.all(vals == vals[0]))
        if uniform:
            v = c_float(float(vals[0])) if s.ctype == "float" else str(int(vals[0]))
            reset_lines.append(f"    for (i = 0; i < {s.numel}; ++i) {{ st->{s.field}[i] = {v}; }}")
        else:
            body = _c_float_list(vals) if s.ctype == "float" else _c_int_list(vals)
            resets.append(f"static const {s.ctype} {n}_reset_{s.field}[{s.numel}] = {{{body}}};")
            reset_lines.append(f"    memcpy(st->{s.field}, {n}_reset_{s.field}, {s.nbytes});")
    if not reset_lines:
        reset_lines = ["    st->unused = 0;"]
    copy_out = []
    y_idx = graph.outputs.get("y", ifc.y.index)
    for s in ifc.states:
        out_idx = graph.outputs[s.output]
        copy_out.append(f"    memmove(st->{s.field}, {_ref(prog, out_idx)}, {s.nbytes});")
    copy_out.append(f"    memmove(y, {_ref(prog, y_idx)}, {ifc.y.nbytes});")
    needs_i = any(ln.startswith("    for (i") for ln in reset_lines)
    seq = ""
    if ifc.sequence:
        m2m = ifc.sequence["many_to_many"]
        ystep = f"y + (long)t * {p}_OUTPUT_SIZE" if m2m else "y"
        seq = f"""
int {n}_run_sequence({n}_state_t *st, const {n}_input_t *x, int steps, {n}_output_t *y)
{{
    int t, rc;
    for (t = 0; t < steps; ++t) {{
        rc = {n}_step(st, x + (long)t * {p}_INPUT_SIZE, {ystep});
        if (rc != {p}_OK) {{
            return rc;
        }}
    }}
    return {p}_OK;
}}
"""
    scratch = (
        f"{p}_ALIGN static int16_t {n}_xs[{prog.scratch_i16}]; /* FC input as int16 */\n"
        if prog.scratch_i16
        else ""
    )
    arena = max(prog.arena_bytes, 8)
    return f"""/* {n}: generated by edgelstm {__version__}; do not edit. */
#include "{n}_model.h"

#include <string.h>

#include "edgelstm_kernels.h"

{align_macro(p, 8)}

/* EL_PROFILE(op): optional hook after each op (e.g. to read a cycle counter); empty by default */
#ifndef EL_PROFILE
#define EL_PROFILE(op) ((void)0)
#endif

/* clang-format off */
{chr(10).join(prog.consts)}
{chr(10).join(resets)}
/* clang-format on */

{p}_ALIGN static uint8_t {n}_arena[{arena}]; /* activations, planned by liveness */
{scratch}
void {n}_reset({n}_state_t *st)
{{
{"    int i;" if needs_i else ""}
{chr(10).join(reset_lines)}
}}

void {n}_init({n}_state_t *st)
{{
    memset(st, 0, sizeof(*st));
    {n}_reset(st);
}}

size_t {n}_state_save(const {n}_state_t *st, void *buf)
{{
    memcpy(buf, st, sizeof(*st));
    return sizeof(*st);
}}

void {n}_state_load({n}_state_t *st, const void *buf)
{{
    memcpy(st, buf, sizeof(*st));
}}

int {n}_step({n}_state_t *st, const {n}_input_t *x, {n}_output_t *y)
{{
    (void)st;
    {chr(10).join("    " + ln for ln in prog.body).strip()}
    /* state outputs carry their inputs' quantization: copy them back for the next step */
{chr(10).join(copy_out)}
    return {p}_OK;
}}
{seq}"""


def _ref(prog: Program, idx: int) -> str:
    return prog.refs[idx]


def example_main(ifc: Interface) -> str:
    n, p = ifc.name, ifc.name.upper()
    xval = "1" if ifc.token_input else ("0" if ifc.x.dtype == "int8" else "0.0f")
    fmt = '"%g "' if ifc.y.dtype == "float32" else '"%d "'
    cast = "(double)" if ifc.y.dtype == "float32" else "(int)"
    return f"""/* Example: stream a few steps through {n} and print the outputs. */
#include <stdio.h>

#include "{n}_model.h"

int main(void)
{{
    static {n}_state_t state; /* caller-owned; save/restore = copy these bytes */
    {n}_input_t x[{p}_INPUT_SIZE];
    {n}_output_t y[{p}_OUTPUT_SIZE];
    int t, i;
    for (i = 0; i < {p}_INPUT_SIZE; ++i) {{
        x[i] = {xval};
    }}
    {n}_init(&state);
    for (t = 0; t < 4; ++t) {{
        if ({n}_step(&state, x, y) != {p}_OK) {{
            return 1;
        }}
        for (i = 0; i < {p}_OUTPUT_SIZE; ++i) {{
            printf({fmt}, {cast}y[i]);
        }}
        printf("\\n");
    }}
    return 0;
}}
"""


def makefile(name: str) -> str:
    return f"""# Host build of the {name} engine example: `make` then ./{name}_example
CC ?= cc
CFLAGS ?= -std=c99 -O2 -Wall -Wextra -Werror -pedantic
SRCS = {name}_model.c edgelstm_kernels.c main.c

{name}_example: $(SRCS) {name}_model.h edgelstm_kernels.h
\t$(CC) $(CFLAGS) -o $@ $(SRCS) -lm

# Cortex-M4 object files (link them into your firmware)
cortex-m4:
\tarm-none-eabi-gcc -std=c99 -O2 -Wall -Wextra -Werror -pedantic -mcpu=cortex-m4 -mthumb \\
\t  -mfloat-abi=hard -mfpu=fpv4-sp-d16 -c {name}_model.c edgelstm_kernels.c

clean:
\trm -f {name}_example *.o

.PHONY: cortex-m4 clean
"""


def readme(ifc: Interface, prog: Program, source: str, quantization: str) -> str:
    n, p = ifc.name, ifc.name.upper()
    states = (
        "\n".join(
            f"| `{s.field}` | {s.dtype} | {s.numel} | "
            + (f"{s.scale:.9g} / {s.zero_point}" if s.dtype == "int8" else "-")
            + " |"
            for s in ifc.states
        )
        or "| (none) | | | |"
    )
    quant_io = ""
    if ifc.x.dtype == "int8":
        quant_io = (
            f"\nint8 I/O: quantize inputs as `q = round(v / {p}_INPUT_SCALE) + "
            f"{p}_INPUT_ZERO_POINT` and read outputs as `({p}_OUTPUT_SCALE * (q - "
            f"{p}_OUTPUT_ZERO_POINT))`.\n"
        )
    seq = ""
    if ifc.sequence:
        seq = (
            f"\n`{n}_run_sequence(&st, x, steps, y)` loops `{n}_step` over a whole sequence "
            f"({'every step' if ifc.sequence['many_to_many'] else 'last step'} written to y).\n"
        )
    return f"""# {n} — standalone C engine

Generated by edgelstm {__version__} from `{source}` ({quantization}). Plain C99: weights are
`const` arrays, no malloc, no TFLite Micro. Files:

- `{n}_model.h` / `{n}_model.c` — this model: weights, scales, shapes and the step schedule
- `edgelstm_kernels.h` / `edgelstm_kernels.c` — the kernels (portable C; on a core with the DSP
  extension, e.g. Cortex-M4/M7/M33, the int8 kernels use SMLAD/UXTB16 and SMMULR/SSAT
  automatically; `-DEL_USE_DSP=0` forces the portable code)
- `main.c`, `Makefile` — a host example (`make && ./{n}_example`)

## API

```c
{n}_state_t st;          /* caller-owned recurrent state ({ifc.state_bytes} bytes of tensors) */
{n}_init(&st);           /* or {n}_reset(&st) to start a new stream */
{n}_step(&st, x, y);     /* x: {p}_INPUT_SIZE values, y: {p}_OUTPUT_SIZE values; returns {p}_OK */
```

Save/restore: the state struct is plain bytes — `memcpy` it (or `{n}_state_save` /
`{n}_state_load`) to checkpoint a stream and resume it later, bit-exactly.
{seq}{quant_io}
## State

| field | dtype | elements | scale / zero point |
|---|---|---|---|
{states}

## Memory

- constants (flash): {prog.const_bytes:,} B
- arena (RAM, static): {prog.arena_bytes:,} B; FC scratch {prog.scratch_i16 * 2:,} B
- MACs per step: {prog.macs:,}
"""
