"""The TFLite Micro export against REAL TFLite Micro builds (edgelstm.export.tflm_build):

* the exported CMake project builds unmodified against the host tree and its demo prints what the
  tflite-micro Python interpreter computes (exactly) and LiteRT (within tolerance);
* a model whose memory plan puts `y` in a state input's bytes (the demo must read y first);
* the arena macros hold on the host reference build and on the Cortex-M4 + CMSIS-NN build;
* the Arduino sketch compiles with -Wall -Wextra -Werror against the TFLM headers (our own
  Arduino.h shim, tests/tflm/) and prints the same values on the host;
* every int8 artifact on a Cortex-M4 (qemu mps2-an386, -icount shift=0) with CMSIS-NN: distance
  from the reference kernels over >= 100 invokes, qemu instructions per invoke;
* the fused sequence model at T=1: does CMSIS-NN carry the variable-tensor state across invokes?

Trees: $EDGELSTM_TFLM_TREE / $EDGELSTM_TFLM_CMSIS_NN_TREE, else ../shared/third_party/tflite-micro
beside the checkout. With CI=true or EDGELSTM_REQUIRE_TOOLCHAIN=1 a missing tree or tool fails.
The TFLM libraries are built once and cached (~/.cache/edgelstm, keyed by tree content + flags).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgelstm.export import tflm_build as tb
from edgelstm.export.tflm import (
    CMSIS_FUSED_RESTARTS,
    build_context,
    export_tflm,
    measure_real_arenas,
    plan_tflm,
    write_export,
)
from edgelstm.runtime.tflm_arena import make_interpreter, measure_arena
from edgelstm.tflite_info import read_tflite

ROOT = Path(__file__).resolve().parents[1]
SHIM = Path(__file__).resolve().parent / "tflm"
STRICT = os.environ.get("CI") == "true" or os.environ.get("EDGELSTM_REQUIRE_TOOLCHAIN") == "1"
# One xdist worker runs all of them (make test: --dist loadgroup): the conversions and probe
# builds are session fixtures, shared instead of made twice.
pytestmark = [pytest.mark.qemu, pytest.mark.xdist_group("tflm_build")]

# artifact id -> (source, variant, quantization). source: zoo recipe or a conftest model kind.
ARTIFACTS: dict[str, tuple[str, str, str]] = {
    f"echo-{v}-{q}": ("zoo:echo", v, q)
    for v in ("step", "sequence")
    for q in ("float", "int8", "int16x8")
}
ARTIFACTS.update(
    {
        "gru-step-float": ("zoo:temporal-order-gru", "step", "float"),
        "gru-step-int8": ("zoo:temporal-order-gru", "step", "int8"),
        "rnn-step-float": ("rnn", "step", "float"),
        "rnn-step-int8": ("rnn", "step", "int8"),
        "alias-step-float": ("alias", "step", "float"),
    }
)
# Known failure, kept visible (strict: it fails the day it passes): the zoo echo's fused int8
# sequence model allocates on the Cortex-M4 CMSIS-NN build, then abort()s in the first Invoke():
# CMSIS-NN's FULLY_CONNECTED EvalQuantizedInt8 takes its conv-1x1 path (3-D output, accum depth
# % 4 == 0, per-tensor weights) and `TFLITE_DCHECK_GE(data.buffer_conv_1x1_idx, 4)` fails: the
# index is below 4 here, the fused LSTM requested the first scratch buffers. A debug check of
# TFLM (traced with qemu -d exec + addr2line), not of the model: -DNDEBUG builds compile it out.
_M4_ECHO_SEQ_INT8 = pytest.mark.xfail(
    strict=True, reason="TFLM CMSIS-NN FC DCHECK_GE(buffer_conv_1x1_idx, 4) aborts (no NDEBUG)"
)


def _ids(keys: list[str]) -> list[Any]:
    return [
        pytest.param(k, marks=_M4_ECHO_SEQ_INT8) if k == "echo-sequence-int8" else k for k in keys
    ]


INT8 = _ids([k for k, v in ARTIFACTS.items() if v[2] == "int8"])
ARENA_IDS = _ids(
    ["echo-step-int8", "echo-sequence-int8", "echo-sequence-int16x8", "alias-step-float"]
)
SKETCH_IDS = ["echo-step-int8", "alias-step-float", "gru-step-float", "echo-sequence-float"]
STEPS = 100  # invokes per streaming comparison


def _require(config: str, cmake: bool = False) -> Path:
    tree = tb.find_tree(config)
    missing = tb.missing_tools(config) + (["cmake"] if cmake and not shutil.which("cmake") else [])
    msg = ""
    if tree is None:
        msg = f"TFLite Micro tree for {config} not installed (${tb.TREE_ENV[config]})"
    elif missing:
        msg = f"{', '.join(missing)} not installed (apt install gcc-arm-none-eabi qemu-system-arm)"
    if msg:
        if STRICT:
            pytest.fail(f"CI needs it: {msg}")
        pytest.skip(msg)
    assert tree is not None
    return tree


# ------------------------------------------------------------------------ session fixtures


def _alias_model(path: Path) -> Path:
    """LSTM(64) over 64 features + Dense(4): its float step model's plan puts y in a state
    input's arena bytes (found by trying shapes; checked in test_alias_model_plan)."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.Sequential([keras.Input((8, 64)), keras.layers.LSTM(64), keras.layers.Dense(4)])
    model.save(path)
    return path


@pytest.fixture(scope="session")
def artifacts(keras_model_file, calibration_file, tmp_path_factory) -> dict[str, Path]:
    """Every artifact of ARTIFACTS, each source converted once per session (real converter)."""
    from edgelstm._tf import import_tf
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    import_tf()
    root = tmp_path_factory.mktemp("tflm_real")
    out: dict[str, Path] = {}
    sources = sorted({v[0] for v in ARTIFACTS.values()})
    rng = np.random.default_rng(0)
    for src in sources:
        wanted = {(v, q) for s, v, q in ARTIFACTS.values() if s == src}
        variants = sorted({v for v, _ in wanted})
        quants = sorted({q for _, q in wanted})
        if src.startswith("zoo:"):
            d = ROOT / "models" / src[4:]
            model, cal = d / "model.keras", str(d / "calibration.npz")
        elif src == "alias":
            model = _alias_model(root / "alias.keras")
            cal_path = root / "alias_cal.npz"
            np.savez(cal_path, x=rng.standard_normal((32, 8, 64)).astype(np.float32))
            cal = str(cal_path)
        else:
            model, cal = keras_model_file(src), str(calibration_file)
        dest = root / src.replace(":", "_")
        cfg = ConvertConfig(
            variants=[Variant(v) for v in variants],
            quantizations=[Quantization(q) for q in quants],
            calibration=cal,
            calibration_samples=32,
            verify_samples=2,
            verify_fail=False,  # a parity overrun still leaves a real model to run in TFLM
        )
        manifest = convert_model(model, dest, cfg)
        for art in manifest.artifacts:
            for key, (s, v, q) in ARTIFACTS.items():
                if s == src and art.variant.value == v and art.quantization.value == q:
                    out[key] = dest / art.file
    assert set(out) == set(ARTIFACTS), sorted(set(ARTIFACTS) - set(out))
    return out


@pytest.fixture(scope="session")
def fused_t1(tmp_path_factory) -> Path:
    """LSTM(16, return_sequences) + Dense(2) over T=1, D=4 as a fused int8 sequence model: one
    Invoke() per time step, the state left in the fused op's variable tensors."""
    import keras

    from edgelstm._tf import import_tf
    from edgelstm.convert import convert_model
    from edgelstm.types import ConvertConfig, Quantization, Variant

    import_tf()
    root = tmp_path_factory.mktemp("fused_t1")
    keras.utils.set_random_seed(3)
    model = keras.Sequential(
        [keras.Input((1, 4)), keras.layers.LSTM(16, return_sequences=True), keras.layers.Dense(2)]
    )
    model.save(root / "t1.keras")
    cal = np.random.default_rng(0).standard_normal((32, 1, 4)).astype(np.float32)
    np.savez(root / "cal.npz", x=cal)
    cfg = ConvertConfig(
        variants=[Variant.SEQUENCE],
        quantizations=[Quantization.INT8],
        calibration=str(root / "cal.npz"),
        calibration_samples=32,
        verify_samples=2,
    )
    manifest = convert_model(root / "t1.keras", root / "out", cfg)
    return root / "out" / manifest.artifacts[0].file


class Exports:
    """Per artifact: an export (Python-interpreter arena only) and its context, made once."""

    def __init__(self, root: Path, artifacts: dict[str, Path]) -> None:
        self.root, self.artifacts = root, artifacts
        self._done: dict[str, tuple[Path, dict[str, Any]]] = {}
        self._probes: dict[tuple[str, str], tb.Probe] = {}

    def get(self, key: str) -> tuple[Path, dict[str, Any]]:
        if key not in self._done:
            path = self.artifacts[key]
            manifest = json.loads((path.parent / "manifest.json").read_text())
            model = path.read_bytes()
            kw = {"name": key.replace("-", "_"), "manifest": manifest, "source_file": path.name}
            arena = measure_arena(model)
            out = self.root / key
            write_export(plan_tflm(model, arena=arena, **kw).files, out)
            self._done[key] = (out, build_context(model, arena=arena, **kw))
        return self._done[key]

    def probe(self, key: str, config: str) -> tb.Probe:
        if (key, config) not in self._probes:
            out, ctx = self.get(key)
            work = self.root / f"{key}.{config}"
            self._probes[key, config] = tb.build_probe(config, out, ctx, work)
        return self._probes[key, config]


@pytest.fixture(scope="session")
def exports(artifacts, tmp_path_factory) -> Exports:
    return Exports(tmp_path_factory.mktemp("tflm_real_exp"), artifacts)


@pytest.fixture(scope="session")
def host_lib(artifacts) -> Path:
    """The host TFLM library with the kernels of every artifact (objects shared with probes)."""
    tree = _require(tb.REF_X86_64, cmake=True)
    ops = sorted(set().union(*(read_tflite(p).op_set for p in artifacts.values())))
    return tb.build_library(tb.REF_X86_64, tree, ops=ops)


# ------------------------------------------------------------------------------- reference


def _raw_inputs(t: dict[str, Any], n: int, seed: int) -> np.ndarray:
    """n invokes of raw input values covering the tensor's range."""
    rng = np.random.default_rng(seed)
    shape = (n, *t["shape"])
    if t["dtype"] == "int8":
        return rng.integers(-128, 128, shape).astype(np.int8)
    if t["dtype"] == "int16":
        return rng.integers(-20000, 20000, shape).astype(np.int16)
    return rng.uniform(-1.5, 1.5, shape).astype(np.float32)


def _real(t: dict[str, Any], raw: np.ndarray) -> np.ndarray:
    """Stored values -> real values exactly as model_io.h's get_value computes them (float32)."""
    if not t["quantized"]:
        return raw.astype(np.float32)
    diff = raw.astype(np.int32) - np.int32(t["zero_point"])
    return np.float32(t["scale"]) * diff.astype(np.float32)


def _tflm_python(
    model: bytes, ctx: dict[str, Any], xs: np.ndarray, reset_each: bool = True
) -> list[np.ndarray]:
    """Raw outputs per invoke of the tflite-micro Python interpreter (reference kernels),
    state carried for step models exactly as the firmware does."""
    interp = make_interpreter(model, ctx["arena"]["recommended_bytes"] * 2)
    info = read_tflite(model)
    state = {
        s["input_index"]: np.full(s["shape"], s["reset_raw"], s["dtype"]) for s in ctx["states"]
    }
    outs = []
    for x in xs:
        if not ctx["is_step"] and reset_each:
            interp.reset()
        for t in info.inputs:
            interp.set_input(x if t.index == ctx["x"]["index"] else state[t.index], t.index)
        interp.invoke()
        outs.append([interp.get_output(t.index).copy() for t in info.outputs])
        for s in ctx["states"]:
            state[s["input_index"]] = outs[-1][s["output_index"]]
    return [np.stack([o[i] for o in outs]) for i in range(len(info.outputs))]


def _litert(model: bytes, ctx: dict[str, Any], xs: np.ndarray) -> np.ndarray:
    """LiteRT's y per invoke (raw), same state handling."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    # LiteRT's reference kernels (no XNNPACK), the set TFLM's reference kernels follow; they
    # lack the int16x8 fused LSTM (int64 bias), which then runs on LiteRT's built-in kernels.
    try:
        it = Interpreter(
            model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF
        )
        it.allocate_tensors()
    except RuntimeError:
        it = Interpreter(
            model_content=model,
            experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        )
        it.allocate_tensors()
    ins = it.get_input_details()
    outs = it.get_output_details()
    state = {
        s["input_index"]: np.full(s["shape"], s["reset_raw"], s["dtype"]) for s in ctx["states"]
    }
    ys = []
    for x in xs:
        it.reset_all_variables()
        for i, d in enumerate(ins):
            it.set_tensor(d["index"], x if i == ctx["x"]["index"] else state[i])
        it.invoke()
        ys.append(it.get_tensor(outs[ctx["y"]["index"]]["index"]).copy())
        for s in ctx["states"]:
            state[s["input_index"]] = it.get_tensor(outs[s["output_index"]]["index"]).copy()
    return np.stack(ys)


def _run(cmd: list[str], cwd: Path | None = None, timeout: float = 900) -> str:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))}\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
    )
    return proc.stdout


def _cmake_demo(out: Path, lib: Path, build: Path, extra: list[str] | None = None) -> Path:
    tree = tb.find_tree(tb.REF_X86_64)
    _run(
        [
            "cmake",
            "-S",
            str(out / "cmake"),
            "-B",
            str(build),
            f"-DTFLM_TREE={tree}",
            f"-DTFLM_LIBRARY={lib}",
            "-DCMAKE_BUILD_TYPE=Release",
            *(extra or []),
        ]
    )
    _run(["cmake", "--build", str(build), "-j2"])
    return next(build.glob("*_demo"))


# ------------------------------------------------------------------------ host C++ builds


@pytest.mark.parametrize("key", list(ARTIFACTS))
def test_cmake_demo_matches_tflm_python(key: str, exports, artifacts, host_lib, tmp_path) -> None:
    out, ctx = exports.get(key)
    exe = _cmake_demo(out, host_lib, tmp_path / "build")
    n = 20 if ctx["is_step"] else 3
    raw = _raw_inputs(ctx["x"], n, seed=11)
    # The demo reads float32 and quantizes with lroundf: feed values that map back exactly.
    inp = tmp_path / "in.f32"
    inp.write_bytes(_real(ctx["x"], raw).astype(np.float32).tobytes())
    text = _run([str(exe), str(inp)])
    got = np.array([[float(v) for v in ln.split()] for ln in text.strip().splitlines()])
    got = got.astype(np.float32).reshape(n, -1)
    model = artifacts[key].read_bytes()
    ref_raw = _tflm_python(model, ctx, raw)[ctx["y"]["index"]]
    ref = _real(ctx["y"], ref_raw).reshape(n, -1)
    np.testing.assert_array_equal(got, ref)  # same kernels: bit for bit
    if key == "echo-sequence-int16x8":
        # LiteRT has no int16x8 fused LSTM kernel (int64 bias; TFLM is its only runtime)
        with pytest.raises(RuntimeError, match="INT64"):
            _litert(model, ctx, raw)
        return
    lt = _real(ctx["y"], _litert(model, ctx, raw)).reshape(n, -1)
    # TFLM's integer LSTM/GRU kernels are not LiteRT's: measured on the zoo echo with full-range
    # inputs, 9 LSB (fused int8, T=32) and 33 LSB of 65536 (int16x8 step, 20 carried steps).
    lsb = ctx["y"]["scale"] if ctx["y"]["quantized"] else 0.0
    tol = {"float32": 1e-4, "int8": 12 * lsb, "int16": 64 * lsb}[ctx["y"]["dtype"]]
    assert np.abs(got - lt).max() <= tol, (np.abs(got - lt).max(), tol)


def test_alias_model_plan_puts_y_in_a_state_input(exports) -> None:
    """The reason the demo reads y before carrying: in this model's plan y shares arena bytes
    with a state input (if TFLM's planner changes, search another shape)."""
    _require(tb.REF_X86_64)
    _, ctx = exports.get("alias-step-float")
    probe = exports.probe("alias-step-float", tb.REF_X86_64)
    run = tb.run_probe(probe, probe.arena_cap, steps=2)
    assert run.ok, run.log
    state_inputs = {s["input_index"] for s in ctx["states"]}
    y = ctx["y"]["index"]
    assert any(o == y and i in state_inputs for o, i in run.aliases()), run.placement()


@pytest.mark.parametrize("key", ARENA_IDS)
def test_arena_macros_hold_on_real_builds(key: str, exports, artifacts, tmp_path) -> None:
    """MIN_<build> runs, MIN_<build> - 16 fails, ARENA_SIZE covers every build."""
    for config in tb.CONFIGS:
        _require(config)
    _, ctx = exports.get(key)
    model = artifacts[key].read_bytes()
    py = measure_arena(model)
    kw = {"name": ctx["ident"], "source_file": artifacts[key].name}
    arena = measure_real_arenas(model, py, list(tb.CONFIGS), **kw)
    assert not arena.absent
    plan = plan_tflm(model, arena=arena, **kw)
    header = plan.files[f"{ctx['ident']}_model_data.h"]
    macros = {k: int(v) for k, v in re.findall(r"^#define (\w+) (\d+)u$", header, re.M)}
    p = ctx["prefix"]
    figures = {}
    for config, suffix in ((tb.REF_X86_64, "REF_X86_64"), (tb.CMSIS_NN_M4, "CMSIS_NN_M4")):
        mn = macros[f"{p}_ARENA_MIN_BYTES_{suffix}"]
        figures[suffix] = mn
        # the comment right above each figure names the build it was measured on
        assert re.search(
            rf"/\* measured on: [^\n]*(x86-64|Cortex-M4F)[^\n]*\*/\n#define {p}_ARENA_MIN_BYTES_{suffix} ",
            header,
        ), suffix
        probe = exports.probe(key, config)
        ok = tb.run_probe(probe, mn, steps=2)
        assert ok.ok, (config, mn, ok.status, ok.log[-500:])
        below = tb.run_probe(probe, mn - 16, steps=2)
        assert not below.ok, (config, mn)
        assert below.status in ("alloc_failed", "crashed"), below.status  # not in Invoke()
    assert macros[f"{p}_ARENA_MIN_BYTES"] == max(
        macros[f"{p}_ARENA_MIN_BYTES_PY_REF_X86_64"], *figures.values()
    )
    assert macros[f"{p}_ARENA_SIZE"] >= macros[f"{p}_ARENA_MIN_BYTES"] + 1024
    print(
        f"\n{key}: arena minimums {figures} python {py.min_bytes} size {macros[f'{p}_ARENA_SIZE']}"
    )


def test_export_says_which_arena_figures_are_absent(artifacts, monkeypatch, tmp_path) -> None:
    """Auto mode: only the builds whose tree variable is set are measured; the rest say why."""
    tree = _require(tb.REF_X86_64)
    monkeypatch.setenv("EDGELSTM_TFLM_TREE", str(tree))
    monkeypatch.delenv("EDGELSTM_TFLM_CMSIS_NN_TREE", raising=False)
    res = export_tflm(artifacts["rnn-step-int8"], tmp_path / "o", name="m")
    header = (tmp_path / "o" / "m_model_data.h").read_text()
    assert re.search(r"^#define M_ARENA_MIN_BYTES_REF_X86_64 \d+u$", header, re.M)
    assert "M_ARENA_MIN_BYTES_CMSIS_NN_M4 (" in header
    assert "$EDGELSTM_TFLM_CMSIS_NN_TREE was not set" in header
    assert "#define M_ARENA_MIN_BYTES_CMSIS_NN_M4" not in header
    assert set(res["arena"]["builds"]) == {tb.REF_X86_64}
    assert res["size"]["ram_arena_min_bytes_by_build"]["CMSIS_NN_M4"] is None


def test_demo_reports_a_too_small_arena_at_allocation(exports, host_lib, tmp_path) -> None:
    out, ctx = exports.get("echo-step-int8")
    probe = exports.probe("echo-step-int8", tb.REF_X86_64)
    mn, _ = tb.measure_arena_on(probe, ctx["arena"]["min_bytes"])
    flag = f"-DCMAKE_CXX_FLAGS=-D{ctx['prefix']}_ARENA_SIZE={mn - 64}"
    exe = _cmake_demo(out, host_lib, tmp_path / "b", [flag])
    proc = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    if proc.returncode > 0:  # it returned, rather than crashed inside AllocateTensors()
        assert "AllocateTensors() failed" in proc.stderr + proc.stdout
        assert "measured minimums: PY_REF_X86_64" in proc.stderr + proc.stdout


# ------------------------------------------------------------------------- Arduino sketch


def _sinf() -> Any:
    libm = ctypes.CDLL(ctypes.util.find_library("m"))
    libm.sinf.restype = ctypes.c_float
    libm.sinf.argtypes = [ctypes.c_float]
    return libm.sinf


def _sketch_inputs(ctx: dict[str, Any], n: int) -> np.ndarray:
    """The synthetic inputs the generated sketches compute (float32 arithmetic, libm sinf)."""
    sinf = _sinf()
    f = np.float32
    vals = np.zeros((n, ctx["x"]["elements"]), np.float32)
    for t in range(n):
        for i in range(ctx["x"]["elements"]):
            if ctx["is_step"]:
                arg = f(f(0.1) * f(t)) + f(f(0.5) * f(i))
            else:
                arg = f(f(0.05) * f(i)) + f(f(0.3) * f(t))
            vals[t, i] = sinf(float(arg))
    return vals


def _quantize(t: dict[str, Any], v: np.ndarray) -> np.ndarray:
    """model_io.h's set_value: lroundf(v / scale) + zero_point, saturated."""
    if not t["quantized"]:
        return v.astype(np.float32)
    q = v.astype(np.float32) / np.float32(t["scale"])
    q = np.sign(q) * np.floor(np.abs(q) + 0.5) + t["zero_point"]
    info = np.iinfo(t["dtype"])
    return np.clip(q, info.min, info.max).astype(t["dtype"])


@pytest.mark.parametrize("key", SKETCH_IDS)
def test_arduino_sketch_compiles_werror_and_runs_on_host(
    key: str, exports, artifacts, host_lib, tmp_path
) -> None:
    out, ctx = exports.get(key)
    tree = tb.find_tree(tb.REF_X86_64)
    assert tree is not None
    lib_dir = out / "arduino" / ctx["lib_name"]
    kind = "stream" if ctx["is_step"] else "sequence"
    sketch = lib_dir / "examples" / f"{ctx['ident']}_{kind}" / f"{ctx['ident']}_{kind}.ino"
    flags = tb.compile_flags(tb.REF_X86_64, tree, True)
    warn = ["-Wall", "-Wextra", "-Werror"]
    inc = [f"-I{SHIM}", f"-I{lib_dir / 'src'}"]
    objs = []
    for src, lang in (
        (sketch, ["-x", "c++", "-include", "Arduino.h"]),
        (SHIM / "arduino_host_main.cpp", []),
        (lib_dir / "src" / f"{ctx['ident']}_op_resolver.cpp", []),
    ):
        obj = tmp_path / (src.name + ".o")
        _run(["g++", *flags, *warn, *inc, *lang, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    cobj = tmp_path / "data.o"
    data_c = lib_dir / "src" / f"{ctx['ident']}_model_data.c"
    _run(["gcc", "-std=c99", *warn, "-pedantic", "-c", str(data_c), "-o", str(cobj)])
    exe = tmp_path / "sketch"
    _run(["g++", *objs, str(cobj), str(host_lib), "-o", str(exe)])
    n = 12 if ctx["is_step"] else 2
    lines = [ln for ln in _run([str(exe), str(n)]).splitlines() if " us=" in ln]
    assert len(lines) == n
    model = artifacts[key].read_bytes()
    raw = _quantize(ctx["x"], _sketch_inputs(ctx, n)).reshape(n, *ctx["x"]["shape"])
    ref = _real(ctx["y"], _tflm_python(model, ctx, raw)[ctx["y"]["index"]]).reshape(n, -1)
    for t, ln in enumerate(lines):
        fields = ln.split()
        assert fields[0] == str(t)
        want = [f"{float(v):.5f}" for v in ref[t]]
        assert fields[2:] == want, (t, fields[2:], want)


# -------------------------------------------------------- Cortex-M4 + CMSIS-NN under qemu


@pytest.mark.parametrize("key", INT8)
def test_m4_cmsis_nn_runs_every_int8_artifact(
    key: str, exports, artifacts, record_property
) -> None:
    _require(tb.CMSIS_NN_M4)
    _require(tb.REF_X86_64)
    _, ctx = exports.get(key)
    n = STEPS if ctx["is_step"] else 4
    raw = _raw_inputs(ctx["x"], n, seed=21)
    arena = ctx["arena"]["recommended_bytes"] * 2
    m4 = tb.run_probe(exports.probe(key, tb.CMSIS_NN_M4), arena, raw, n, reset_each=True)
    ref = tb.run_probe(exports.probe(key, tb.REF_X86_64), arena, raw, n, reset_each=True)
    assert m4.ok and ref.ok, (m4.status, m4.log[-800:], ref.status)
    y = ctx["y"]["index"]
    dist = int(np.abs(m4.outputs[y].astype(np.int32) - ref.outputs[y].astype(np.int32)).max())
    instr = float(np.median(m4.instructions))
    record_property("cmsis_nn_vs_ref_max_lsb", dist)
    record_property("m4_instructions_per_invoke_median", instr)
    print(f"\n{key}: CMSIS-NN vs reference max {dist} LSB; {instr:,.0f} qemu instr/invoke (M4)")
    assert instr > 0 and len(m4.instructions) == n
    if ctx["is_step"]:
        # explicit state: both kernel sets stream the same; CMSIS-NN differs by rounding only
        assert dist <= 3, dist
        for s in ctx["states"]:
            d = np.abs(m4.outputs[s["output_index"]].astype(int) - ref.outputs[s["output_index"]])
            assert d.max() <= 3
    else:
        assert dist <= 3, dist


def test_fused_t1_state_across_invokes_cmsis_nn_vs_reference(fused_t1, tmp_path) -> None:
    """Stream the fused int8 sequence model with T=1 and no Reset(): the reference kernels carry
    h/c in the variable tensors; CMSIS-NN's kernel is measured here (CMSIS_FUSED_RESTARTS
    documents it in the export)."""
    _require(tb.CMSIS_NN_M4)
    _require(tb.REF_X86_64)
    model = fused_t1.read_bytes()
    exports = Exports(tmp_path, {"fused-t1": fused_t1})
    _, ctx = exports.get("fused-t1")
    assert ctx["fused_lstm"] and ctx["x"]["shape"][1] == 1
    raw = _raw_inputs(ctx["x"], STEPS, seed=31)
    big = ctx["arena"]["recommended_bytes"] * 2
    ref_p, m4_p = (
        exports.probe("fused-t1", tb.REF_X86_64),
        exports.probe("fused-t1", tb.CMSIS_NN_M4),
    )
    ref_keep = tb.run_probe(ref_p, big, raw, STEPS, reset_each=False).outputs[0]
    ref_reset = tb.run_probe(ref_p, big, raw, STEPS, reset_each=True).outputs[0]
    m4_keep = tb.run_probe(m4_p, big, raw, STEPS, reset_each=False).outputs[0]
    m4_reset = tb.run_probe(m4_p, big, raw, STEPS, reset_each=True).outputs[0]
    py_keep = _tflm_python(model, ctx, raw, reset_each=False)[0]
    np.testing.assert_array_equal(ref_keep, py_keep)  # same reference kernels, same streaming
    assert not np.array_equal(ref_keep, ref_reset)  # reference kernels carry the state
    lsb = lambda a, b: int(np.abs(a.astype(int) - b.astype(int)).max())  # noqa: E731
    restarts = lsb(m4_keep, m4_reset) == 0
    print(
        f"\nfused T=1, {STEPS} invokes: CMSIS-NN keep-vs-reset {lsb(m4_keep, m4_reset)} LSB, "
        f"CMSIS-NN vs reference (no Reset) {lsb(m4_keep, ref_keep)} LSB; restarts={restarts}"
    )
    assert restarts == CMSIS_FUSED_RESTARTS
    assert lsb(m4_reset, ref_reset) <= 3  # with Reset() before each invoke they agree


def test_m4_instructions_helper_for_benchmarks(artifacts, tmp_path) -> None:
    _require(tb.CMSIS_NN_M4)
    res = tb.m4_instructions_per_invoke(artifacts["echo-step-int8"], steps=5, workdir=tmp_path)
    assert res["median"] > 1000 and len(res["per_invoke"]) == 5
    assert "not cycles" in res["unit"]


def test_release_build_runs_the_fused_int8_lstm_the_debug_build_aborts(artifacts, tmp_path) -> None:
    """The benchmarks' peer build (-DNDEBUG, as release firmware) runs the echo fused int8
    sequence model that the default CMSIS-NN build aborts in (the xfail above): the peer's best
    configuration is measured, not skipped."""
    _require(tb.CMSIS_NN_M4)
    seq = artifacts["echo-sequence-int8"]
    with pytest.raises(RuntimeError, match="M4 run failed"):
        tb.m4_instructions_per_invoke(seq, steps=2, workdir=tmp_path / "debug")
    res = tb.m4_instructions_per_invoke(seq, steps=2, workdir=tmp_path / "rel", release=True)
    assert res["median"] > 1000 and "-DNDEBUG" in res["config"]
