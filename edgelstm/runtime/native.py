"""The `native` runtime: a step model's generated C engine, compiled on this machine and loaded
with ctypes. No TensorFlow, no LiteRT: only a C compiler (`$CC`, else cc, gcc or clang).

    from edgelstm.runtime import StepRunner
    runner = StepRunner("model_step_int8.tflite", runtime="native")
    y = runner.push(sample)                 # one step (one C call)
    ys = runner.push_many(samples)          # [T, D] -> [T, out] in ONE C call

    from edgelstm.runtime.native import StreamBatch
    batch = StreamBatch("model_step_int8.tflite", streams=16)   # 16 sensors, 16 states
    ys = batch.push(samples)                # [16, D] -> [16, out]

The engine (edgelstm.codegen.engine, the same code `edgelstm export --target c` writes) is built
once per model and flag set into a cache directory ($EDGELSTM_CACHE_DIR, else
$XDG_CACHE_HOME/edgelstm, else ~/.cache/edgelstm; then native/<model sha256>-<flags hash>); a
second load of the same model only dlopen()s the library. -march=native unless
EDGELSTM_NATIVE_MARCH says otherwise; EDGELSTM_NATIVE_SIMD=0 builds the portable kernels only. The key covers the model bytes, the
compiler (path and mtime), the flags, every C source and template and the code generator's
Python, so an edgelstm upgrade rebuilds.

Chunked calls (push_many, StreamBatch) run the engine's step in two parts when it has a
state-independent part (an LSTM's input projection x.K + b): that part for a block of steps, then
the recurrent part of each (see el_native.c); bit-exact with one step at a time.

The recurrent state lives in the engine's own struct (plain bytes, one per stream): StepRunner
reads and writes its fields in place instead of copying tensors around each step. The engine's
scratch arena is one static buffer: one library instance must not run from two threads at once.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm import __version__
from edgelstm.codegen.templates import render
from edgelstm.errors import BadInputError, EdgeLSTMError
from edgelstm.paths import bundled_dir
from edgelstm.runtime.backends import Backend, Runtime, dequantize, quantize
from edgelstm.tflite_info import TFLiteInfo
from edgelstm.types import STEP_INPUT, STEP_OUTPUT

ENGINE_NAME = "elnm"  # C prefix of the generated engine (elnm_model.h, elnm_step, elnm_state_t)
LIBRARY = "libedgelstm_native.so"
# the ctypes shim and its templates (eln_config.h, the SIMD translation unit)
NATIVE_DIR = bundled_dir("firmware_export") / "cengine" / "native"


# One lock per loaded library: ctypes releases the GIL during a call and the engine's scratch
# arena is static, so two Python threads must not be inside the same library at once.
_LOCKS: dict[str, threading.Lock] = {}


class CompilerError(EdgeLSTMError):
    """No usable C compiler, or it failed on the generated engine (exit 2, one line)."""


# --- compiler and flags ------------------------------------------------------------------------


def find_compiler() -> list[str]:
    """The C compiler command: $CC (may carry arguments) or the first of cc, gcc, clang."""
    cc = os.environ.get("CC", "").strip()
    if cc:
        parts = shlex.split(cc)
        if shutil.which(parts[0]) is None:
            raise CompilerError(
                f"the native runtime needs a C compiler: $CC is '{cc}', which is not found"
            )
        return parts
    for name in ("cc", "gcc", "clang"):
        path = shutil.which(name)
        if path:
            return [path]
    raise CompilerError(
        "the native runtime needs a C compiler: none of cc, gcc, clang is on PATH and $CC is "
        "unset (e.g. apt-get install gcc)"
    )


@dataclass(frozen=True)
class BuildOptions:
    """How the engine is compiled. march=None leaves the compiler's default target.

    Defaults come from the environment when set: EDGELSTM_NATIVE_MARCH (e.g. "armv8-a" for a
    binary that also runs on older cores; empty = the compiler's default), EDGELSTM_NATIVE_SIMD=0
    (portable kernels only).
    """

    opt: str = "-O3"
    march: str | None = field(
        default_factory=lambda: os.environ.get("EDGELSTM_NATIVE_MARCH", "native") or None
    )
    # the SIMD kernels where the target has them (EL_USE_SIMD=0 turns them off)
    simd: bool = field(default_factory=lambda: os.environ.get("EDGELSTM_NATIVE_SIMD", "1") != "0")
    cflags: tuple[str, ...] = ()

    def flags(self) -> list[str]:
        # no FP contraction: the float ops inside int8 kernels (softmax) round as the portable build
        out = [self.opt, "-fPIC", "-shared", "-std=gnu11", "-ffp-contract=off"]
        if self.march:
            out.append(f"-march={self.march}")
            if platform.machine().lower() in ("x86_64", "amd64"):
                # gcc's x86 tuning keeps vectorised loops at 256 bits; the elementwise kernels
                # measured faster with 512 where AVX-512 exists (harmless where it does not)
                out.append("-mprefer-vector-width=512")
        if not self.simd:
            out.append("-DEL_USE_SIMD=0")
        return [*out, *self.cflags]


def cache_root() -> Path:
    """Where compiled engines are kept ($EDGELSTM_CACHE_DIR > $XDG_CACHE_HOME/edgelstm > ~/.cache)."""
    base = os.environ.get("EDGELSTM_CACHE_DIR")
    if base:
        return Path(base) / "native"
    xdg = os.environ.get("XDG_CACHE_HOME")
    return Path(xdg or Path.home() / ".cache") / "edgelstm" / "native"


def c_sources() -> dict[str, Path]:
    """The fixed C files compiled into every native library (kernels + the ctypes shim)."""
    kdir = bundled_dir("firmware_export") / "cengine"
    files = {p.name: p for p in sorted(kdir.glob("edgelstm_kernels*.[ch]"))}
    files["el_native.c"] = NATIVE_DIR / "el_native.c"
    return files


def _build_key(model: bytes, cc: list[str], options: BuildOptions) -> str:
    h = hashlib.sha256()
    h.update(__version__.encode())
    exe = Path(shutil.which(cc[0]) or cc[0]).resolve()
    h.update(json.dumps([str(exe), exe.stat().st_mtime_ns, cc[1:], options.flags()]).encode())
    for name, path in c_sources().items():
        h.update(name.encode() + b"\0" + path.read_bytes())
    # the templates the engine's model files are rendered from (an edit rebuilds, as for the C)
    cdir = bundled_dir("firmware_export") / "cengine"
    for path in sorted(cdir.glob("*/*.j2")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    # and the lowering that writes the model's C (a change there changes the engine, too)
    codegen = bundled_dir("codegen")
    for path in sorted(codegen.rglob("*.py")):
        h.update(str(path.relative_to(codegen)).encode() + b"\0" + path.read_bytes())
    model_hash = hashlib.sha256(model).hexdigest()
    return f"{model_hash[:16]}-{h.hexdigest()[:12]}"


# --- building ----------------------------------------------------------------------------------


def _config_header(ifc: Any, prog: Any) -> str:
    """eln_config.h: what el_native.c needs to know about this model's engine."""
    return render(
        NATIVE_DIR,
        "eln_config.h.j2",
        {"engine": ENGINE_NAME, "ifc": ifc, "pre_bytes": int(prog.pre_bytes)},
    )


def _meta(ifc: Any, prog: Any, cmd: list[str], key: str) -> dict[str, Any]:
    return {
        "key": key,
        "edgelstm_version": __version__,
        "machine": platform.machine(),
        "compile": cmd,
        "macs_per_step": int(prog.macs),
        # > 0: chunked calls run the state-independent ops (input projection) a block ahead
        "pre_bytes": int(prog.pre_bytes),
        "x": {"dtype": ifc.x.dtype, "numel": ifc.x.numel},
        "y": {"dtype": ifc.y.dtype, "numel": ifc.y.numel},
        "states": [
            {"field": s.field, "output": s.output, "dtype": s.dtype, "numel": s.numel}
            for s in ifc.states
        ],
    }


MODEL_TU = "model_simd.c"  # the model file behind the SIMD header (its kernel calls remapped)


def _compile(cc: list[str], flags: list[str], build: Path) -> list[str]:
    kernels = sorted(n for n in os.listdir(build) if n.startswith("edgelstm_kernels"))
    srcs = [MODEL_TU, *[n for n in kernels if n.endswith(".c")], "el_native.c"]
    cmd = [*cc, *flags, "-o", LIBRARY, *srcs, "-lm"]
    try:
        proc = subprocess.run(cmd, cwd=build, capture_output=True, text=True, timeout=600)
    except OSError as exc:
        raise CompilerError(f"cannot run the C compiler '{cc[0]}': {exc.strerror}") from None
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if "error" in ln] or proc.stderr.splitlines()
        first = lines[0].strip() if lines else f"exit {proc.returncode}"
        raise CompilerError(f"the C compiler failed on the native engine: {first[:300]}")
    return cmd


@dataclass
class NativeBuild:
    """A compiled engine in the cache."""

    directory: Path
    meta: dict[str, Any]
    compiled: bool  # False: found in the cache (no compiler run)
    notes: list[str] = field(default_factory=list)

    @property
    def library(self) -> Path:
        return self.directory / LIBRARY


def write_sources(model: bytes, directory: Path, *, host: bool = True) -> Any:
    """The engine's C files for `model` in `directory` (model, kernels, SIMD kernels, the ctypes
    shim, eln_config.h, MODEL_TU); returns the GeneratedEngine. host=False: the engine exactly as
    `edgelstm export --target c` writes it (no split step, no fused FC; the tests' reference)."""
    from edgelstm.codegen.engine import generate

    step = directory / "model_step.tflite"
    step.write_bytes(model)
    # split_input: el_native.c runs a block of steps' input projections before their recurrences;
    # fuse_fc_add: the recurrent FC with its gates' ADD and tables (edgelstm_kernels_simd.c)
    eng = generate(step, name=ENGINE_NAME, split_input=host, fuse_fc_add=host)
    for name, text in eng.files.items():
        if name.endswith((".c", ".h")) and name != "main.c":
            (directory / name).write_text(text)
    for name, path in c_sources().items():  # the kernels as installed (SIMD files included)
        shutil.copyfile(path, directory / name)
    (directory / "eln_config.h").write_text(_config_header(eng.ifc, eng.prog))
    (directory / MODEL_TU).write_text(
        render(NATIVE_DIR, "model_simd.c.j2", {"engine": ENGINE_NAME})
    )
    return eng


def build_driver(model: bytes, directory: Path, cc: list[str], flags: list[str]) -> Path:
    """A standalone executable of the engine (el_native_main.c: raw inputs on stdin, raw outputs
    and the final state on stdout), e.g. cross-compiled for aarch64 and run under qemu-user."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    write_sources(model, directory)
    shutil.copyfile(NATIVE_DIR / "el_native_main.c", directory / "el_native_main.c")
    kernels = sorted(n for n in os.listdir(directory) if n.startswith("edgelstm_kernels"))
    srcs = [MODEL_TU, *[n for n in kernels if n.endswith(".c")], "el_native.c", "el_native_main.c"]
    cmd = [*cc, *flags, "-o", "engine", *srcs, "-lm"]
    proc = subprocess.run(cmd, cwd=directory, capture_output=True, text=True, timeout=600)
    if proc.returncode != 0:
        raise CompilerError(f"driver build failed: {proc.stderr.strip().splitlines()[:1]}")
    return directory / "engine"


def build_engine(
    model: bytes,
    options: BuildOptions | None = None,
    cache_dir: Path | None = None,
) -> NativeBuild:
    """Generate and compile the engine for `model` (a step .tflite's bytes), or reuse the cache."""
    options = options or BuildOptions()
    cc = find_compiler()
    root = Path(cache_dir) if cache_dir else cache_root()
    key = _build_key(model, cc, options)
    final = root / key
    if (final / LIBRARY).is_file() and (final / "meta.json").is_file():
        return NativeBuild(final, json.loads((final / "meta.json").read_text()), compiled=False)
    try:
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    except OSError as exc:
        raise BadInputError(f"native runtime cache {root}: {exc.strerror}") from None
    notes: list[str] = []
    try:
        eng = write_sources(model, tmp)
        flags = options.flags()
        try:
            cmd = _compile(cc, flags, tmp)
        except CompilerError:
            if not options.march:
                raise
            # e.g. a compiler without -march=native for this target: its default target still works
            flags = [f for f in flags if not f.startswith("-march=")]
            cmd = _compile(cc, flags, tmp)
            notes.append(f"-march={options.march} rejected by the compiler; built for its default")
        meta = _meta(eng.ifc, eng.prog, cmd, key)
        meta["notes"] = notes
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        try:
            os.replace(tmp, final)
        except OSError:  # another process built it first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return NativeBuild(final, json.loads((final / "meta.json").read_text()), True, notes)


# --- the loaded library ------------------------------------------------------------------------


class NativeEngine:
    """ctypes over one compiled engine: raw (stored-type) buffers in, raw buffers out."""

    def __init__(self, build: NativeBuild) -> None:
        self.build = build
        meta = build.meta
        try:
            lib = ctypes.CDLL(str(build.library))
        except OSError as exc:
            raise CompilerError(f"cannot load {build.library}: {exc}") from None
        vp, i32 = ctypes.c_void_p, ctypes.c_int32
        for fn, args in {
            "eln_abi": [],
            "eln_state_bytes": [],
            "eln_field_count": [],
            "eln_field_offsets": [vp],
            "eln_step": [vp, vp, vp],
            "eln_run": [vp, vp, vp, i32, vp],
            "eln_run_batch": [vp, i32, vp, vp, i32, vp],
        }.items():
            f = getattr(lib, fn)
            f.argtypes = args
            f.restype = i32 if fn != "eln_field_offsets" else None
        lib.el_simd_kind.restype = ctypes.c_char_p
        self.simd = lib.el_simd_kind().decode()  # which kernel variant was compiled in
        self.lib = lib
        self.state_bytes = int(lib.eln_state_bytes())
        n = int(lib.eln_field_count())
        offs = np.zeros(max(n, 1), np.int32)
        lib.eln_field_offsets(offs.ctypes.data)
        self.x_dtype = np.dtype(meta["x"]["dtype"])
        self.y_dtype = np.dtype(meta["y"]["dtype"])
        self.x_size = int(meta["x"]["numel"])
        self.y_size = int(meta["y"]["numel"])
        # field name -> (byte offset, dtype, count); the _out names alias the same bytes
        self.fields: dict[str, tuple[int, np.dtype, int]] = {}
        for s, off in zip(meta["states"], offs[:n].tolist(), strict=True):
            spec = (int(off), np.dtype(s["dtype"]), int(s["numel"]))
            self.fields[s["field"]] = spec
            self.fields[s["output"]] = spec
        self._status = np.zeros(1, np.int32)
        self.lock = _LOCKS.setdefault(str(build.library.resolve()), threading.Lock())

    def new_states(self, streams: int = 1) -> np.ndarray:
        """Zeroed state structs, one row of bytes per stream."""
        return np.zeros((streams, self.state_bytes), np.uint8)

    def field(self, states: np.ndarray, name: str, stream: int = 0) -> np.ndarray:
        """A writable view of one state field of one stream."""
        off, dt, n = self.fields[name]
        return states[stream, off : off + n * dt.itemsize].view(dt)

    def run(self, state: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[int, int]:
        """T steps of one stream in one call: (steps done, engine status)."""
        with self.lock:
            done = self.lib.eln_run(
                state.ctypes.data, xs.ctypes.data, ys.ctypes.data, len(xs), self._status.ctypes.data
            )
            return int(done), int(self._status[0])

    def run_batch(self, states: np.ndarray, xs: np.ndarray, ys: np.ndarray) -> tuple[int, int]:
        """xs [T, B, D] over B states: (calls done, engine status)."""
        with self.lock:
            done = self.lib.eln_run_batch(
                states.ctypes.data,
                states.shape[0],
                xs.ctypes.data,
                ys.ctypes.data,
                xs.shape[0],
                self._status.ctypes.data,
            )
            return int(done), int(self._status[0])


def _engine_error(status: int, where: str) -> BadInputError:
    what = "a token id outside the embedding table" if status == 1 else f"engine status {status}"
    return BadInputError(f"native invoke failed{where}: {what}")


class NativeBackend(Backend):
    """The Backend interface over a NativeEngine; the state lives in the engine's struct."""

    runtime = Runtime.NATIVE
    holds_state = True  # StepRunner leaves the state in the struct between steps

    def __init__(
        self,
        *args: Any,
        build_options: BuildOptions | None = None,
        cache_dir: Path | None = None,
        **kwargs: Any,
    ) -> None:
        self.build_options = build_options or BuildOptions()
        self.cache_dir = cache_dir
        super().__init__(*args, **kwargs)

    def _load(self) -> None:
        info: TFLiteInfo = self.info
        names = {t.name for t in info.inputs}
        several = "x0" in names or STEP_OUTPUT not in {t.name for t in info.outputs}
        if (STEP_INPUT not in names and not several) or not info.states():
            raise BadInputError(
                "the native runtime runs step models (input 'x' and state{k}_* tensors); "
                "export or convert with --variants step"
            )
        if several:
            raise BadInputError(
                "the native runtime runs step models with one input 'x' and one output 'y'; "
                "run a model with several inputs or outputs on litert (or its C engine: "
                "--target c)"
            )
        if self.threads not in (None, 1):
            self.notes.append("the native engine is single-threaded: --threads ignored")
        if self.xnnpack:
            self.notes.append("XNNPACK does not apply to the native engine")
        self.xnnpack = False
        self.build = build_engine(self.model, self.build_options, self.cache_dir)
        self.notes.extend(self.build.notes)
        self.engine = NativeEngine(self.build)
        eng = self.engine
        self.state = eng.new_states(1)
        self._x = np.zeros(eng.x_size, eng.x_dtype)
        self._y = np.zeros(eng.y_size, eng.y_dtype)
        self._ptrs = (self.state.ctypes.data, self._x.ctypes.data, self._y.ctypes.data)
        self._views = {name: eng.field(self.state, name) for name in eng.fields}
        self._step = eng.lib.eln_step
        self._lock = eng.lock

    def set_raw(self, name: str, value: np.ndarray) -> None:
        if name == STEP_INPUT:
            self._x[:] = np.asarray(value).reshape(-1)
        elif name in self._views:
            self._views[name][:] = np.asarray(value).reshape(-1)
        else:
            raise BadInputError(f"model has no input '{name}'")

    def get_raw(self, name: str) -> np.ndarray:
        t = self._outputs.get(name) or self._inputs.get(name)
        src = self._y if name == STEP_OUTPUT else self._views.get(name)
        if src is None or t is None:
            raise BadInputError(f"model has no output '{name}'")
        return src.reshape(t.shape).copy()

    def invoke(self) -> None:
        with self._lock:
            status = self._step(*self._ptrs)
        if status:
            raise _engine_error(status, "")

    def reset(self) -> None:
        self.state[:] = 0

    def run_chunk(self, xs_raw: np.ndarray) -> np.ndarray:
        """T steps from the current state in one C call: raw [T, D] -> raw [T, out]."""
        eng = self.engine
        xs = np.ascontiguousarray(xs_raw, eng.x_dtype).reshape(-1, eng.x_size)
        ys = np.empty((len(xs), eng.y_size), eng.y_dtype)
        done, status = eng.run(self.state, xs, ys)
        if status:
            raise _engine_error(status, f" at step {done}")
        return ys

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["native"] = {
            "cache": str(self.build.directory),
            "compiled_now": self.build.compiled,
            "simd": self.engine.simd,
            "compile": self.build.meta.get("compile"),
        }
        return d


# --- many streams at once ----------------------------------------------------------------------


class StreamBatch:
    """B independent streams of one step model on the native engine, each with its own state.

    push(samples [B, D]) -> [B, out] advances every stream one step in one C call;
    push_many(samples [T, B, D]) -> [T, B, out] advances them T steps in one call.
    reset(stream=None), get_state(stream), set_state(stream, state) act on one stream (or all).
    """

    def __init__(self, model: str | Path | bytes, streams: int, **backend_options: Any) -> None:
        from edgelstm.runtime.stream import StepRunner

        if streams < 1:
            raise BadInputError("streams must be at least 1")
        self.runner = StepRunner(model, Runtime.NATIVE, **backend_options)
        self.backend: NativeBackend = self.runner.backend  # type: ignore[assignment]
        self.engine = self.backend.engine
        self.streams = streams
        self.states = self.engine.new_states(streams)
        self.reset()

    @property
    def input_size(self) -> int:
        return self.runner.input_size

    @property
    def output_size(self) -> int:
        return self.runner.output_size

    def _streams(self, stream: int | None) -> range:
        if stream is None:
            return range(self.streams)
        if not 0 <= stream < self.streams:
            raise BadInputError(f"stream {stream} outside [0, {self.streams})")
        return range(stream, stream + 1)

    def reset(self, stream: int | None = None) -> None:
        """Stream `stream` (None: every stream) back to its reset state."""
        for b in self._streams(stream):
            for s in self.runner.states:
                raw = quantize(np.full(s.shape, s.reset_value), s.dtype, s.scale, s.zero_point)
                self.engine.field(self.states, s.input, b)[:] = raw.reshape(-1)

    def get_state(self, stream: int) -> dict[str, np.ndarray]:
        (b,) = self._streams(stream)
        return {
            s.input: dequantize(
                self.engine.field(self.states, s.input, b).reshape(s.shape), s.scale, s.zero_point
            )
            for s in self.runner.states
        }

    def set_state(self, stream: int, state: dict[str, Any]) -> None:
        (b,) = self._streams(stream)
        for s in self.runner.states:
            if s.input not in state or np.size(state[s.input]) != int(np.prod(s.shape)):
                raise BadInputError(f"state '{s.input}' missing or not shaped {s.shape}")
        for s in self.runner.states:
            value = np.asarray(state[s.input], np.float64).reshape(-1)
            raw = quantize(value, s.dtype, s.scale, s.zero_point)
            self.engine.field(self.states, s.input, b)[:] = raw

    def push_many(self, samples: Any) -> np.ndarray:
        """[T, B, D] (or [T, B] token ids) -> float64 [T, B, out], one C call."""
        x = np.asarray(samples)
        if x.ndim < 2 or x.shape[1] != self.streams or x[0, 0].size != self.input_size:
            raise BadInputError(
                f"samples must be shaped [T, {self.streams}, {self.input_size}], got "
                f"{list(x.shape)}"
            )
        xi = self.runner.x_info
        xs = self.runner.check_samples(x.reshape(len(x), self.streams, -1))
        raw = quantize(xs, xi.dtype, xi.scale, xi.zero_point)
        raw = np.ascontiguousarray(raw, self.engine.x_dtype)
        ys = np.empty((len(x), self.streams, self.engine.y_size), self.engine.y_dtype)
        done, status = self.engine.run_batch(self.states, raw, ys)
        if status:
            raise _engine_error(status, f" at call {done} (stream {done % self.streams})")
        yi = self.runner.y_info
        return dequantize(ys, yi.scale, yi.zero_point)

    def push(self, samples: Any) -> np.ndarray:
        """[B, D] -> [B, out]: one step of every stream."""
        x = np.asarray(samples)
        return self.push_many(x.reshape(1, *x.shape))[0]

    step_batch = push
