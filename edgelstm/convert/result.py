"""A conversion's result and where it goes.

`ConversionResult.save(outdir)` publishes it (merging with the manifest already there, under the
directory's lock); `convert_model(model, outdir, cfg)` chains the two for the CLI and the other
stages, with the output-directory checks and signal handling. Files move into OUTDIR only when
the whole run succeeded, so a failure never leaves half-written artifacts behind.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from edgelstm.convert import outdir as outdir_mod
from edgelstm.errors import BadInputError, EdgeLSTMError
from edgelstm.fsutil import no_space, raise_if_terminated, signals_as_interrupt, write_atomic
from edgelstm.types import ConvertConfig, Manifest, manifest_from_dict

if TYPE_CHECKING:
    from edgelstm.convert.orchestrate import Progress


@dataclass
class ConversionResult:
    """What a conversion made, in memory: the manifest and the bytes of every artifact in it.

    `failed` is the error for artifacts that did not convert or did not pass verification
    (they are not in `files`); `save` writes the rest, and `convert_model` raises it after saving."""

    manifest: Manifest
    files: dict[str, bytes] = field(default_factory=dict)
    failed: EdgeLSTMError | None = None

    def save(self, outdir: str | Path, on_wait: Callable[[], None] | None = None) -> Manifest:
        """Publish into `outdir` (merged with the artifacts of earlier runs of the same model
        there, under its lock); returns the manifest as written."""
        outdir = Path(outdir)
        stage = outdir_mod.new_stage(outdir)
        try:
            for name, data in self.files.items():
                write_atomic(stage / name, data)
            merged = outdir_mod.publish_run(stage, outdir, self.manifest.to_dict(), on_wait)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return manifest_from_dict(merged)


def check_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")


def convert_model(
    model_path: str | Path,
    outdir: str | Path,
    cfg: ConvertConfig,
    progress: Progress = lambda _msg: None,
) -> Manifest:
    """Convert a Keras model file into verified .tflite artifacts plus manifest.json in outdir.

    SIGTERM/SIGHUP end the run like Ctrl-C (staging and work dirs removed); leftovers of runs
    killed outright (SIGKILL) are removed by the next run into the same -o."""
    from edgelstm.convert.orchestrate import convert

    model_path, outdir = Path(model_path), Path(outdir)
    created = outdir_mod.prepare(outdir)
    try:
        with signals_as_interrupt():
            outdir_mod.clean_leftovers(outdir)
            res = convert(
                model_path, cfg, progress,
                check=lambda source, seq_len: outdir_mod.check_compatible(outdir, source, seq_len),
            )  # fmt: skip
            raise_if_terminated()  # a signal whose exception a finalizer swallowed
            manifest = res.save(
                outdir,
                on_wait=lambda: progress(f"waiting for another convert writing into {outdir}"),
            )
            if res.failed is not None:
                res.failed.manifest = manifest  # type: ignore[attr-defined]  # what was written
                raise res.failed
            return manifest
    except OSError as exc:
        if no_space(exc):
            raise BadInputError(
                f"no space left on device while writing {exc.filename or outdir}"
            ) from None
        raise
    finally:
        outdir_mod.discard_if_unused(outdir, created)
