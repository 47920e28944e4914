"""`edgelstm export --target c`: a step .tflite -> a standalone C99 engine (no malloc, no TFLite
Micro), optionally verified on the host and on an emulated Cortex-M4.

    export_c(Path("out/model_step_int8.tflite"), Path("engine"), name="echo", verify=["host"],
             manifest=None) -> dict   # JSON-able: files, sizes, MACs, parity, cycles

The files come from `edgelstm.codegen.engine.generate`; this package writes them, runs the
requested checks (`verify`: host gcc with sanitizers, qemu boards, against LiteRT/TFLite Micro)
and reports sizes, parity and cycles.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from edgelstm import __version__
from edgelstm.codegen.engine import GeneratedEngine, generate
from edgelstm.codegen.engine.graph import read_model
from edgelstm.errors import BadInputError, VerificationError
from edgelstm.export.result import ExportResult, write_export
from edgelstm.fsutil import DirectoryFiles
from edgelstm.types import ManifestLike

__all__ = ["breakdown", "export_c", "plan_export_c", "verify_engine"]


def _result(eng: GeneratedEngine, source: str) -> dict[str, Any]:
    ifc, prog = eng.ifc, eng.prog
    return {
        "source": source,
        "step_model": eng.step_file,
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
    kernels (TFLite Micro's when it has a kernel for every op, else LiteRT BUILTIN_REF); the LSB
    distance from every other kernel set is reported beside it."""
    from edgelstm.export.cengine import verify as v

    inputs = v.make_inputs(eng.ifc, streams, steps, seed, eng.vocab)
    primary = (
        "ref" if eng.meta.get("rounding") == "litert-ref" else v.primary_kernels(eng.step_data)
    )
    ref_y, ref_states = v.reference(eng.step_data, eng.ifc, inputs, primary)
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
    if (
        primary == "ref"
        and eng.meta.get("rounding") != "litert-ref"
        and v.primary_kernels() == "tflm"
    ):
        # the engine still rounds int8 FULLY_CONNECTED as TFLite Micro does (twice)
        parity["note"] = (
            "TFLite Micro has no kernel for an op of this model: compared with LiteRT BUILTIN_REF, "
            "whose int8 FULLY_CONNECTED rounds once (--rounding litert-ref reproduces it)"
        )
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


def plan_export_c(
    model: bytes,
    *,
    name: str,
    manifest: ManifestLike = None,
    source_file: str | None = None,
    files: Mapping[str, bytes] | None = None,
    verify: list[str] | tuple[str, ...] = (),
    rounding: str = "tflm",
    core: str = "m4",
) -> ExportResult:
    """The engine of `model` in memory, after the requested checks (`verify`: host, qemu; run
    in a work directory of their own; `core`: the emulated board of the qemu check,
    verify.CORES). A check that disagrees with the reference kernels raises VerificationError.
    `files`: other artifacts by name (a sequence model's step sibling)."""
    from edgelstm.export.cengine.verify import CORES

    if core not in CORES:  # before anything runs
        raise BadInputError(f"unknown core '{core}' ({', '.join(CORES)})")
    # the qemu core is the deployment target: a Helium core gets the MVE weight layout
    isa = "mve" if core == "m55" else "dsp"
    source = source_file or f"{name}.tflite"
    eng = generate(
        model, name=name, manifest=manifest, rounding=rounding, isa=isa, source_file=source,
        files=files,
    )  # fmt: skip
    result = _result(eng, source)
    if verify:
        with tempfile.TemporaryDirectory(prefix="edgelstm-c-src-") as tmp:
            write_export(dict(eng.files), Path(tmp) / "engine")
            failures = []
            for target in dict.fromkeys(verify):
                res = verify_engine(eng, Path(tmp) / "engine", target, core=core)
                result["verify"][target] = res
                if not res["parity"]["ok"]:
                    failures.append(f"{target}: {json.dumps(res['parity'], default=str)}")
        if failures:
            raise VerificationError(
                "C engine disagrees with the reference kernels: " + "; ".join(failures)
            )
    return ExportResult(dict(eng.files), result)


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
    """Generate the engine of the file `tflite_path` (a sequence model: its step sibling beside
    it), run the requested checks, then write it into `outdir` (atomically)."""
    tflite_path, outdir = Path(tflite_path), Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: exists and is not a directory")
    res = plan_export_c(
        read_model(tflite_path), name=name, manifest=manifest, source_file=tflite_path.name,
        files=DirectoryFiles(tflite_path.parent), verify=verify, rounding=rounding,
        core=core,
    )  # fmt: skip
    res.summary["source"] = str(tflite_path)
    return res.save(outdir)
