"""Atomic file output: nothing half-written is ever visible under the final name."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to a temp file beside `path`, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def publish(stage: Path, outdir: Path) -> None:
    """Move a finished staging dir into place: one rename when `outdir` is new, else entry by
    entry (a directory entry replaces the old one whole, so no stale files survive in it)."""
    stage, outdir = Path(stage), Path(outdir)
    if not outdir.exists():
        os.chmod(stage, 0o777 & ~_umask())  # mkdtemp makes 0700
        os.replace(stage, outdir)
        return
    for entry in sorted(stage.iterdir()):
        dest = outdir / entry.name
        if dest.is_dir() and not dest.is_symlink():
            old = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old.", dir=outdir))
            os.replace(dest, old / entry.name)
            os.replace(entry, dest)
            shutil.rmtree(old)
        else:
            os.replace(entry, dest)
