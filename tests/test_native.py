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
from edgelstm.runtime.native import BuildOptions, CompilerError, StreamBatch, build_engine

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
