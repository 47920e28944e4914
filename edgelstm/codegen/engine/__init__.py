"""The standalone C engine's generator: a step .tflite -> the C99 files of an engine (no malloc,
no TFLite Micro), in memory. Pure code generation: nothing is written, compiled or run here (the
exporter `edgelstm.export.cengine` writes and verifies; the native runtime compiles).

    generate(Path("out/model_step_int8.tflite"), name="echo", manifest=None) -> GeneratedEngine

`graph` reads the step model, `lower` turns its ops into C kernel calls, `emit` renders the
model-specific files around them from the templates in firmware_export/cengine/templates/; the
fixed kernels come from firmware_export/cengine/.

A sequence .tflite is accepted when its manifest names a step sibling of the same quantization:
the engine is built from the step model and gains `<name>_run_sequence()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgelstm.codegen.c import check_identifier
from edgelstm.codegen.engine.emit import (
    Interface,
    build_interface,
    example_main,
    kernel_sources,
    makefile,
    model_header,
    model_source,
    readme,
)
from edgelstm.codegen.engine.graph import Graph, load_graph
from edgelstm.codegen.engine.lower import ROUNDINGS, Program, lower
from edgelstm.errors import BadInputError, UnsupportedLayerError
from edgelstm.types import (
    Artifact,
    Manifest,
    ManifestLike,
    OutputKind,
    Quantization,
    Variant,
    as_manifest,
)

__all__ = ["ROUNDINGS", "GeneratedEngine", "generate"]


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
