"""Export stage: a .tflite to TFLite Micro sources (`tflm`) or a standalone C engine (`c`).

`TARGETS` is the registry of export targets: each names the function that plans the export of
one artifact in memory (an `ExportResult`: files + summary, `save(outdir)` writes them) and the
options it takes, so the CLI's `--target` choices and option checks come from here and the next
target plugs in with one `register_target` call. Kept import-free (every target's module is
imported when it runs) so the CLI starts fast.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelstm.errors import BadInputError
from edgelstm.export.result import ExportFailure, ExportResult
from edgelstm.fsutil import DirectoryFiles
from edgelstm.types import ManifestLike

__all__ = [
    "TARGETS",
    "ExportFailure",
    "ExportResult",
    "ExportTarget",
    "export_artifact",
    "plan_export",
    "register_target",
    "resolve_target",
]


@dataclass(frozen=True)
class ExportTarget:
    """One `edgelstm export --target`: what it writes and the function that writes it.

    `entry` is "module:function", called as `fn(model_bytes, *, name, manifest, source_file,
    files, **options)` and returning an `ExportResult` (nothing written); `files` maps the other
    artifacts' file names to their bytes (a sequence model's C engine runs its step sibling);
    `options` are the target-specific keyword options it accepts (the CLI refuses them for the
    other targets)."""

    name: str
    summary: str
    entry: str
    options: tuple[str, ...] = ()
    # what `edgelstm pipeline` exports with it, and how
    variants: tuple[str, ...] = ("sequence", "step")
    quantizations: tuple[str, ...] = ("float", "int8", "int16x8")
    pipeline_options: tuple[tuple[str, Any], ...] = ()
    pipeline_doing: str = ""  # progress text: "exporting MODEL <doing>"
    pipeline_optional: bool = False  # a failure is recorded in the report, the run goes on

    def accepts(self, variant: str, quantization: str) -> bool:
        return variant in self.variants and quantization in self.quantizations

    def load(self) -> Callable[..., ExportResult]:
        module, fn = self.entry.split(":")
        try:
            return getattr(importlib.import_module(module), fn)
        except ImportError as exc:
            raise BadInputError(
                f"--target {self.name} is not available in this installation ({exc})"
            ) from exc


TARGETS: dict[str, ExportTarget] = {}


def register_target(target: ExportTarget) -> ExportTarget:
    TARGETS[target.name] = target
    return target


register_target(
    ExportTarget(
        "tflm",
        "TFLite Micro sources + Arduino library + CMake project",
        "edgelstm.export.tflm:plan_export_tflm",
        ("progmem",),
        pipeline_doing="for TFLite Micro",
    )
)
register_target(
    ExportTarget(
        "c",
        "standalone C engine (no TFLite Micro)",
        "edgelstm.export.cengine:plan_export_c",
        ("verify", "rounding", "core"),
        variants=("step",),
        quantizations=("float", "int8"),
        pipeline_options=(("verify", ["host"]),),
        pipeline_doing="as a standalone C engine (host gcc check vs LiteRT)",
        pipeline_optional=True,  # an op the engine lacks, no gcc: the rest of the report stands
    )
)


def resolve_target(target: str, options: dict[str, Any] | None = None) -> ExportTarget:
    """The registered target, checked against the options given (an option that belongs to
    another target is an error naming the targets it applies to)."""
    try:
        t = TARGETS[target]
    except KeyError:
        raise BadInputError(
            f"unknown export target '{target}' (known: {', '.join(TARGETS)})"
        ) from None
    for opt in options or {}:
        if opt not in t.options:
            owners = [n for n, o in TARGETS.items() if opt in o.options]
            where = " or ".join(f"--target {n}" for n in owners) or "no target"
            raise BadInputError(f"--{opt} applies to {where} only")
    return t


def plan_export(
    target: str,
    model: bytes,
    *,
    name: str,
    manifest: ManifestLike = None,
    source_file: str | None = None,
    files: Mapping[str, bytes] | None = None,
    **options: Any,
) -> ExportResult:
    """Export the .tflite `model` with the registered `target` and the `options` it takes, in
    memory; `source_file` is the model's file name (shown in the generated files), `files` the
    other artifacts by file name."""
    fn = resolve_target(target, options).load()
    return fn(
        model, name=name, manifest=manifest, source_file=source_file, files=files or {}, **options
    )


def export_artifact(
    target: str,
    model: Path,
    outdir: Path,
    *,
    name: str,
    manifest: ManifestLike = None,
    **options: Any,
) -> dict[str, Any]:
    """Export the .tflite file `model` into `outdir`; returns the export's summary."""
    from edgelstm.tflite_info import read_tflite

    model, outdir = Path(model), Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: exists and is not a directory")
    resolve_target(target, options)  # an option of another target: refused before the work
    read_tflite(model)  # one line for a missing file or one that is no model
    res = plan_export(
        target, model.read_bytes(), name=name, manifest=manifest, source_file=model.name,
        files=DirectoryFiles(model.parent), **options,
    )  # fmt: skip
    return res.save(outdir)
