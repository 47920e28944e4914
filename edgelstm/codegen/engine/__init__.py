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

from collections.abc import Mapping
from dataclasses import dataclass
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
from edgelstm.codegen.engine.graph import Graph, load_graph, read_model
from edgelstm.codegen.engine.lower import ROUNDINGS, Program, lower
from edgelstm.errors import BadInputError, UnsupportedLayerError
from edgelstm.fsutil import DirectoryFiles
from edgelstm.types import (
    Artifact,
    Manifest,
    ManifestLike,
    OutputKind,
    Quantization,
    Variant,
    as_manifest,
)

__all__ = ["ROUNDINGS", "GeneratedEngine", "ModelFile", "generate"]


class GeneratedEngine:
    """The in-memory result of generation: files plus what verification needs."""

    def __init__(
        self,
        files: dict[str, str],
        ifc: Interface,
        prog: Program,
        graph: Graph,
        step: ModelFile,
        meta: dict[str, Any],
    ) -> None:
        self.files = files
        self.ifc = ifc
        self.prog = prog
        self.graph = graph
        self.step_file = step.name  # the step model the engine runs, and its bytes
        self.step_data = step.data
        self.meta = meta

    @property
    def vocab(self) -> int:
        for op in self.graph.ops:
            if op.name == "GATHER":
                return int(self.graph.tensors[op.inputs[0]].shape[0])
        return 0


def _artifact(manifest: Manifest | None, file_name: str) -> Artifact | None:
    return next((a for a in manifest.artifacts if a.file == file_name), None) if manifest else None


@dataclass(frozen=True)
class ModelFile:
    """A .tflite by file name, with its bytes."""

    name: str
    data: bytes


def _resolve_step(
    model: ModelFile, manifest: Manifest | None, files: Mapping[str, bytes]
) -> tuple[ModelFile, Artifact | None, dict[str, Any] | None]:
    """(step model, its manifest entry, sequence info or None)."""
    art = _artifact(manifest, model.name)
    if manifest is None or art is None or art.variant != Variant.SEQUENCE:
        if art is None:
            ops = load_graph(model.data, model.name).info.op_set
            if "UNIDIRECTIONAL_SEQUENCE_LSTM" in ops:
                raise BadInputError(
                    f"{model.name} is a sequence model and no manifest.json names its step "
                    "model; export the *_step_*.tflite written by `edgelstm convert`"
                )
        return model, art, None
    q = art.quantization
    sibling = next(
        (a for a in manifest.artifacts if a.variant == Variant.STEP and a.quantization == q),
        None,
    )
    if sibling is None or sibling.file not in files:
        raise BadInputError(
            f"{model.name} is a sequence model without a {q.value} step model beside it; convert "
            "with --variants step (the C engine runs step models, sequences as a loop over steps)"
        )
    seq = {
        "steps": int(manifest.model.seq_len or 1),
        "many_to_many": manifest.model.output_kind == OutputKind.MANY_TO_MANY,
        "sequence_model": model.name,
    }
    return ModelFile(sibling.file, files[sibling.file]), sibling, seq


def generate(
    model: Path | bytes,
    *,
    name: str,
    manifest: ManifestLike = None,
    rounding: str = "tflm",
    isa: str = "dsp",
    source_file: str | None = None,
    files: Mapping[str, bytes] | None = None,
    split_input: bool = False,
    fuse_fc_add: bool = False,
) -> GeneratedEngine:
    """Lower and emit, in memory (no disk writes). `model`: a .tflite file, or its bytes
    (`source_file`: its name in the manifest; `files`: the other artifacts' bytes by file name,
    where a sequence model finds its step sibling; a file finds them beside it).

    `rounding`: whose int8 FULLY_CONNECTED rounding to reproduce bit for bit, "tflm" (TFLite
    Micro's reference kernels, the default) or "litert-ref" (LiteRT BUILTIN_REF). `isa`: the int8
    FC weight layout, "dsp" (Cortex-M DSP row pairs) or "mve" (Helium row tiles); either runs
    anywhere through the portable C. `split_input`: also emit `<name>_step_input` (the ops that
    do not read the state, e.g. an LSTM's x.K + b) and `<name>_step_recurrent` (the rest), so a
    caller can run the first for a block of steps before the second (the native runtime).
    `fuse_fc_add`: an int8 FC read only by an ADD with fused tables (an LSTM's recurrent FC and
    its gates) becomes one `el_fc_s8_fast_add_lut` call, a kernel of edgelstm_kernels_simd.c:
    for engines compiled with the SIMD kernels (the native runtime), not for firmware."""
    check_identifier(name)
    if rounding not in ROUNDINGS:
        raise BadInputError(f"unknown rounding '{rounding}' ({', '.join(ROUNDINGS)})")
    m = as_manifest(manifest)
    if isinstance(model, (str, Path)):
        path = Path(model)
        source = ModelFile(path.name, read_model(path))
        files = DirectoryFiles(path.parent) if files is None else files
    else:
        source = ModelFile(source_file or f"{name}.tflite", bytes(model))
    step, art, seq = _resolve_step(source, m, files or {})
    graph = load_graph(step.data, step.name)
    # An int8 model's int16 activations are its LSTM cells (tflite.cell16; lower.int16 lowers
    # them); an int16x8 model (int16 activations, none int8) is refused.
    acts = {t.dtype for t in graph.tensors if t.data is None}
    if (art and art.quantization == Quantization.INT16X8) or (
        art is None and "int16" in acts and "int8" not in acts
    ):
        sibling = step.name.replace("int16x8", "int8")
        raise UnsupportedLayerError(
            f"{step.name}: the C engine runs float and int8 step models, not int16x8 (int16 "
            f"activations); export {sibling if sibling != step.name else 'the int8 artifact'} "
            "instead, or use --target tflm (TFLite Micro has int16x8 kernels)"
        )
    layers = [layer for layer in m.model.layers if layer.name] if m else []
    prog = lower(graph, name, layers, rounding, isa, split_input, fuse_fc_add)
    resets = {s.input: float(s.reset_value) for s in art.states} if art else {}
    ifc = build_interface(graph, name, resets, seq)
    quantization = (
        art.quantization.value
        if art
        else (
            "int8"
            if ifc.x.dtype in ("int8",) or any(t.dtype == "int8" for t in graph.tensors)
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
        "step_model": step.name,
        "rounding": rounding,
        "isa": isa,
        "split_input": prog.split,
        "fuse_fc_add": bool(fuse_fc_add),
    }
    return GeneratedEngine(files, ifc, prog, graph, step, meta)
