"""What an export target returns: its files in memory and a JSON summary; `save` publishes them.

Every target plans an export from the model's bytes without touching disk (checks that must
build or run code do it in a work directory of their own); the CLI and the pipeline's report
writer call `save`.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgelstm.errors import BadInputError
from edgelstm.fsutil import publish


@dataclass
class ExportResult:
    """One export: `files` (path relative to the export directory -> text or bytes) and the
    summary `edgelstm export --json` prints (`save` adds where it was written)."""

    files: dict[str, str | bytes]
    summary: dict[str, Any] = field(default_factory=dict)

    def save(self, outdir: str | Path) -> dict[str, Any]:
        """Write the files into `outdir` atomically; returns the summary with "outdir"."""
        write_export(self.files, Path(outdir))
        return {**self.summary, "outdir": str(outdir)}


@dataclass
class ExportFailure:
    """An optional export that did not happen (the pipeline records why and goes on)."""

    error: str

    @property
    def summary(self) -> dict[str, Any]:
        return {"error": self.error}


def write_export(files: Mapping[str, str | bytes], outdir: Path) -> None:
    """Write `files` under `outdir` atomically: build in a sibling temp dir, then move in place.

    A missing `outdir` appears in one rename; an existing one has each top-level entry replaced,
    so other files already in it survive and no file is ever half-written."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: exists and is not a directory")
    parent = outdir.resolve().parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=parent))
    try:
        for rel, content in sorted(files.items()):
            path = tmp / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                path.write_text(content, encoding="utf-8", newline="\n")
        publish(tmp, outdir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
