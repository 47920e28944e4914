"""One interface over the interpreters that run a .tflite: LiteRT, tflite-runtime, TF and TFLM.

Callers feed and read float arrays by tensor name; a backend quantizes int8/int16 inputs and
dequantizes outputs with each tensor's own scale and zero point. Nothing here imports TensorFlow
except the `tf` backend, lazily, when it is asked for.

    backend = load_backend("model.tflite")            # litert > tflite-runtime > tf
    y = backend.run({"x": x})["y"]
    backend.reset()                                   # fused-LSTM variable tensors back to zero
"""

from __future__ import annotations

import enum
import importlib
import importlib.util
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError, MissingDependencyError
from edgelstm.tflite_info import TFLiteInfo, read_tflite
from edgelstm.types import TensorInfo


class Runtime(str, enum.Enum):
    """The interpreters edgelstm can run a .tflite with."""

    LITERT = "litert"
    TFLITE_RUNTIME = "tflite-runtime"
    TF = "tf"
    TFLM = "tflm"
    NATIVE = "native"  # the C engine compiled on this machine (edgelstm.runtime.native)


# Automatic choice, best first. TFLM (reference kernels, fixed arena) and native (compiles on
# first use) only when asked for.
AUTO_ORDER = (Runtime.LITERT, Runtime.TFLITE_RUNTIME, Runtime.TF)


@dataclass(frozen=True)
class _Requirement:
    module: str  # what must be importable
    package: str  # what pip installs
    extra: str | None  # edgelstm extra that pulls it in


_REQUIREMENTS = {
    Runtime.LITERT: _Requirement("ai_edge_litert.interpreter", "ai-edge-litert", "runtime"),
    Runtime.TFLITE_RUNTIME: _Requirement("tflite_runtime.interpreter", "tflite-runtime", "pi"),
    Runtime.TF: _Requirement("tensorflow", "tensorflow", "convert"),
    Runtime.TFLM: _Requirement("tflite_micro.python.tflite_micro.runtime", "tflite-micro", "tflm"),
}


def is_available(runtime: Runtime | str) -> bool:
    """Whether the runtime's package (native: a C compiler) is installed (without importing it)."""
    if Runtime(runtime) == Runtime.NATIVE:
        from edgelstm.runtime.native import CompilerError, find_compiler

        try:
            find_compiler()
        except CompilerError:
            return False
        return True
    req = _REQUIREMENTS[Runtime(runtime)]
    top = req.module.split(".")[0]
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):  # ValueError: sys.modules[top] is None (blocked)
        return False


def available_runtimes(include_tflm: bool = True) -> list[Runtime]:
    """Installed runtimes, in automatic-choice order (TFLM last; native only when named)."""
    order = [*AUTO_ORDER, Runtime.TFLM] if include_tflm else list(AUTO_ORDER)
    return [r for r in order if is_available(r)]


def resolve_runtime(runtime: Runtime | str | None = None) -> Runtime:
    """`runtime` itself (checked), or the best installed one when None/'auto'."""
    if runtime is None or runtime == "auto":
        for r in AUTO_ORDER:
            if is_available(r):
                return r
        raise MissingDependencyError(
            "ai-edge-litert",
            "running a .tflite model (no LiteRT, tflite-runtime or TensorFlow)",
            extra="runtime",
        )
    try:
        r = Runtime(runtime)
    except ValueError:
        names = ", ".join(x.value for x in Runtime)
        raise BadInputError(f"unknown runtime '{runtime}' (choose from {names})") from None
    if not is_available(r):
        _missing(r)
    return r


def _missing(runtime: Runtime) -> None:
    if runtime == Runtime.NATIVE:
        from edgelstm.runtime.native import find_compiler

        find_compiler()  # raises the one-line "needs a C compiler" error
    req = _REQUIREMENTS[runtime]
    purpose = f"the '{runtime.value}' runtime"
    if runtime == Runtime.TFLITE_RUNTIME:
        purpose += " (Python <= 3.11 with numpy<2)"
    raise MissingDependencyError(req.package, purpose, extra=req.extra)


def _import(runtime: Runtime) -> Any:
    req = _REQUIREMENTS[runtime]
    if runtime == Runtime.TF:
        from edgelstm._tf import import_tf

        return import_tf().lite
    try:
        return importlib.import_module(req.module)
    except ImportError:
        _missing(runtime)


# --- quantization of I/O -----------------------------------------------------------------------


def quantize(x: np.ndarray, dtype: str, scale: float, zero_point: int) -> np.ndarray:
    """Real values -> the tensor's stored type (round, add zero point, saturate)."""
    x = np.asarray(x)
    if dtype.startswith("float") or dtype == "bool":
        return x.astype(dtype)
    if not scale:  # plain integers (token ids)
        if np.issubdtype(x.dtype, np.floating) and not np.all(np.isfinite(x)):
            raise BadInputError("non-finite value given for an integer input")
        return np.asarray(np.round(x)).astype(dtype)
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)


def dequantize(x: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Stored values -> real values (float64; unchanged magnitude for float/unquantized)."""
    if not scale:
        return np.asarray(x).astype(np.float64)
    return (np.asarray(x).astype(np.float64) - zero_point) * scale


# --- the backend interface ---------------------------------------------------------------------


def _model_bytes(model: str | Path | bytes) -> tuple[bytes, str]:
    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.is_file():
            raise BadInputError(f"{path}: no such file")
        return path.read_bytes(), str(path)
    return bytes(model), "model"


class Backend(ABC):
    """A loaded model on one runtime. Float in, float out; raw access for state carrying."""

    runtime: Runtime

    def __init__(
        self,
        model: bytes,
        info: TFLiteInfo,
        threads: int | None = None,
        xnnpack: bool | None = None,
    ) -> None:
        self.model = model
        self.info = info
        self.threads = threads
        self.xnnpack = xnnpack  # None: the runtime's default (XNNPACK on in LiteRT/TF)
        self.notes: list[str] = []
        self._inputs = {t.name: t for t in info.inputs}
        self._outputs = {t.name: t for t in info.outputs}
        t0 = time.perf_counter()
        self._load()
        self.init_seconds = time.perf_counter() - t0

    # -- implemented per runtime
    @abstractmethod
    def _load(self) -> None: ...

    @abstractmethod
    def set_raw(self, name: str, value: np.ndarray) -> None:
        """Write an input tensor in its stored type (no conversion beyond reshape)."""

    @abstractmethod
    def get_raw(self, name: str) -> np.ndarray:
        """A copy of an output tensor in its stored type."""

    @abstractmethod
    def invoke(self) -> None:
        """Run the graph once on the inputs set so far."""

    @abstractmethod
    def reset(self) -> None:
        """Reset variable tensors (a fused LSTM's state) to their initial values."""

    # -- shared
    def input_info(self, name: str) -> TensorInfo:
        try:
            return self._inputs[name]
        except KeyError:
            raise BadInputError(
                f"model has no input '{name}' (inputs: {', '.join(self._inputs)})"
            ) from None

    def output_info(self, name: str) -> TensorInfo:
        try:
            return self._outputs[name]
        except KeyError:
            raise BadInputError(
                f"model has no output '{name}' (outputs: {', '.join(self._outputs)})"
            ) from None

    def set_input(self, name: str, value: np.ndarray | float | list[float]) -> None:
        """Write real values into input `name` (quantized with its scale/zero point)."""
        t = self.input_info(name)
        arr = np.asarray(value)
        want = int(np.prod(t.shape)) if t.shape else 1
        if arr.size != want:
            raise BadInputError(
                f"input '{name}' needs {want} value(s) shaped {t.shape}, got {arr.size} "
                f"shaped {list(arr.shape)}"
            )
        self.set_raw(name, quantize(arr.reshape(t.shape), t.dtype, t.scale, t.zero_point))

    def get_output(self, name: str) -> np.ndarray:
        """Real values (float64) of output `name`."""
        t = self.output_info(name)
        return dequantize(self.get_raw(name), t.scale, t.zero_point)

    def run(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        """Set every input from `feeds` (real values), invoke, return every output (float64)."""
        for name in self._inputs:
            if name not in feeds:
                raise BadInputError(f"no value given for input '{name}'")
            self.set_input(name, feeds[name])
        self.invoke()
        return {name: self.get_output(name) for name in self._outputs}

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.runtime.value,
            "threads": self.threads,
            "xnnpack": self.xnnpack,
            "init_seconds": self.init_seconds,
            "notes": list(self.notes),
        }


class _InterpreterBackend(Backend):
    """The tf.lite.Interpreter API, shared by LiteRT, tflite-runtime and TensorFlow."""

    def _module(self) -> Any:
        return _import(self.runtime)

    def _load(self) -> None:
        mod = self._module()
        kwargs: dict[str, Any] = {"model_content": self.model}
        if self.threads is not None:
            kwargs["num_threads"] = int(self.threads)
        wanted = self.xnnpack is not False  # None: the default op resolver, which applies XNNPACK
        if not wanted:
            # The builtin resolver without default delegates = no XNNPACK.
            resolver = getattr(mod, "OpResolverType", None) or getattr(
                getattr(mod, "experimental", None), "OpResolverType", None
            )
            if resolver is None:
                self.notes.append("this runtime cannot turn XNNPACK off; left as built")
            else:
                kwargs["experimental_op_resolver_type"] = resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES
        from edgelstm._tf import stderr_silenced

        try:
            with stderr_silenced(), warnings.catch_warnings():
                # C++ prints "INFO: Created TensorFlow Lite XNNPACK delegate"; tf.lite warns
                # that its Interpreter is deprecated in favour of LiteRT (we know: it is a backend).
                warnings.simplefilter("ignore", UserWarning)
                self.interp = mod.Interpreter(**kwargs)
                self.interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            hint = ""
            if "QUANTIZE" in first and "kTfLiteInt8" in first:
                # tflite-runtime 2.14 has no int8 -> int16 QUANTIZE, which an int8 step model's
                # int16 LSTM cell (convert's default) starts with.
                hint = (
                    " (an int8 step model whose LSTM cell runs in int16 needs a newer runtime: "
                    "convert with --int8-lstm-cell int8 for this one, or use --runtime native)"
                )
            raise BadInputError(
                f"{self.runtime.value} cannot load the model: {first}{hint}"
            ) from None
        # Report what runs, not what was asked: the delegate can fail to load (LiteRT under
        # qemu-user drops it silently when /proc/cpuinfo does not look like an ARM CPU) or take
        # no op at all (a model of ops it lacks, e.g. a lone fused LSTM): builtin kernels run.
        applied = xnnpack_applied(self.interp)
        if applied is None:
            self.xnnpack = wanted
        else:
            if wanted and not applied:
                self.notes.append(
                    "XNNPACK did not apply (the delegate failed to load or took no op): "
                    "the builtin kernels ran"
                )
            self.xnnpack = applied
        self._in_idx = {t.name: t.tensor_index for t in self.info.inputs}
        self._out_idx = {t.name: t.tensor_index for t in self.info.outputs}

    def set_raw(self, name: str, value: np.ndarray) -> None:
        self.interp.set_tensor(self._in_idx[name], value)

    def get_raw(self, name: str) -> np.ndarray:
        return self.interp.get_tensor(self._out_idx[name])

    def invoke(self) -> None:
        try:
            self.interp.invoke()
        except RuntimeError as exc:  # e.g. a GATHER index out of range: the input's fault
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else "failed"
            raise BadInputError(f"{self.runtime.value} invoke failed: {first}") from None

    def reset(self) -> None:
        self.interp.reset_all_variables()


def xnnpack_applied(interp: Any) -> bool | None:
    """Whether a delegate took part of the graph (None: this interpreter cannot tell).

    An applied delegate shows as a DELEGATE node in the interpreter's node list; the only
    delegate the tf.lite-style interpreters apply on their own is XNNPACK."""
    try:
        ops = interp._get_ops_details()
    except Exception:  # private API: absent or changed in some build
        return None
    return any(op.get("op_name") == "DELEGATE" for op in ops)


class LiteRTBackend(_InterpreterBackend):
    runtime = Runtime.LITERT


class TFLiteRuntimeBackend(_InterpreterBackend):
    runtime = Runtime.TFLITE_RUNTIME


class TFBackend(_InterpreterBackend):
    runtime = Runtime.TF


class TFLMBackend(Backend):
    """TensorFlow Lite Micro's Python interpreter (reference kernels, recording allocator)."""

    runtime = Runtime.TFLM
    DEFAULT_ARENA_MIN = 256 * 1024

    def __init__(self, *args: Any, arena_size: int | None = None, **kwargs: Any) -> None:
        self.arena_size = arena_size
        super().__init__(*args, **kwargs)

    def _load(self) -> None:
        _import(Runtime.TFLM)
        from edgelstm.runtime.tflm_arena import make_interpreter

        if self.threads not in (None, 1):
            self.notes.append("TFLite Micro is single-threaded: --threads ignored")
        if self.xnnpack:  # asked for explicitly
            self.notes.append("XNNPACK does not apply to TFLite Micro")
        self.xnnpack = False
        # Generous: a too-small arena can crash the TFLM wrapper rather than raise.
        size = self.arena_size or max(self.DEFAULT_ARENA_MIN, 16 * len(self.model))
        self.arena_size = size
        try:
            self.interp = make_interpreter(self.model, size)
        except (RuntimeError, ValueError) as exc:
            raise BadInputError(f"TFLite Micro cannot load the model: {exc}") from None
        self._in_pos = {t.name: t.index for t in self.info.inputs}
        self._out_pos = {t.name: t.index for t in self.info.outputs}

    def set_raw(self, name: str, value: np.ndarray) -> None:
        t = self._inputs[name]
        self.interp.set_input(np.ascontiguousarray(value, dtype=t.dtype), self._in_pos[name])

    def get_raw(self, name: str) -> np.ndarray:
        return np.array(self.interp.get_output(self._out_pos[name]), copy=True)

    def invoke(self) -> None:
        try:
            self.interp.invoke()
        except RuntimeError as exc:
            raise BadInputError(f"TFLite Micro invoke failed: {exc}") from None

    def reset(self) -> None:
        self.interp.reset()

    def arena_used(self) -> dict[str, int]:
        """Bytes of the arena in use (RecordingMicroAllocator: head + tail), after an invoke."""
        from edgelstm.runtime.tflm_arena import arena_used

        total, head, tail, _parts = arena_used(self.interp)
        return {"arena_used_bytes": total, "arena_head_bytes": head, "arena_tail_bytes": tail}


def _native_backend(*args: Any, **kwargs: Any) -> Backend:
    from edgelstm.runtime.native import NativeBackend  # imports this module: load it lazily

    return NativeBackend(*args, **kwargs)


BACKENDS: dict[Runtime, Callable[..., Backend]] = {
    Runtime.LITERT: LiteRTBackend,
    Runtime.TFLITE_RUNTIME: TFLiteRuntimeBackend,
    Runtime.TF: TFBackend,
    Runtime.TFLM: TFLMBackend,
    Runtime.NATIVE: _native_backend,
}


def load_backend(
    model: str | Path | bytes,
    runtime: Runtime | str | None = None,
    *,
    threads: int | None = None,
    xnnpack: bool | None = None,
    info: TFLiteInfo | None = None,
    **options: Any,
) -> Backend:
    """Load `model` (path or bytes) on `runtime` (None: the best installed one)."""
    data, _label = _model_bytes(model)
    if info is None:
        info = read_tflite(model if isinstance(model, (str, Path)) else data)
    r = resolve_runtime(runtime)
    if threads is not None and threads < 1:
        raise BadInputError("--threads must be at least 1")
    return BACKENDS[r](data, info, threads=threads, xnnpack=xnnpack, **options)
