"""The native runtime: the C engine compiled on the host and loaded with ctypes.

Parity: int8 bit-exact with the portable build of the same engine (-O0, no -march, no SIMD) and
within 2 LSB of LiteRT (kernel sets round differently); float within 1e-5 of LiteRT.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import BadInputError
from edgelstm.runtime import Runtime, StepRunner
from edgelstm.runtime.backends import quantize
from edgelstm.runtime.native import (
    BuildOptions,
    CompilerError,
    NativeEngine,
    StreamBatch,
    build_engine,
)

DATA = Path(__file__).parent / "data"
STEP_F = DATA / "tiny_step_float.tflite"
STEP_Q = DATA / "tiny_step_int8.tflite"
SEQ_F = DATA / "tiny_sequence_float.tflite"
FLOAT_TOL = 1e-5
INT8_TOL = 2 / 256  # LiteRT's kernels vs the engine's (TFLite reference arithmetic)
PORTABLE = BuildOptions(opt="-O0", march=None, simd=False)

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None and shutil.which("gcc") is None, reason="no C compiler installed"
)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("native-cache")


@pytest.fixture(scope="module")
def eval_x() -> np.ndarray:
    return np.load(DATA / "tiny_eval.npz")["x"][:8]


def _runs(runner: StepRunner, xs: np.ndarray) -> np.ndarray:
    return np.stack([runner.run(x) for x in xs])


@pytest.mark.parametrize(
    ("model", "tol"), [(STEP_F, FLOAT_TOL), (STEP_Q, INT8_TOL)], ids=["float", "int8"]
)
def test_parity_with_litert_and_the_portable_build(
    model: Path, tol: float, cache: Path, eval_x: np.ndarray
) -> None:
    ref = _runs(StepRunner(model, Runtime.LITERT), eval_x)
    native = StepRunner(model, "native", cache_dir=cache)
    assert native.runtime == Runtime.NATIVE
    got = _runs(native, eval_x)
    assert np.abs(got - ref).max() <= tol
    portable = _runs(StepRunner(model, "native", cache_dir=cache, build_options=PORTABLE), eval_x)
    if "int8" in model.name:
        np.testing.assert_array_equal(got, portable)
    else:
        assert np.abs(got - portable).max() <= FLOAT_TOL


@pytest.mark.parametrize("model", [STEP_F, STEP_Q], ids=["float", "int8"])
def test_chunked_equals_per_step_and_state_round_trips(
    model: Path, cache: Path, eval_x: np.ndarray
) -> None:
    runner = StepRunner(model, "native", cache_dir=cache)
    steps = eval_x.reshape(-1, eval_x.shape[-1])[:40]
    pushed = np.stack([runner.push(s) for s in steps])
    saved = runner.get_state()
    assert all(np.abs(v).max() > 0 for v in saved.values())
    runner.reset()
    assert runner.steps == 0
    chunked = runner.push_many(steps)
    np.testing.assert_array_equal(chunked, pushed)
    assert runner.steps == 40
    for k, v in runner.get_state().items():
        np.testing.assert_array_equal(v, saved[k])
    nxt = runner.push(steps[0])
    runner.reset()
    first = runner.push(steps[0])
    assert np.abs(first - nxt).max() > 0  # the state mattered
    runner.set_state(saved)
    np.testing.assert_array_equal(runner.push(steps[0]), nxt)
    with pytest.raises(BadInputError, match="state0_h"):
        runner.set_state({"state0_h": np.zeros(3), "state0_c": np.zeros(8)})
    with pytest.raises(BadInputError, match="needs 3"):
        runner.push_many(np.zeros((4, 5)))


def test_batched_streams_equal_independent_streams(cache: Path, eval_x: np.ndarray) -> None:
    batch = StreamBatch(STEP_Q, streams=4, cache_dir=cache)
    xs = eval_x[:4].transpose(1, 0, 2)  # [T, B, D]
    ys = batch.push_many(xs)
    assert ys.shape == (xs.shape[0], 4, 3)
    single = StepRunner(STEP_Q, "native", cache_dir=cache)
    for b in range(4):
        np.testing.assert_array_equal(ys[:, b], single.run(eval_x[b]))
    # streams are independent: resetting one leaves the others
    saved = batch.get_state(1)
    batch.reset(0)
    assert all(np.all(v == 0) for v in batch.get_state(0).values())
    for k, v in batch.get_state(1).items():
        np.testing.assert_array_equal(v, saved[k])
    batch.set_state(0, saved)
    step = batch.push(np.stack([xs[0, 1]] * 4))  # same input: streams 0 and 1 now agree
    np.testing.assert_array_equal(step[0], step[1])
    assert np.abs(step[0] - step[2]).max() > 0
    with pytest.raises(BadInputError, match="stream 4"):
        batch.get_state(4)


def test_second_load_is_a_cache_hit(tmp_path: Path) -> None:
    data = STEP_F.read_bytes()
    first = build_engine(data, cache_dir=tmp_path)
    again = build_engine(data, cache_dir=tmp_path)
    assert first.compiled and not again.compiled
    assert first.directory == again.directory and again.library.is_file()
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 1
    other = build_engine(data, BuildOptions(march=None), cache_dir=tmp_path)
    assert other.compiled and other.directory != first.directory  # flags are in the key


def test_sequence_model_is_refused(cache: Path) -> None:
    from edgelstm.runtime.backends import load_backend

    with pytest.raises(BadInputError, match="step models"):
        load_backend(SEQ_F, "native", cache_dir=cache)


def test_no_compiler_exits_2_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {**os.environ, "PATH": str(tmp_path), "CC": "", "EDGELSTM_CACHE_DIR": str(tmp_path)}
    code = (
        f"from edgelstm.cli import main\nmain(['stream', {str(STEP_F)!r}, '--runtime', 'native'])\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], input="1 2 3\n", env=env, capture_output=True, text=True
    )
    assert proc.returncode == 2, proc.stderr
    err = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(err) == 1 and "C compiler" in err[0] and "Traceback" not in proc.stderr
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(CompilerError, match="no-such-cc"):
        build_engine(STEP_F.read_bytes(), cache_dir=tmp_path)


# --- chunked calls: the state-independent part run a block ahead, the recurrent FC fused ------

BLOCK_TS = (1, 15, 16, 17, 40)  # el_native.c's ELN_BLOCK is 16: one step, block edges, 2.5 blocks


def _plain_engine(model: Path, directory: Path) -> NativeEngine:
    """The engine as exported (one <name>_step, no split, no fused FC), with the native flags."""
    from edgelstm.runtime import native as nat

    directory.mkdir(parents=True, exist_ok=True)
    eng = nat.write_sources(model.read_bytes(), directory, host=False)
    assert eng.prog.pre_bytes == 0 and "el_fc_s8_fast_add_lut" not in eng.files["elnm_model.c"]
    cmd = nat._compile(nat.find_compiler(), BuildOptions().flags(), directory)
    return NativeEngine(
        nat.NativeBuild(directory, nat._meta(eng.ifc, eng.prog, cmd, "plain"), True)
    )


def _raw(runner: StepRunner, xs: np.ndarray) -> np.ndarray:
    xi, eng = runner.x_info, runner.backend.engine
    return np.ascontiguousarray(quantize(xs, xi.dtype, xi.scale, xi.zero_point), eng.x_dtype)


def _assert_blocks_match_plain(runner: StepRunner, plain: NativeEngine, raw: np.ndarray) -> None:
    """Chunked (blocked), one eln_step per step and the plain engine: the same bytes."""
    b = runner.backend
    assert b.build.meta["pre_bytes"] > 0  # the engine is split: chunks run in blocks
    for t in BLOCK_TS:
        b.state[:] = 0
        chunked = b.run_chunk(raw[:t])
        chunk_state = b.state.copy()
        b.state[:] = 0
        single = []
        for x in raw[:t]:
            b._x[:] = x
            b.invoke()
            single.append(b._y.copy())
        np.testing.assert_array_equal(chunked, np.stack(single))
        np.testing.assert_array_equal(chunk_state, b.state)
        state = plain.new_states(1)
        ys = np.empty_like(chunked)
        assert plain.run(state, raw[:t], ys) == (t, 0)
        np.testing.assert_array_equal(chunked, ys)  # int8 and float alike: the same operations
        np.testing.assert_array_equal(chunk_state, state)


@pytest.mark.parametrize("model", [STEP_Q, STEP_F], ids=["int8", "float"])
def test_chunks_in_blocks_equal_single_steps_and_the_plain_engine(
    model: Path, cache: Path, eval_x: np.ndarray, tmp_path: Path
) -> None:
    runner = StepRunner(model, "native", cache_dir=cache)
    raw = _raw(runner, eval_x.reshape(-1, eval_x.shape[-1])[:40])
    plain = _plain_engine(model, tmp_path / "plain")
    _assert_blocks_match_plain(runner, plain, raw)
    # B streams advance call by call (t, b): blocks of 16 calls cut across time steps
    batch = StreamBatch(model, streams=3, cache_dir=cache)
    batch.states[:] = 0
    xs = raw[:21].reshape(7, 3, -1)
    ys = np.empty((7, 3, plain.y_size), plain.y_dtype)
    assert batch.engine.run_batch(batch.states, xs, ys) == (21, 0)
    for s in range(3):
        state = plain.new_states(1)
        want = np.empty((7, plain.y_size), plain.y_dtype)
        plain.run(state, np.ascontiguousarray(xs[:, s]), want)
        np.testing.assert_array_equal(ys[:, s], want)
        np.testing.assert_array_equal(batch.states[s], state[0])


@pytest.fixture(scope="module")
def stacked_int8(
    keras_model_file, calibration_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """LSTM(16) -> LSTM(8) int8 step: 16 units reach the AVX-512 FC + gates kernel; the second
    layer's input projection reads the first layer's state, so only the first one is hoisted."""
    from edgelstm.convert import ConvertConfig, convert_model
    from edgelstm.types import Quantization, Variant

    out = tmp_path_factory.mktemp("stacked")
    cfg = ConvertConfig(
        variants=[Variant.STEP],
        quantizations=[Quantization.INT8],
        calibration=str(calibration_file),
        calibration_samples=32,
        verify_samples=4,
        verify_fail=False,
        int16_cell=False,  # the int8 cell (--int8-lstm-cell int8): the int8 FC + gates kernels
    )
    convert_model(keras_model_file("lstm"), out, cfg)
    return next(out.glob("*_step_int8.tflite"))


def test_the_split_engine_keeps_every_op_and_the_export_is_unchanged() -> None:
    from edgelstm.codegen.engine import generate

    plain = generate(STEP_Q, name="e")
    split = generate(STEP_Q, name="e", split_input=True, fuse_fc_add=True)
    assert plain.prog.pre_bytes == 0 and "e_step_input" not in plain.files["e_model.c"]
    assert split.prog.pre_bytes > 0 and "e_step_input(" in split.files["e_model.c"]
    # the per-op list (EL_PROFILE indices, the export's per-op profile) covers every op; which
    # ops run inside a fused kernel differs (the export fuses the LSTM cell, the native build its
    # recurrent FC with the gates)
    assert [o[:3] for o in split.prog.ops] == [o[:3] for o in plain.prog.ops]
    assert any(o[3] for o in plain.prog.ops) and any(o[3] for o in split.prog.ops)
    assert [o[0] for o in plain.prog.ops] == [op.index for op in plain.graph.ops]


def test_fused_recurrent_fc_is_bit_exact(stacked_int8: Path, cache: Path, tmp_path: Path) -> None:
    runner = StepRunner(stacked_int8, "native", cache_dir=cache)
    src = (runner.backend.build.directory / "elnm_model.c").read_text()
    assert src.count("el_fc_s8_fast_add_lut(") == 2  # both layers' recurrent FCs
    assert src.count("(pre + ") >= 2  # the first layer's input projection, hoisted
    xs = np.random.default_rng(5).standard_normal((40, runner.input_size))
    raw = _raw(runner, xs)
    _assert_blocks_match_plain(runner, _plain_engine(stacked_int8, tmp_path / "plain"), raw)
    portable = StepRunner(stacked_int8, "native", cache_dir=cache, build_options=PORTABLE)
    runner.reset()
    np.testing.assert_array_equal(portable.push_many(xs), runner.push_many(xs))


def test_a_failing_step_inside_a_block_stops_where_the_plain_engine_does(
    keras_model_file, tmp_path: Path, cache: Path
) -> None:
    """Token ids: the GATHER is in the hoisted part. An id outside the table at step 20 (inside
    the second block): 20 steps done, their outputs and the state as the plain engine's."""
    from edgelstm.convert import ConvertConfig, convert_model
    from edgelstm.types import Quantization, Variant

    out = tmp_path / "emb"
    cfg = ConvertConfig(variants=[Variant.STEP], quantizations=[Quantization.FLOAT])
    convert_model(keras_model_file("emb"), out, cfg)
    step = next(out.glob("*_step_float.tflite"))
    eng = StepRunner(step, "native", cache_dir=cache).backend.engine
    assert eng.build.meta["pre_bytes"] > 0
    plain = _plain_engine(step, tmp_path / "plain")
    ids = np.random.default_rng(2).integers(0, 20, (40, 1)).astype(eng.x_dtype)
    ids[20] = 25
    got = []
    for e in (eng, plain):
        state = e.new_states(1)
        ys = np.zeros((40, e.y_size), e.y_dtype)
        assert e.run(state, ids, ys) == (20, 1)
        got.append((ys, state))
    np.testing.assert_array_equal(got[0][0], got[1][0])
    np.testing.assert_array_equal(got[0][1], got[1][1])


# --- SIMD kernels: fuzzed against the portable ones, natively and under qemu-aarch64 ----------

KDIR = Path(__file__).resolve().parents[1] / "edgelstm" / "firmware_export" / "cengine"
A64_CC = "aarch64-linux-gnu-gcc"
QEMU_A64 = "qemu-aarch64-static"


def _x86_flags() -> list[tuple[str, list[str]]]:
    """The x86 variants this CPU can run (from /proc/cpuinfo)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = set()
    out = []
    if {"avx2", "fma"} <= flags:
        out.append(("avx2", ["-march=x86-64-v3"]))
    if {"avx2", "fma", "avx_vnni"} <= flags:
        out.append(("avxvnni", ["-march=x86-64-v3", "-mavxvnni"]))
    if {"avx512f", "avx512bw", "avx512vl", "avx512_vnni"} <= flags:
        vbmi = ["-mavx512vbmi"] if "avx512vbmi" in flags else []  # the VPERMI2B table lookups
        wide = ["-mprefer-vector-width=512"]  # as the native build
        out.append(("avx512vnni", ["-march=x86-64-v4", "-mavx512vnni", *vbmi, *wide]))
    return out


def _build_check(tmp: Path, cc: list[str], flags: list[str]) -> Path:
    exe = tmp / "el_simd_check"
    srcs = [KDIR / "native" / "el_simd_check.c", KDIR / "edgelstm_kernels.c"]
    srcs.append(KDIR / "edgelstm_kernels_simd.c")
    subprocess.run(
        [
            *cc,
            "-O3",  # as the native build: the vectorised loops are what is under test
            "-Wall",
            "-Wextra",
            "-Werror",
            *flags,
            f"-I{KDIR}",
            "-o",
            str(exe),
            *srcs,
            "-lm",
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return exe


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="x86-64 host only")
@pytest.mark.parametrize("seed", [1])
def test_x86_simd_kernels_match_the_portable_ones(tmp_path: Path, seed: int) -> None:
    variants = _x86_flags()
    if not variants:
        pytest.skip("this CPU has no AVX2")
    for kind, flags in variants:
        exe = _build_check(tmp_path, [shutil.which("cc") or "gcc"], flags)
        out = subprocess.run(
            [str(exe), str(seed), "60"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0 and out.stdout.startswith(f"ok {kind} "), out.stdout


def _need_a64() -> None:
    if shutil.which(A64_CC) is None or shutil.which(QEMU_A64) is None:
        pytest.skip(
            f"{A64_CC} / {QEMU_A64} not installed (apt: gcc-aarch64-linux-gnu qemu-user-static)"
        )


@pytest.mark.parametrize(
    ("kind", "march"),
    [("neon-sdot", "armv8.2-a+dotprod"), ("neon", "armv8-a")],
    ids=["sdot", "neon"],
)
def test_aarch64_simd_kernels_match_under_qemu(tmp_path: Path, kind: str, march: str) -> None:
    _need_a64()
    exe = _build_check(tmp_path, [A64_CC, "-static"], [f"-march={march}"])
    out = subprocess.run(
        [QEMU_A64, "-cpu", "max", str(exe), "5", "60"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and out.stdout.startswith(f"ok {kind} "), out.stdout


@pytest.mark.parametrize("model", [STEP_Q, STEP_F], ids=["int8", "float"])
def test_aarch64_neon_engine_matches_the_host_portable_build(
    model: Path, tmp_path: Path, cache: Path, eval_x: np.ndarray
) -> None:
    """The whole engine, static aarch64 with NEON + SDOT, under qemu-user (correctness only)."""
    from edgelstm.runtime.native import build_driver

    _need_a64()
    exe = build_driver(
        model.read_bytes(), tmp_path, [A64_CC, "-static"], ["-O2", "-march=armv8.2-a+dotprod"]
    )
    host = StepRunner(model, "native", cache_dir=cache, build_options=PORTABLE)
    eng = host.backend.engine
    xs = eval_x.reshape(-1, eval_x.shape[-1])[:48]
    raw = quantize(xs, host.x_info.dtype, host.x_info.scale, host.x_info.zero_point)
    raw = np.ascontiguousarray(raw, eng.x_dtype)
    proc = subprocess.run(
        [QEMU_A64, "-cpu", "max", str(exe)], input=raw.tobytes(), capture_output=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    ny = len(xs) * eng.y_size * eng.y_dtype.itemsize
    got_y = np.frombuffer(proc.stdout[:ny], eng.y_dtype).reshape(len(xs), -1)
    got_state = np.frombuffer(proc.stdout[ny:], np.uint8)
    host.backend.state[:] = 0
    want_y = host.backend.run_chunk(raw)
    if eng.y_dtype == np.int8:
        np.testing.assert_array_equal(got_y, want_y)
        np.testing.assert_array_equal(got_state, host.backend.state[0])
    else:
        np.testing.assert_allclose(got_y, want_y, atol=FLOAT_TOL)


def test_threads_sharing_one_library_get_their_own_results(cache: Path) -> None:
    """ctypes drops the GIL and the engine's arena is static: calls are serialised per library."""
    from concurrent.futures import ThreadPoolExecutor

    xs = np.random.default_rng(3).standard_normal((4, 300, 3))
    want = [StepRunner(STEP_Q, "native", cache_dir=cache).push_many(x) for x in xs]
    runners = [StepRunner(STEP_Q, "native", cache_dir=cache) for _ in xs]

    def work(i: int) -> bool:
        for _ in range(20):
            runners[i].reset()
            if not np.array_equal(runners[i].push_many(xs[i]), want[i]):
                return False
        return True

    with ThreadPoolExecutor(4) as pool:
        assert all(pool.map(work, range(4)))
