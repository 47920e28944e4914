"""Measure the TFLite Micro tensor arena a model needs, with tflite-micro's own interpreter.

Two figures, both from the real interpreter (`tflite_micro` Python package, reference kernels):

* `used_bytes`: what the RecordingMicroAllocator reports after AllocateTensors + one Invoke
  (`print_allocations()` total = head + tail), i.e. `MicroInterpreter::arena_used_bytes()`.
* `min_bytes`: the smallest arena (16-byte steps) with which allocation and invoke succeed. It is
  larger than `used_bytes` because kernels' Prepare() takes temporary memory that is released
  before the allocator's total is read (the fused LSTM does). This is what an arena must hold.

Why subprocesses: with an arena that is slightly too small, the TFLM Python wrapper does not
always raise; it can segfault in the constructor or in Invoke(). Every probe therefore runs in a
child process (`python -m edgelstm.runtime.tflm_arena MODEL SIZE`, ~0.15 s each) and a crash is
simply "this size does not work".
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError, MissingDependencyError

# Margin added for 32-bit targets. The host measurement (64-bit pointers) over-estimates the
# pointer-sized bookkeeping of a 32-bit MCU, but optimised kernel libraries (CMSIS-NN, ESP-NN) may
# request larger scratch buffers than the reference kernels measured here, and a caller's arena
# that is not 16-byte aligned loses up to 15 bytes: recommended = min_bytes + max(25 %, 1 KiB).
ARENA_MARGIN_FRACTION = 0.25
ARENA_MARGIN_MIN = 1024
ARENA_ALIGN = 16
_MAX_ARENA = 1 << 25  # 32 MiB: beyond any microcontroller

_TOTAL = re.compile(r"Arena allocation total (\d+) bytes")
_HEAD = re.compile(r"Arena allocation head (\d+) bytes")
_TAIL = re.compile(r"Arena allocation tail (\d+) bytes")
_PART = re.compile(r"'([^']+)' used (\d+) bytes")


@dataclass
class ArenaReport:
    """The measured arena figures and the size we recommend for a 32-bit target."""

    used_bytes: int  # recording allocator total on the 64-bit host (head + tail)
    min_bytes: int  # smallest arena that allocates and invokes (16-byte granularity)
    head_bytes: int
    tail_bytes: int
    margin_bytes: int
    recommended_bytes: int
    breakdown: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    # Real C++ builds (edgelstm.export.tflm_build): config -> {"min_bytes", "used_bytes",
    # "probes", "measured_on"}; `absent`: config -> why it was not measured.
    builds: dict[str, dict[str, Any]] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)

    @property
    def python_min_bytes(self) -> int:
        """The tflite-micro Python interpreter's figure (reference kernels, 64-bit host)."""
        return self.min_bytes

    def overall_min(self) -> int:
        """The largest minimum over every configuration measured."""
        return max([self.min_bytes, *(b["min_bytes"] for b in self.builds.values())])

    def to_dict(self) -> dict[str, Any]:
        d = dict(vars(self))
        d["builds"] = {k: dict(v) for k, v in self.builds.items()}
        d["absent"] = dict(self.absent)
        d["overall_min_bytes"] = self.overall_min()
        return d

    def with_builds(self, builds: dict[str, dict[str, Any]], absent: dict[str, str]) -> ArenaReport:
        """A copy with real-build figures; the recommendation covers the largest minimum."""
        rep = ArenaReport(**{**vars(self), "builds": dict(builds), "absent": dict(absent)})
        rep.margin_bytes, rep.recommended_bytes = recommended_arena(rep.overall_min())
        return rep


def runtime_module() -> Any:
    """`tflite_micro.python.tflite_micro.runtime`, or MissingDependencyError."""
    try:
        from tflite_micro.python.tflite_micro import runtime
    except ImportError as exc:
        raise MissingDependencyError(
            "tflite-micro", "measuring the TFLite Micro arena", extra="tflm"
        ) from exc
    return runtime


@contextlib.contextmanager
def capture_fd2() -> Iterator[list[str]]:
    """Redirect file descriptor 2 (where TFLM's C++ prints) into a temp file; the yielded list
    receives the captured text on exit."""
    out: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield out
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            out.append(tmp.read().decode(errors="replace"))


def parse_allocations(text: str) -> tuple[int, int, int, dict[str, int]]:
    """(total, head, tail, {section: bytes}) from print_allocations() output."""
    m = _TOTAL.search(text)
    if not m:
        raise RuntimeError(f"unexpected print_allocations() output: {text[:200]!r}")
    head = _HEAD.search(text)
    tail = _TAIL.search(text)
    parts = {name: int(n) for name, n in _PART.findall(text)}
    return (
        int(m.group(1)),
        int(head.group(1)) if head else 0,
        int(tail.group(1)) if tail else 0,
        parts,
    )


def arena_used(interp: Any) -> tuple[int, int, int, dict[str, int]]:
    """An interpreter's current arena use, parsed from its print_allocations() text."""
    with capture_fd2() as err:
        interp.print_allocations()
    return parse_allocations(err[0])


def recommended_arena(min_bytes: int) -> tuple[int, int]:
    """(margin, recommended size) for a 32-bit target, see ARENA_MARGIN_FRACTION."""
    margin = max(ARENA_MARGIN_MIN, -(-min_bytes * 25 // 100))
    total = min_bytes + margin
    total = -(-total // ARENA_ALIGN) * ARENA_ALIGN
    return total - min_bytes, total


def _probe_in_process(model_path: str, size: int) -> dict[str, Any]:
    """Allocate + invoke with `size` bytes; may crash the process (that is why it runs alone)."""
    runtime = runtime_module()
    model = Path(model_path).read_bytes()
    with capture_fd2() as err:
        try:
            interp = runtime.Interpreter.from_bytes(model, arena_size=size)
        except (RuntimeError, ValueError) as exc:
            interp = None
            message = str(exc)
    text = err[0]
    noise = [ln for ln in text.splitlines() if ln.strip()]
    if interp is None or noise:  # TFLM reports every allocation/prepare failure this way
        return {"ok": False, "error": (noise[:1] or [message])[0].strip()}
    # Defined inputs: uninitialised memory can hold out-of-range token ids (GATHER fails).
    from edgelstm.tflite_info import read_tflite

    for i, t in enumerate(read_tflite(model).inputs):
        interp.set_input(np.zeros(t.shape, t.dtype), i)
    with capture_fd2() as err:
        interp.invoke()
    noise = [ln for ln in err[0].splitlines() if ln.strip()]
    if noise:
        return {"ok": False, "error": noise[0].strip()}
    total, head, tail, parts = arena_used(interp)
    return {"ok": True, "used": total, "head": head, "tail": tail, "parts": parts}


def probe(model_path: Path, size: int, timeout: float = 60) -> dict[str, Any]:
    """Run one probe in a child process; a crash or timeout counts as a failure."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "edgelstm.runtime.tflm_arena", str(model_path), str(size)],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out with a {size}-byte arena"}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        if "No module named" in proc.stderr and "tflite_micro" in proc.stderr:
            runtime_module()  # raises MissingDependencyError
        return {"ok": False, "error": f"interpreter crashed (exit {proc.returncode})"}
    return json.loads(lines[-1])


def measure_arena(model: bytes) -> ArenaReport:
    """Find the arena TFLite Micro needs for `model`: grow until it runs, then bisect down."""
    runtime_module()  # fail early and clearly when tflite-micro is missing
    with tempfile.TemporaryDirectory(prefix="edgelstm-arena-") as tmp:
        path = Path(tmp) / "model.tflite"
        path.write_bytes(model)
        probes = 0
        size = _align(max(16 * 1024, 4 * len(model)))
        first_error = ""
        while True:
            res = probe(path, size)
            probes += 1
            if res["ok"]:
                break
            first_error = first_error or res["error"]
            size_problem = any(k in res["error"].lower() for k in ("arena", "allocat", "crash"))
            size *= 2
            if not size_problem or size > _MAX_ARENA:
                raise BadInputError(f"TFLite Micro cannot run this model: {first_error}")
        best = res
        lo, hi = _align(res["used"]) // ARENA_ALIGN, size // ARENA_ALIGN  # in 16-byte units
        lo = max(lo - 1, 0)  # lo: largest size known (or assumed) to fail
        while hi - lo > 1:
            mid = (lo + hi) // 2
            res = probe(path, mid * ARENA_ALIGN)
            probes += 1
            if res["ok"]:
                hi, best = mid, res
            else:
                lo = mid
    min_bytes = hi * ARENA_ALIGN
    margin, rec = recommended_arena(min_bytes)
    return ArenaReport(
        used_bytes=best["used"],
        min_bytes=min_bytes,
        head_bytes=best["head"],
        tail_bytes=best["tail"],
        margin_bytes=margin,
        recommended_bytes=rec,
        breakdown=best["parts"],
        probes=probes,
    )


def _align(n: int) -> int:
    return -(-n // ARENA_ALIGN) * ARENA_ALIGN


def make_interpreter(model: bytes, arena_size: int) -> Any:
    """An in-process TFLM interpreter (give it a measured arena: too small can crash)."""
    runtime = runtime_module()
    with capture_fd2() as err:
        interp = runtime.Interpreter.from_bytes(model, arena_size=arena_size)
    if err[0].strip():
        raise BadInputError(f"TFLite Micro: {err[0].strip().splitlines()[0]}")
    return interp


if __name__ == "__main__":  # the probe child: MODEL SIZE -> one JSON line
    print(json.dumps(_probe_in_process(sys.argv[1], int(sys.argv[2]))))
