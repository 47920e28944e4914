"""`edgelstm export --target c`: a step .tflite -> a standalone C99 engine (no malloc, no TFLite
Micro), optionally verified on the host and on an emulated Cortex-M4.

    export_c(Path("out/model_step_int8.tflite"), Path("engine"), name="echo", verify=["host"],
             manifest=None) -> dict   # JSON-able: files, sizes, MACs, parity, cycles

A sequence .tflite is accepted when its manifest names a step sibling of the same quantization:
the engine is built from the step model and gains `<name>_run_sequence()`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgelstm import __version__
from edgelstm.errors import BadInputError, UnsupportedLayerError, VerificationError
from edgelstm.export.cengine.emit import (
    Interface,
    build_interface,
    example_main,
    kernel_sources,
    makefile,
    model_header,
    model_source,
    readme,
)
from edgelstm.export.cengine.graph import Graph, load_graph
from edgelstm.export.cengine.lower import ROUNDINGS, Program, lower
from edgelstm.export.cgen import check_identifier
from edgelstm.types import (
    Artifact,
    Manifest,
    ManifestLike,
    OutputKind,
    Quantization,
    Variant,
    as_manifest,
)

__all__ = ["GeneratedEngine", "export_c", "generate"]


class GeneratedEngine:
    """The in-memory result of generation: files plus what verification needs."""

    def __init__(
        self,
        files: dict[str, str],
        ifc: Interface,
        prog: Program,
        graph: Graph,
        step: Path,
        meta: dict[str, Any],
    ) -> None:
        self.files = files
        self.ifc = ifc
        self.prog = prog
        self.graph = graph
        self.step_path = step
        self.meta = meta

    @property
    def vocab(self) -> int:
        for op in self.graph.ops:
            if op.name == "GATHER":
                return int(self.graph.tensors[op.inputs[0]].shape[0])
        return 0


def _artifact(manifest: Manifest | None, file_name: str) -> Artifact | None:
    return next((a for a in manifest.artifacts if a.file == file_name), None) if manifest else None


def _resolve_step(
    path: Path, manifest: Manifest | None
) -> tuple[Path, Artifact | None, dict[str, Any] | None]:
    """(step .tflite, its manifest entry, sequence info or None)."""
    art = _artifact(manifest, path.name)
    if manifest is None or art is None or art.variant != Variant.SEQUENCE:
        if art is None:
            ops = load_graph(path).info.op_set
            if "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops:
                raise BadInputError(
                    f"{path.name} is a sequence model and no manifest.json names its step model; "
                    "export the *_step_*.tflite written by `edgelstm convert`"
                )
        return path, art, None
    q = art.quantization
    sibling = next(
        (a for a in manifest.artifacts if a.variant == Variant.STEP and a.quantization == q),
        None,
    )
    if sibling is None or not (path.parent / sibling.file).is_file():
        raise BadInputError(
            f"{path.name} is a sequence model without a {q.value} step model beside it; convert "
            "with --variants step (the C engine runs step models, sequences as a loop over steps)"
        )
    seq = {
        "steps": int(manifest.model.seq_len or 1),
        "many_to_many": manifest.model.output_kind == OutputKind.MANY_TO_MANY,
        "sequence_model": path.name,
    }
    return path.parent / sibling.file, sibling, seq


def generate(
    tflite_path: Path,
    *,
    name: str,
    manifest: ManifestLike = None,
    rounding: str = "tflm",
    isa: str = "dsp",
) -> GeneratedEngine:
    """Lower and emit, in memory (no disk writes). `rounding`: whose int8 FULLY_CONNECTED
    rounding to reproduce bit for bit, "tflm" (TFLite Micro's reference kernels, the default)
    or "litert-ref" (LiteRT BUILTIN_REF). `isa`: the int8 FC weight layout, "dsp" (Cortex-M DSP
    row pairs) or "mve" (Helium row tiles); either runs anywhere through the portable C."""
    check_identifier(name)
    if rounding not in ROUNDINGS:
        raise BadInputError(f"unknown rounding '{rounding}' ({', '.join(ROUNDINGS)})")
    tflite_path = Path(tflite_path)
    m = as_manifest(manifest)
    step, art, seq = _resolve_step(tflite_path, m)
    graph = load_graph(step)
    if (art and art.quantization == Quantization.INT16X8) or any(
        t.dtype == "int16" for t in graph.tensors
    ):
        sibling = step.name.replace("int16x8", "int8")
        raise UnsupportedLayerError(
            f"{step.name}: the C engine runs float and int8 step models, not int16x8 (int16 "
            f"activations); export {sibling if sibling != step.name else 'the int8 artifact'} "
            "instead, or use --target tflm (TFLite Micro has int16x8 kernels)"
        )
    layers = [layer for layer in m.model.layers if layer.name] if m else []
    prog = lower(graph, name, layers, rounding, isa)
    resets = {s.input: float(s.reset_value) for s in art.states} if art else {}
    ifc = build_interface(graph, name, resets, seq)
    quantization = (
        art.quantization.value
        if art
        else (
            "int8"
            if graph.tensors[graph.inputs["x"]].dtype in ("int8",)
            or any(t.dtype == "int8" for t in graph.tensors)
            else "float"
        )
    )
    files = {
        f"{name}_model.h": model_header(ifc, prog, step.name, quantization),
        f"{name}_model.c": model_source(ifc, prog, graph),
        "main.c": example_main(ifc),
        "Makefile": makefile(name),
        "README.md": readme(ifc, prog, step.name, quantization),
        **kernel_sources(),
    }
    meta = {
        "quantization": quantization,
        "sequence": seq,
        "step_model": str(step),
        "rounding": rounding,
        "isa": isa,
    }
    return GeneratedEngine(files, ifc, prog, graph, step, meta)


def _result(eng: GeneratedEngine, source: Path, outdir: Path) -> dict[str, Any]:
    ifc, prog = eng.ifc, eng.prog
    return {
        "source": str(source),
        "step_model": str(eng.step_path),
        "outdir": str(outdir),
        "c_name": ifc.name,
        "quantization": eng.meta["quantization"],
        "run_sequence": bool(eng.meta["sequence"]),
        "rounding": eng.meta.get("rounding", "tflm"),
        "isa": eng.meta.get("isa", "dsp"),
        "edgelstm_version": __version__,
        "ops": sorted(set(prog.kernels)),
        "op_count": len(prog.kernels),
        "macs_per_step": prog.macs,
        "input": {
            "dtype": ifc.x.dtype,
            "size": ifc.x.numel,
            "scale": ifc.x.scale,
            "zero_point": ifc.x.zp,
        },
        "output": {
            "dtype": ifc.y.dtype,
            "size": ifc.y.numel,
            "scale": ifc.y.scale,
            "zero_point": ifc.y.zp,
        },
        "states": [
            {
                "field": s.field,
                "dtype": s.dtype,
                "elements": s.numel,
                "scale": s.scale,
                "zero_point": s.zero_point,
            }
            for s in ifc.states
        ],
        "size": {
            "weight_bytes": prog.weight_bytes,
            "const_bytes": prog.const_bytes,
            "arena_bytes": prog.arena_bytes,
            "scratch_bytes": prog.scratch_i16 * 2,
            "state_bytes": ifc.state_bytes,
        },
        "files": sorted(eng.files),
        "verify": {},
    }


def _n_prof(eng: GeneratedEngine) -> int:
    return max((o[0] for o in eng.prog.ops), default=0) + 1


_RECURRENT_OPS = {"LOGISTIC", "TANH", "MUL"}


def breakdown(prog: Any, per_op: dict[int, float], step_total: float) -> dict[str, Any]:
    """Where a step's instructions go: per op, and grouped (FC, gates, cell update, requantize,
    head, the rest = state copy + call), from the per-op profile build (qemu counts
    instructions, not cycles)."""
    # schedule order: an FC starts a layer's gates, its first MUL starts the cell/state update;
    # whatever follows the last recurrent op (Dense, SOFTMAX) is the head
    last_rec = max((i for i, kind, _, _ in prog.ops if kind in _RECURRENT_OPS), default=-1)
    groups = dict.fromkeys(("fc", "gates", "cell_update", "requantize", "head", "other"), 0.0)
    phase = "gates"
    rows = []
    for idx, kind, layer, fused in prog.ops:
        n = per_op.get(idx, 0.0)
        if kind in ("QUANTIZE", "DEQUANTIZE"):
            g = "requantize"
        elif idx > last_rec:
            g = "head"
        elif kind == "FULLY_CONNECTED":
            g, phase = "fc", "gates"
        else:
            phase = "cell_update" if kind == "MUL" else phase
            g = phase
        groups[g] += n
        rows.append(
            {
                "op": idx,
                "kind": kind,
                "layer": layer,
                "group": g,
                "fused": fused,
                "instructions": round(n),
            }
        )
    groups["other"] = max(0.0, step_total - sum(groups.values()))
    fc = groups["fc"] + sum(
        r["instructions"] for r in rows if r["group"] == "head" and r["kind"] == "FULLY_CONNECTED"
    )
    return {
        "groups": {k: round(v) for k, v in groups.items()},
        "fc_all_instructions_per_mac": round(fc / prog.macs, 3) if prog.macs else None,
        "non_fc_instructions": round(max(0.0, step_total - fc)),
        "per_op": rows,
        "note": "qemu counts instructions, not cycles; per-op figures are SysTick averages over "
        "the verify steps (40 instructions a tick) from a separate build with the EL_PROFILE "
        "hook, hook cost subtracted; 'other' = state copy-back and call overhead",
    }


def verify_engine(
    eng: GeneratedEngine,
    src_dir: Path,
    target: str,
    *,
    streams: int = 3,
    steps: int = 8,
    seed: int = 0,
    sanitize: bool = True,
    core: str = "m4",
) -> dict[str, Any]:
    """Run the generated engine (`src_dir`) on `target` and compare with TFLite's reference
    kernels (TFLite Micro's, else LiteRT BUILTIN_REF); the LSB distance from every other kernel
    set is reported beside it."""
    from edgelstm.export.cengine import verify as v

    inputs = v.make_inputs(eng.ifc, streams, steps, seed, eng.vocab)
    primary = "ref" if eng.meta.get("rounding") == "litert-ref" else v.primary_kernels()
    ref_y, ref_states = v.reference(eng.step_path, eng.ifc, inputs, primary)
    if target == "host":
        got = v.run_host(src_dir, eng.ifc, inputs, eng.prog.macs, sanitize=sanitize)
    elif target == "qemu":
        if core not in v.CORES:
            raise BadInputError(f"unknown core '{core}' ({', '.join(v.CORES)})")
        got = v.run_qemu(src_dir, eng.ifc, inputs, eng.prog.macs, core=core)
    else:
        raise BadInputError(f"unknown verify target '{target}' (host, qemu)")
    parity = v.compare(eng.ifc, got, ref_y, ref_states)
    parity["reference"] = v.KERNEL_LABELS[primary]
    if eng.ifc.y.dtype == "int8":  # measured, not asserted: the other kernel sets round differently
        parity["kernel_sets"] = v.kernel_distances(eng, got, inputs, skip=primary)
    res: dict[str, Any] = {"parity": parity}
    if target == "host":
        res["compiler"] = "gcc -std=c99 -Wall -Wextra -Werror -pedantic" + (
            " -fsanitize=address,undefined" if sanitize else ""
        )
    else:
        res["cycles"] = got["cycles"]
        prof = v.run_qemu(
            src_dir, eng.ifc, inputs, eng.prog.macs, profile_ops=_n_prof(eng), core=core
        )
        res["cycles"]["breakdown"] = breakdown(
            eng.prog, prof["profile"], got["cycles"]["instructions_per_step_median"]
        )
        res["size"] = got["size"]
        board = v.CORES[core]
        res["core"] = {"name": core, "qemu_machine": board.machine, "cpu": board.cpu}
        cc = "riscv64-unknown-elf-gcc" if board.arch == "riscv" else "arm-none-eabi-gcc"
        res["compiler"] = f"{cc} -O2 " + " ".join(board.flags)
    return res


def export_c(
    tflite_path: Path,
    outdir: Path,
    *,
    name: str,
    verify: list[str] | tuple[str, ...] = (),
    manifest: ManifestLike = None,
    rounding: str = "tflm",
    core: str = "m4",
) -> dict[str, Any]:
    """Generate the engine into `outdir` (atomically), then run the requested checks
    (`core`: the emulated board of the qemu check, verify.CORES)."""
    from edgelstm.export.cengine.verify import CORES
    from edgelstm.export.tflm import write_export

    if core not in CORES:  # before anything is written
        raise BadInputError(f"unknown core '{core}' ({', '.join(CORES)})")
    tflite_path, outdir = Path(tflite_path), Path(outdir)
    # the qemu core is the deployment target: a Helium core gets the MVE weight layout
    isa = "mve" if core == "m55" else "dsp"
    eng = generate(tflite_path, name=name, manifest=manifest, rounding=rounding, isa=isa)
    write_export(dict(eng.files), outdir)
    result = _result(eng, tflite_path, outdir)
    failures = []
    for target in dict.fromkeys(verify):
        res = verify_engine(eng, outdir, target, core=core)
        result["verify"][target] = res
        if not res["parity"]["ok"]:
            failures.append(f"{target}: {json.dumps(res['parity'], default=str)}")
    if failures:
        raise VerificationError(
            "C engine disagrees with the reference kernels: " + "; ".join(failures)
        )
    return result
