"""`edgelstm export --target tflm`: a .tflite -> TFLite Micro sources, Arduino library, CMake project.

Pure part: `plan_tflm(model, ...) -> TFLMExport` (metadata + every output file as text, in memory).
`plan_export_tflm(model, ...)` adds the measured arena and returns an `ExportResult` (the export
registry's entry); `export_tflm(path, outdir, ...)` saves one. The flatbuffer is read with `edgelstm.tflite_info` (official schema bindings); the arena is
measured with the tflite-micro interpreter (`edgelstm.runtime.tflm_arena`); templates live in
firmware_export/tflm/.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm import __version__
from edgelstm.codegen.c import align_macro, c_float, c_identifier, format_bytes
from edgelstm.codegen.templates import environment
from edgelstm.errors import BadInputError
from edgelstm.export.result import ExportResult, write_export
from edgelstm.export.tflm_ops import resolver_methods
from edgelstm.paths import bundled_dir
from edgelstm.runtime.tflm_arena import ArenaReport, measure_arena
from edgelstm.tflite_info import TFLiteInfo, read_tflite
from edgelstm.types import (
    STEP_INPUT,
    STEP_OUTPUT,
    Artifact,
    ManifestLike,
    StateTensor,
    TensorInfo,
    as_manifest,
)

TEMPLATE_DIR = bundled_dir("firmware_export") / "tflm"
# Measured by tests/test_tflm_build.py (TFLM 90b983c, Cortex-M4 build, qemu): the CMSIS-NN
# UNIDIRECTIONAL_SEQUENCE_LSTM kernel (int8/int16x8) keeps h/c in scratch buffers and restarts
# from zero state on every Invoke(), while the reference kernels carry them in the variable
# tensors. The export README and model_io.h say so for fused quantized sequence models.
CMSIS_FUSED_RESTARTS = True
_DTYPE_BYTES = {"float32": 4, "int8": 1, "uint8": 1, "int16": 2, "int32": 4, "bool": 1}


@dataclass
class TFLMExport:
    """Everything `--target tflm` produces for one model, before it touches disk."""

    name: str  # C identifier used as file stem and symbol prefix
    files: dict[str, str | bytes]  # relative path -> content
    summary: dict[str, Any]  # the JSON result (sizes, arena, ops, tensors, states)
    notes: list[str] = field(default_factory=list)


def _numel(shape: list[int]) -> int:
    n = 1
    for d in shape:
        n *= max(int(d), 1)
    return n


def _tensor_ctx(t: TensorInfo, macro: str) -> dict[str, Any]:
    if t.dtype not in _DTYPE_BYTES:
        raise BadInputError(f"tensor '{t.name}' has dtype {t.dtype}, which TFLite Micro I/O lacks")
    n = _numel(t.shape)
    return {
        "name": t.name,
        "macro": macro,
        "index": t.index,
        "shape": list(t.shape),
        "shape_c": "{" + ", ".join(str(d) for d in t.shape) + "}",
        "dims": len(t.shape),
        "elements": n,
        "dtype": t.dtype,
        "bytes": n * _DTYPE_BYTES[t.dtype],
        "quantized": bool(t.scale),
        "scale_c": c_float(t.scale),
        "scale": t.scale,
        "zero_point": t.zero_point,
    }


def _macro_names(tensors: list[TensorInfo], kind: str) -> list[str]:
    """INPUT_X, OUTPUT_STATE0_H_OUT ...; falls back to INPUT<i> for unusable or clashing names."""
    names: list[str] = []
    for t in tensors:
        try:
            ident = c_identifier(t.name).upper()
        except BadInputError:
            ident = ""
        macro = f"{kind}_{ident}" if ident else f"{kind}{t.index}"
        names.append(macro)
    dupes = {m for m in names if names.count(m) > 1}
    return [f"{kind}{t.index}" if m in dupes else m for m, t in zip(names, tensors, strict=True)]


def _manifest_artifact(manifest: ManifestLike, file_name: str, size: int) -> Artifact | None:
    """The manifest's record of this very file (same name and size), else None."""
    m = as_manifest(manifest)
    for art in m.artifacts if m else []:
        if art.file == file_name and (not art.size_bytes or art.size_bytes == size):
            return art
    return None


def _quantization_guess(info: TFLiteInfo) -> str:
    """float / int8 / int16x8 / dynamic / float16 from I/O and weight dtypes (no manifest)."""
    # (an int8 step model's LSTM cell state may be int16, tflite.cell16: x and y decide)
    io = {t.dtype for t in info.inputs + info.outputs if not t.name.startswith("state")} or {
        t.dtype for t in info.inputs + info.outputs
    }
    if "int16" in io:
        return "int16x8"
    if "int8" in io or "uint8" in io:
        return "int8"
    weights = {t.dtype for t in info.tensors if t.buffer_bytes}
    if "float16" in weights:
        return "float16"
    if "int8" in weights:
        return "dynamic" if "DEQUANTIZE" not in info.op_set else "int8"
    return "float"


def _states(info: TFLiteInfo, art: Artifact | None) -> list[StateTensor]:
    """State pairs: the manifest's (layer names, reset values) when it matches the flatbuffer."""
    derived = info.states()
    if art is not None and art.states:
        by_input = {s.input: s for s in derived}
        if all(
            s.input in by_input and by_input[s.input].input_index == s.input_index
            for s in art.states
        ):
            return list(art.states)
    return derived


def _template_env() -> Any:
    return environment(TEMPLATE_DIR, extra="convert")


def render_template(template: str, ctx: dict[str, Any]) -> str:
    """One template of firmware_export/tflm/ rendered with an export context."""
    return _template_env().get_template(template).render(**ctx)


# (macro suffix, config key or None for the Python interpreter figure, where it is measured)
_ARENA_CONFIGS: list[tuple[str, str | None, str]] = [
    (
        "PY_REF_X86_64",
        None,
        "the tflite-micro Python package's interpreter (reference kernels, x86-64 host)",
    ),
    (
        "REF_X86_64",
        "ref-x86_64",
        "C++ build of a TFLM tree, reference kernels, g++ -O2, x86-64 host",
    ),
    (
        "CMSIS_NN_M4",
        "cmsis-nn-m4",
        "Cortex-M4F build of a TFLM tree with CMSIS-NN kernels, arm-none-eabi-g++ -O2, "
        "run on qemu mps2-an386",
    ),
]


def _arena_rows(arena: ArenaReport) -> list[dict[str, Any]]:
    rows = []
    for suffix, key, where in _ARENA_CONFIGS:
        if key is None:
            rows.append({"suffix": suffix, "bytes": arena.min_bytes, "where": where, "note": ""})
            continue
        b = arena.builds.get(key)
        if b:
            note = f"tree {b.get('tree_hash', '?')[:12]}, bisected in 16-byte steps"
            rows.append({"suffix": suffix, "bytes": b["min_bytes"], "where": where, "note": note})
        else:
            reason = arena.absent.get(key, "not measured at export time")
            rows.append({"suffix": suffix, "bytes": None, "where": where, "note": reason})
    return rows


def build_context(
    model: bytes,
    *,
    name: str,
    progmem: bool = False,
    manifest: ManifestLike = None,
    source_file: str = "model.tflite",
    arena: ArenaReport | None = None,
) -> dict[str, Any]:
    """The values every template sees (also the basis of the JSON summary)."""
    ident = c_identifier(name)
    prefix = ident.upper()
    info = read_tflite(model)
    methods = resolver_methods(info.all_op_names)
    art = _manifest_artifact(manifest, source_file, len(model))
    states = _states(info, art)
    variant = art.variant.value if art else ("step" if states else "sequence")
    quant = art.quantization.value if art else _quantization_guess(info)
    if arena is None:
        arena = measure_arena(model)

    in_macros = _macro_names(info.inputs, "INPUT")
    out_macros = _macro_names(info.outputs, "OUTPUT")
    inputs = [_tensor_ctx(t, m) for t, m in zip(info.inputs, in_macros, strict=True)]
    outputs = [_tensor_ctx(t, m) for t, m in zip(info.outputs, out_macros, strict=True)]
    by_in = {t["name"]: t for t in inputs}
    # x / y: the data tensor of a one-input, one-output model; with several (x0, x1, ... /
    # y0, y1, ...) the first in signature order (the README's tensor table lists every one)
    data_in = sorted(
        (t for t in inputs if t["name"] not in {s.input for s in states}),
        key=lambda t: (len(t["name"]), t["name"]),
    )
    data_out = sorted(
        (t for t in outputs if t["name"] not in {s.output for s in states}),
        key=lambda t: (len(t["name"]), t["name"]),
    )
    x = by_in.get(STEP_INPUT) or next(iter(data_in), inputs[0])
    y = next((t for t in outputs if t["name"] == STEP_OUTPUT), None) or next(
        iter(data_out), outputs[0]
    )
    if art is not None:  # the Keras input / output each tensor stands for (several only)
        keras = {t.name: t.keras_name for t in art.inputs + art.outputs if t.keras_name}
        for t in inputs + outputs:
            if t["name"] in keras:
                t["keras_name"] = keras[t["name"]]
    state_ctx = []
    for k, s in enumerate(states):
        t_in = inputs[s.input_index]
        raw = s.reset_raw
        state_ctx.append(
            {
                "k": k,
                "layer": s.layer,
                "role": s.role,
                "input": s.input,
                "output": s.output,
                "input_index": s.input_index,
                "output_index": s.output_index,
                "shape": list(s.shape),
                "elements": t_in["elements"],
                "bytes": t_in["bytes"],
                "dtype": s.dtype,
                "scale": s.scale,
                "scale_c": c_float(s.scale),
                "zero_point": s.zero_point,
                "reset_value": s.reset_value,
                "reset_value_c": c_float(s.reset_value),
                "reset_raw": raw,
                "reset_raw_c": c_float(float(raw)) if s.dtype == "float32" else str(int(raw)),
            }
        )
    per_op = [{"index": op.index, "op": op.name, "macs": op.macs} for op in info.ops if op.macs]
    return {
        "name": name,
        "ident": ident,
        "prefix": prefix,
        "lib_name": "EdgeLSTM_" + ident,
        "version": __version__,
        "source_file": source_file,
        "sha256": hashlib.sha256(model).hexdigest(),
        "model_len": len(model),
        "model_bytes": format_bytes(model),
        "metadata_from": "manifest.json" if art else "flatbuffer",
        "variant": variant,
        "is_step": variant == "step",
        "quantization": quant,
        "fused_lstm": info.fused_lstm,
        "ops": [op for op, _ in methods],
        "op_counts": info.op_counts,
        "resolver": [{"op": op, "method": m} for op, m in methods],
        "op_count": len(methods),
        "macs": info.macs,
        "macs_by_op": per_op,
        "params": info.params,
        "inputs": inputs,
        "outputs": outputs,
        "x": x,
        "y": y,
        "states": state_ctx,
        "max_state_bytes": max((s["bytes"] for s in state_ctx), default=0),
        "arena": arena.to_dict(),
        "arena_rows": _arena_rows(arena),
        "arena_figures": "; ".join(
            f"{r['suffix']} {r['bytes']} B" if r["bytes"] is not None else f"{r['suffix']} n/a"
            for r in _arena_rows(arena)
        ),
        "progmem": progmem,
        "align_macro": align_macro(prefix),
        "variable_tensors": len(info.variable_tensors),
        "cmsis_fused_restarts": CMSIS_FUSED_RESTARTS,
        "cmsis_fused_applies": bool(info.fused_lstm) and quant in ("int8", "int16x8"),
    }


# template -> output path (formatted with the context); None in `when` means always
_LAYOUT: list[tuple[str, str, str | None]] = [
    ("model_data.h.j2", "{ident}_model_data.h", None),
    ("model_data.c.j2", "{ident}_model_data.c", None),
    ("op_resolver.h.j2", "{ident}_op_resolver.h", None),
    ("op_resolver.cpp.j2", "{ident}_op_resolver.cpp", None),
    ("README.md.j2", "README.md", None),
    ("arduino/library.properties.j2", "arduino/{lib_name}/library.properties", None),
    ("arduino/library.h.j2", "arduino/{lib_name}/src/{lib_name}.h", None),
    ("model_data.h.j2", "arduino/{lib_name}/src/{ident}_model_data.h", None),
    ("model_data.c.j2", "arduino/{lib_name}/src/{ident}_model_data.c", None),
    ("op_resolver.h.j2", "arduino/{lib_name}/src/{ident}_op_resolver.h", None),
    ("op_resolver.cpp.j2", "arduino/{lib_name}/src/{ident}_op_resolver.cpp", None),
    ("model_io.h.j2", "arduino/{lib_name}/src/{ident}_model_io.h", None),
    ("model_io.h.j2", "{ident}_model_io.h", None),
    (
        "arduino/stream.ino.j2",
        "arduino/{lib_name}/examples/{ident}_stream/{ident}_stream.ino",
        "step",
    ),
    (
        "arduino/sequence.ino.j2",
        "arduino/{lib_name}/examples/{ident}_sequence/{ident}_sequence.ino",
        "sequence",
    ),
    ("cmake/CMakeLists.txt.j2", "cmake/CMakeLists.txt", None),
    ("cmake/main.cpp.j2", "cmake/main.cpp", None),
]


def summarize(ctx: dict[str, Any]) -> dict[str, Any]:
    """The JSON-able result of an export (what `--json` prints)."""
    keep = [
        "name",
        "variant",
        "quantization",
        "fused_lstm",
        "ops",
        "op_counts",
        "op_count",
        "macs",
        "params",
        "inputs",
        "outputs",
        "states",
        "arena",
        "sha256",
        "metadata_from",
        "progmem",
    ]
    out = {k: ctx[k] for k in keep}
    out["c_name"] = ctx["ident"]
    if ctx["cmsis_fused_applies"]:
        out["fused_lstm_state_across_invokes"] = {
            "reference_kernels": "carried in the variable tensors",
            "cmsis_nn_kernels": "restarts from zero on every Invoke()"
            if ctx["cmsis_fused_restarts"]
            else "carried in the variable tensors",
            "measured": "TFLM 90b983c, Cortex-M4 build under qemu vs host reference build, T=1",
        }
    out["target"] = "tflm"
    out["source"] = ctx["source_file"]
    out["size"] = {
        "flash_model_bytes": ctx["model_len"],
        "ram_arena_used_bytes": ctx["arena"]["used_bytes"],
        "ram_arena_min_bytes": ctx["arena"]["overall_min_bytes"],
        "ram_arena_min_bytes_by_build": {r["suffix"]: r["bytes"] for r in ctx["arena_rows"]},
        "ram_arena_recommended_bytes": ctx["arena"]["recommended_bytes"],
        "ram_io_note": "I/O tensors live inside the arena",
    }
    for t in out["inputs"] + out["outputs"]:
        t.pop("scale_c", None)
        t.pop("shape_c", None)
    for s in out["states"]:
        s.pop("scale_c", None)
        s.pop("reset_value_c", None)
        s.pop("reset_raw_c", None)
    return out


def plan_tflm(
    model: bytes,
    *,
    name: str,
    progmem: bool = False,
    manifest: ManifestLike = None,
    source_file: str = "model.tflite",
    arena: ArenaReport | None = None,
) -> TFLMExport:
    """Render every output file for `model` in memory (no disk writes)."""
    ctx = build_context(
        model,
        name=name,
        progmem=progmem,
        manifest=manifest,
        source_file=source_file,
        arena=arena,
    )
    env = _template_env()
    files: dict[str, str | bytes] = {}
    for template, out, when in _LAYOUT:
        if when is not None and when != ctx["variant"]:
            continue
        path = out.format(ident=ctx["ident"], lib_name=ctx["lib_name"])
        files[path] = env.get_template(template).render(**ctx)
    summary = summarize(json.loads(json.dumps(ctx, default=str)))
    summary["files"] = sorted(files)
    files["export.json"] = json.dumps(summary, indent=2) + "\n"
    notes = []
    if ctx["variant"] == "sequence" and ctx["variable_tensors"]:
        notes.append(
            "the fused LSTM keeps h/c in variable tensors: call interpreter.Reset() "
            "before every new sequence (the sketch does)"
        )
    return TFLMExport(name=ctx["ident"], files=files, summary=summary, notes=notes)


def plan_export_tflm(
    model: bytes,
    *,
    name: str = "model",
    progmem: bool = False,
    manifest: ManifestLike = None,
    real_builds: list[str] | None = None,
    source_file: str | None = None,
    files: Mapping[str, bytes] | None = None,
) -> ExportResult:
    """The TFLite Micro export of `model` in memory, its arena measured (the registry's entry;
    `files`, the other artifacts, are not needed: a TFLite Micro export stands on its own).

    `real_builds`: configurations of `tflm_build` (ref-x86_64, cmsis-nn-m4) whose arena is
    measured in a real build; None = each one whose tree variable is set and whose tools exist."""
    read_tflite(model)  # clear BadInputError for non-.tflite input
    kw: dict[str, Any] = {
        "name": name,
        "progmem": progmem,
        "manifest": manifest,
        "source_file": source_file or f"{name}.tflite",
    }
    arena = measure_arena(model)
    arena = measure_real_arenas(model, arena, real_builds, **kw)
    plan = plan_tflm(model, arena=arena, **kw)
    return ExportResult(dict(plan.files), {**plan.summary, "notes": plan.notes})


def export_tflm(
    tflite_path: Path,
    outdir: Path,
    *,
    name: str | None = None,
    progmem: bool = False,
    manifest: ManifestLike = None,
    real_builds: list[str] | None = None,
) -> dict[str, Any]:
    """Export `tflite_path` for TFLite Micro into `outdir`; returns the JSON summary."""
    tflite_path = Path(tflite_path)
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: exists and is not a directory")
    read_tflite(tflite_path)  # clear BadInputError for a missing or non-.tflite file
    return plan_export_tflm(
        tflite_path.read_bytes(), name=name or tflite_path.stem, progmem=progmem,
        manifest=manifest, real_builds=real_builds, source_file=tflite_path.name,
    ).save(outdir)  # fmt: skip


def export_for_build(
    model: bytes, outdir: Path, *, name: str = "model", arena: ArenaReport | None = None, **kw: Any
) -> tuple[Path, dict[str, Any]]:
    """Write an export of `model` into `outdir` (no real-build measurement) and return it with
    its template context: what `tflm_build.build_probe` compiles."""
    plan_kw = {"name": name, **kw}
    arena = arena or measure_arena(model)
    write_export(plan_tflm(model, arena=arena, **plan_kw).files, Path(outdir))
    return Path(outdir), build_context(model, arena=arena, **plan_kw)


def measure_real_arenas(
    model: bytes, arena: ArenaReport, configs: list[str] | None, **kw: Any
) -> ArenaReport:
    """`arena` plus the smallest arena of each real build in `configs` (None: each whose tree
    variable is set and whose tools exist); the others are recorded as absent, with why."""
    from edgelstm.export import tflm_build as tb

    builds: dict[str, dict[str, Any]] = {}
    absent: dict[str, str] = {}
    todo: list[tuple[str, Path]] = []
    for config in tb.CONFIGS:
        env = tb.TREE_ENV[config]
        if configs is not None and config not in configs:
            absent[config] = "not measured (export run without this build)"
            continue
        tree = tb.find_tree(config, default=configs is not None)
        missing = tb.missing_tools(config)
        if tree is None:
            absent[config] = f"not measured: ${env} was not set to a TFLM tree at export time"
        elif missing:
            absent[config] = f"not measured: {', '.join(missing)} not found at export time"
        else:
            todo.append((config, tree))
    if todo:
        with tempfile.TemporaryDirectory(prefix="edgelstm-arena-build-") as tmp:
            exp, ctx = export_for_build(model, Path(tmp) / "export", arena=arena, **kw)
            for config, tree in todo:
                try:
                    probe = tb.build_probe(config, exp, ctx, Path(tmp) / config, tree=tree)
                    min_bytes, runs = tb.measure_arena_on(probe, arena.min_bytes)
                    run = tb.run_probe(probe, min_bytes, steps=2)
                except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
                    # e.g. CMSIS-NN's debug check aborting a fused int8 LSTM in Invoke(): the
                    # model does not run on that build, which the header then says
                    absent[config] = f"not measured: the model did not run on this build ({exc})"
                    continue
                builds[config] = {
                    "min_bytes": min_bytes,
                    "used_bytes": run.arena_used,
                    "probes": runs,
                    "measured_on": tb.CONFIGS[config].description,
                    "tree_hash": tb.tree_hash(tree),
                }
    return arena.with_builds(builds, absent)
