"""The output directory of `edgelstm convert`: checked before any heavy work, shared safely.

Several converts may target one `-o` (float today, int8 tomorrow; or two at once). Each run
stages its files privately, then, holding `OUT/.edgelstm.lock`, merges its artifacts into the
manifest already there (same source model only) and moves its files in.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgelstm.errors import BadInputError
from edgelstm.fsutil import clean_stale, dir_lock, owned_tempdir, publish, write_atomic
from edgelstm.types import Quantization, Variant

LOCK_NAME = ".edgelstm.lock"
WORK_STEM = "edgelstm-work"


def _stage_stem(outdir: Path) -> str:
    return f".{outdir.name}"


def prepare(outdir: Path) -> bool:
    """Check `outdir` can be created and written (and its parent, where staging happens) before
    anything slow runs; create it. Returns whether this call created it."""
    outdir = Path(outdir)
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")
    created = not outdir.exists()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInputError(
            f"{outdir}: cannot create the output directory: {exc.strerror}"
        ) from None
    for d in (outdir, outdir.parent):
        if not os.access(d, os.W_OK | os.X_OK):
            if created:
                shutil.rmtree(outdir, ignore_errors=True)
            raise BadInputError(f"{d}: directory is not writable")
    return created


def discard_if_unused(outdir: Path, created: bool) -> None:
    """After a failed run: remove an output dir this run created if nothing landed in it."""
    if not created:
        return
    try:
        entries = {p.name for p in Path(outdir).iterdir()}
    except OSError:
        return
    if entries <= {LOCK_NAME}:
        shutil.rmtree(outdir, ignore_errors=True)


def clean_leftovers(outdir: Path) -> list[Path]:
    """Staging dirs beside `outdir` and work dirs in $TMPDIR left by killed runs (dead pids)."""
    outdir = Path(outdir)
    return clean_stale(outdir.parent, _stage_stem(outdir)) + clean_stale(
        Path(tempfile.gettempdir()), WORK_STEM
    )


def new_stage(outdir: Path) -> Path:
    """A private staging dir beside `outdir` (same filesystem: files move in by rename)."""
    return owned_tempdir(Path(outdir).parent, _stage_stem(Path(outdir)))


def new_workdir() -> Path:
    return owned_tempdir(Path(tempfile.gettempdir()), WORK_STEM)


def _read_manifest(outdir: Path) -> dict[str, Any] | None:
    path = Path(outdir) / "manifest.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
            raise ValueError
        return data
    except (ValueError, OSError):
        raise BadInputError(
            f"{path}: not a readable edgelstm manifest; remove it or choose another -o"
        ) from None


def check_compatible(outdir: Path, source: dict[str, Any], seq_len: int | None) -> None:
    """Refuse to add artifacts of another model (or another sequence length) to `outdir`."""
    old = _read_manifest(outdir)
    if old is None:
        return
    old_src = old.get("source", {})
    if old_src.get("sha256") != source["sha256"]:
        raise BadInputError(
            f"{outdir} already holds artifacts of a different model ({old_src.get('path')}, "
            f"sha256 {str(old_src.get('sha256'))[:12]}); use another -o or empty it"
        )
    old_len = old.get("model", {}).get("seq_len")
    if seq_len is not None and old_len is not None and old_len != seq_len:
        raise BadInputError(
            f"{outdir} already holds artifacts for sequence length {old_len} (this run: "
            f"{seq_len}); use another -o or empty it"
        )


def _order(art: dict[str, Any]) -> tuple[int, int, str]:
    variants = [v.value for v in Variant]
    quants = [q.value for q in Quantization]
    v, q = art.get("variant"), art.get("quantization")
    return (
        variants.index(v) if v in variants else len(variants),
        quants.index(q) if q in quants else len(quants),
        str(art.get("file")),
    )


def merge(outdir: Path, new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """The manifest after this run: the new artifacts, plus the old ones this run did not
    replace whose files are still there. Returns it and the kept file names."""
    old = _read_manifest(outdir)
    if old is None:
        return new, []
    check_compatible(outdir, new["source"], new.get("model", {}).get("seq_len"))
    mine = {a["file"] for a in new["artifacts"]}
    kept = [
        a
        for a in old["artifacts"]
        if a.get("file") not in mine and (Path(outdir) / str(a.get("file"))).is_file()
    ]
    merged = dict(new)
    merged["artifacts"] = sorted(new["artifacts"] + kept, key=_order)
    notes = list(new.get("notes", []))
    notes += [n for n in old.get("notes", []) if n not in notes]
    merged["notes"] = notes
    return merged, [a["file"] for a in kept]


def publish_run(
    stage: Path,
    outdir: Path,
    manifest: dict[str, Any],
    on_wait: Callable[[], None] | None = None,
) -> dict[str, Any]:
    """Under the directory lock: merge manifests, write the merged one into the stage, move the
    stage's files into `outdir`. Returns the manifest as written."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    with dir_lock(outdir, on_wait):
        merged, _kept = merge(outdir, manifest)
        write_atomic(Path(stage) / "manifest.json", json.dumps(merged, indent=2) + "\n")
        publish(stage, outdir)
    return merged
