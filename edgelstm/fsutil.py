"""Atomic file output: nothing half-written is ever visible under the final name."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any


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


# --- run-level safety: owned temp dirs, stale cleanup, signals, directory locks ------------------

_OWNED = re.compile(r"\.edgelstm-(\d+)\.")


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (EPERM: it does, owned by someone else)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def owned_tempdir(parent: Path, stem: str) -> Path:
    """A fresh private dir `parent/<stem>.edgelstm-<pid>.<random>`: the pid in the name lets a
    later run tell a dead run's leftovers (SIGKILL cannot be cleaned up after) from live ones."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{stem}.edgelstm-{os.getpid()}.", dir=parent))


def clean_stale(parent: Path, stem: str) -> list[Path]:
    """Remove `owned_tempdir(parent, stem)` dirs whose owning process is gone; returns them."""
    removed = []
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(f"{stem}.edgelstm-") or not entry.is_dir():
            continue
        m = _OWNED.search(entry.name[len(stem) :])
        if m and int(m.group(1)) != os.getpid() and not pid_alive(int(m.group(1))):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP, raised like Ctrl-C so every `finally` cleanup runs."""


@contextlib.contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM and SIGHUP raise `Terminated` (a KeyboardInterrupt), as SIGINT
    raises KeyboardInterrupt: the same clean exit for all three."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        _received.append(signal.Signals(signum).name)
        raise Terminated(signal.Signals(signum).name)

    wanted = [signal.SIGTERM] + ([signal.SIGHUP] if hasattr(signal, "SIGHUP") else [])
    old = {s: signal.signal(s, handler) for s in wanted}
    _received.clear()
    try:
        yield
        raise_if_terminated()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


# Signals taken by `signals_as_interrupt`'s handler. The exception it raises can be lost: when the
# signal lands while Python runs a finalizer or a weakref callback (TensorFlow has many), the
# interpreter prints "Exception ignored" and carries on. Checkpoints re-raise from this record.
_received: list[str] = []


def raise_if_terminated() -> None:
    """Raise `Terminated` if a SIGTERM/SIGHUP arrived in the current block whose exception was
    swallowed on the way: call before anything is published."""
    if _received:
        raise Terminated(_received[0])


def die_with_parent() -> None:
    """For a child's preexec_fn: ask Linux to SIGKILL us when the parent dies (even by SIGKILL);
    exit at once if it already has. No-op elsewhere."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)


@contextlib.contextmanager
def dir_lock(directory: Path, on_wait: Callable[[], None] | None = None) -> Iterator[None]:
    """Exclusive flock on `directory/.edgelstm.lock` for the block (serializes writers)."""
    path = Path(directory) / ".edgelstm.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def no_space(exc: BaseException) -> bool:
    """Whether an OSError means the disk (or quota) is full."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def _renumber_shared_ids(config: Any, ids: dict[int, int]) -> Any:
    """Replace Keras' `shared_object_id`s (Python object ids) by 1, 2, ... in order of use."""
    if isinstance(config, dict):
        out = {}
        for key, value in config.items():
            if key == "shared_object_id" and isinstance(value, int):
                value = ids.setdefault(value, len(ids) + 1)
            out[key] = _renumber_shared_ids(value, ids)
        return out
    if isinstance(config, list):
        return [_renumber_shared_ids(v, ids) for v in config]
    return config


def reproducible_keras_zip(path: Path) -> None:
    """Rewrite a .keras zip so the same weights give the same bytes: Keras stamps the save time
    into metadata.json and the zip, and object ids into config.json."""
    import json
    import zipfile

    with zipfile.ZipFile(path) as zf:
        entries = [(info.filename, zf.read(info)) for info in zf.infolist()]
    fixed = []
    for name, data in entries:
        if name == "metadata.json":
            meta = json.loads(data)
            meta["date_saved"] = "1980-01-01@00:00:00"
            data = json.dumps(meta).encode()
        elif name == "config.json":
            data = json.dumps(_renumber_shared_ids(json.loads(data), {})).encode()
        fixed.append((name, data))
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as zf:
        for name, data in fixed:
            zf.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data)
    os.replace(tmp, path)


class DirectoryFiles(Mapping[str, bytes]):
    """The files of one directory by plain file name, each read only when asked for: how a
    model exported from a path finds the artifacts beside it (a sequence model's step sibling)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def _path(self, name: object) -> Path | None:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            return None
        path = self.directory / name
        return path if path.is_file() else None

    def __getitem__(self, name: str) -> bytes:
        path = self._path(name)
        if path is None:
            raise KeyError(name)
        return path.read_bytes()

    def __contains__(self, name: object) -> bool:
        return self._path(name) is not None

    def __iter__(self) -> Iterator[str]:
        return (p.name for p in sorted(self.directory.iterdir()) if p.is_file())

    def __len__(self) -> int:
        return sum(1 for _ in self)
