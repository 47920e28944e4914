"""Build and run exported TFLite Micro code against a real TFLM source tree.

Two build configurations (`CONFIGS`):

* `ref-x86_64`: the host tree (reference kernels), g++ -O2, run natively.
* `cmsis-nn-m4`: the CMSIS-NN tree, arm-none-eabi-g++ -O2 for a Cortex-M4F, run bare-metal on
  `qemu-system-arm -M mps2-an386 -cpu cortex-m4 -icount shift=0 -semihosting` (our own startup,
  linker script and semihosting argv; firmware_export/tflm/probe/).

`BENCH_CONFIGS` adds `cmsis-nn-m4-release` (the same with -DNDEBUG) for the benchmarks' peer rows.

The TFLM library is compiled once per (tree content, compiler, flags) and cached as a static
library under `cache_dir()` (`$EDGELSTM_CACHE_DIR`, default ~/.cache/edgelstm), behind a file lock
so parallel test workers build it once. Per model, `build_probe()` compiles a small harness
(probe/probe_main.cpp.j2, rendered with the export's context) that runs N invokes from a raw input
file, writes every output of every invoke (read before the state is carried) and, on the M4,
SysTick counts calibrated to instructions. `measure_arena_on()` bisects the smallest arena with
which AllocateTensors() and Invoke() succeed in that real build.

Public helpers (benchmarks call `m4_instructions_per_invoke`):
`find_tree(config)`, `build_library(config, tree)`, `build_probe(config, export_dir, ctx, ...)`,
`run_probe(probe, arena, inputs, steps, ...)`, `measure_arena_on(config, probe, ...)`.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import MissingDependencyError
from edgelstm.paths import bundled_dir

PROBE_DIR = bundled_dir("firmware_export") / "tflm" / "probe"
REF_X86_64 = "ref-x86_64"
CMSIS_NN_M4 = "cmsis-nn-m4"
CMSIS_NN_M4_RELEASE = "cmsis-nn-m4-release"  # benchmarks only: BENCH_CONFIGS
_CMSIS_ENV = "EDGELSTM_TFLM_CMSIS_NN_TREE"
TREE_ENV = {
    REF_X86_64: "EDGELSTM_TFLM_TREE",
    CMSIS_NN_M4: _CMSIS_ENV,
    CMSIS_NN_M4_RELEASE: _CMSIS_ENV,
}
# Where a checkout finds the team's shared trees when the variables are unset (tests, CI).
_SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "third_party" / "tflite-micro"
_DEFAULT_TREE = {
    REF_X86_64: _SHARED / "host",
    CMSIS_NN_M4: _SHARED / "cortex-m4-cmsis-nn",
    CMSIS_NN_M4_RELEASE: _SHARED / "cortex-m4-cmsis-nn",
}
QEMU = [
    "qemu-system-arm",
    "-M",
    "mps2-an386",
    "-cpu",
    "cortex-m4",
    "-icount",
    "shift=0",
    "-nographic",
    "-monitor",
    "none",
    "-serial",
    "none",
    "-semihosting-config",
    "enable=on,target=native",
]
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
_COMMON_DEFS = ["-DTF_LITE_STATIC_MEMORY"]
_CXX_FLAGS = ["-std=c++17", "-fno-rtti", "-fno-exceptions", "-fno-threadsafe-statics"]
OPT = ["-O2", "-ffunction-sections", "-fdata-sections"]


@dataclass(frozen=True)
class Config:
    """One way of building TFLite Micro: compilers, flags, and how a program runs."""

    name: str
    cc: str
    cxx: str
    flags: tuple[str, ...]
    defines: tuple[str, ...]
    emulated: bool
    description: str  # what a measurement on it means, for comments


CONFIGS: dict[str, Config] = {
    REF_X86_64: Config(
        REF_X86_64,
        "gcc",
        "g++",
        tuple(OPT),
        (*_COMMON_DEFS, "-DTF_LITE_DISABLE_X86_NEON"),
        False,
        "x86-64 host, TFLite Micro reference kernels, g++ -O2",
    ),
    CMSIS_NN_M4: Config(
        CMSIS_NN_M4,
        "arm-none-eabi-gcc",
        "arm-none-eabi-g++",
        (*OPT, *M4_FLAGS),
        (
            *_COMMON_DEFS,
            "-DCMSIS_NN",
            "-DARMCM4",
            # The tree has no ARMCM4.h device header; cortex_m_generic/micro_time.cc then
            # needs its stub timer (PROJECT_GENERATION, read by that file only). The probe
            # times Invoke() with SysTick itself.
            "-DPROJECT_GENERATION",
        ),
        True,
        "Cortex-M4F (qemu mps2-an386), TFLite Micro + CMSIS-NN kernels, arm-none-eabi-g++ -O2",
    ),
}

# Benchmarks only (no export measures its arena on it): the CMSIS-NN build with TFLM's debug
# checks compiled out, as release firmware is built. Without -DNDEBUG a fused int8 LSTM aborts in
# CMSIS-NN's FULLY_CONNECTED (`TFLITE_DCHECK_GE(buffer_conv_1x1_idx, 4)`), so the peer's fastest
# configuration could not be measured at all.
BENCH_CONFIGS: dict[str, Config] = {
    CMSIS_NN_M4_RELEASE: replace(
        CONFIGS[CMSIS_NN_M4],
        name=CMSIS_NN_M4_RELEASE,
        defines=(*CONFIGS[CMSIS_NN_M4].defines, "-DNDEBUG"),
        description="Cortex-M4F (qemu mps2-an386), TFLite Micro + CMSIS-NN kernels, "
        "arm-none-eabi-g++ -O2 -DNDEBUG (debug checks compiled out, as in a release build)",
    )
}


def _config(name: str) -> Config:
    """A build configuration by name (CONFIGS, or a benchmark-only one)."""
    return CONFIGS.get(name) or BENCH_CONFIGS[name]


def cache_dir() -> Path:
    """$EDGELSTM_CACHE_DIR or ~/.cache/edgelstm."""
    env = os.environ.get("EDGELSTM_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "edgelstm"


def is_tree(path: Path | None) -> bool:
    return bool(path) and (Path(path) / "tensorflow/lite/micro/micro_interpreter.h").is_file()


def find_tree(config: str, default: bool = True) -> Path | None:
    """The tree for `config`: its environment variable, else (default=True) the shared copy
    beside this checkout; None when neither is a TFLM tree."""
    env = os.environ.get(TREE_ENV[config])
    if env:
        return Path(env) if is_tree(Path(env)) else None
    tree = _DEFAULT_TREE[config]
    return tree if default and is_tree(tree) else None


def missing_tools(config: str) -> list[str]:
    """Programs `config` needs that are not on PATH."""
    cfg = _config(config)
    need = [cfg.cc, cfg.cxx] + (["qemu-system-arm"] if cfg.emulated else [])
    return [p for p in need if shutil.which(p) is None]


def include_dirs(tree: Path) -> list[str]:
    dirs = [
        tree,
        tree / "third_party/flatbuffers/include",
        tree / "third_party/gemmlowp",
        tree / "third_party/ruy",
        tree / "third_party/cmsis_nn",
        tree / "third_party/cmsis_nn/Include",
        tree / "third_party/cmsis/CMSIS/Core/Include",
        tree / "third_party/cmsis/Device/ARM/ARMCM4/Include",
    ]
    return [f"-isystem{d}" for d in dirs if d.is_dir()]


def _kernel_dirs(tree: Path) -> list[Path]:
    k = tree / "tensorflow/lite/micro/kernels"
    return [k, k / "cmsis_nn"]


def _sources(tree: Path, ops: list[str] | None) -> list[Path]:
    """The TFLM sources a build compiles: everything but the op kernels (signal/ and kissfft are
    never needed), plus the kernel files that define `Register_<OP>()` for each op in `ops`
    (None: every kernel). Unused objects are never linked: the library is an archive."""
    base = tree / "tensorflow"
    kdirs = _kernel_dirs(tree)
    srcs, kernels = [], []
    for p in sorted([*base.rglob("*.cc"), *base.rglob("*.c")]):
        (kernels if p.parent in kdirs else srcs).append(p)
    want = None if ops is None else {f"Register_{op}(" for op in ops}
    for p in kernels:
        text = p.read_text(errors="replace")
        registers = set(re.findall(r"\bRegister_\w+\(", text))
        if not registers or want is None or registers & want:
            srcs.append(p)  # helpers (*_common, kernel_util, lstm_eval, ...) or a wanted op
    nn = tree / "third_party/cmsis_nn/Source"
    if nn.is_dir():
        srcs += sorted(nn.rglob("*.c"))
    return srcs


@functools.lru_cache(maxsize=8)
def tree_hash(tree: Path) -> str:
    """Content hash of every file of the tree that a build reads."""
    h = hashlib.sha256()
    for p in sorted(tree.rglob("*")):
        if p.is_file() and p.suffix in (".h", ".hpp", ".cc", ".c", ".inc"):
            h.update(str(p.relative_to(tree)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


def _compiler_id(cc: str) -> str:
    out = subprocess.run([cc, "--version"], capture_output=True, text=True, check=True).stdout
    return out.splitlines()[0]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], timeout: float = 600, cwd: Path | None = None) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, cmd))}\n{proc.stderr[-4000:]}")


def compile_flags(config: str, tree: Path, cxx: bool) -> list[str]:
    cfg = _config(config)
    lang = _CXX_FLAGS if cxx else ["-std=c11"]
    return [*lang, *cfg.flags, *cfg.defines, *include_dirs(tree)]


def build_library(config: str, tree: Path, ops: list[str] | None = None, jobs: int = 2) -> Path:
    """A static TFLM library for `config` from `tree` with the kernels of `ops` (None: all).

    Every object is compiled once and cached under cache_dir()/tflm/<config>-<key>/ (key: the
    tree's content hash, the compiler's version and the flags); a model with a new op compiles
    only that op's kernel. The archive of a given object set is cached too."""
    cfg = _config(config)
    if missing := missing_tools(config):
        raise MissingDependencyError(" and ".join(missing), f"building TFLite Micro ({config})")
    tree = Path(tree).resolve()
    key = hashlib.sha256(
        "\n".join(
            [tree_hash(tree), _compiler_id(cfg.cxx), *compile_flags(config, Path("T"), True)]
        ).encode()
    ).hexdigest()[:20]
    out = cache_dir() / "tflm" / f"{config}-{key}"
    srcs = _sources(tree, None if ops is None else sorted(set(ops)))
    rels = [str(p.relative_to(tree)) for p in srcs]
    lib = out / f"libtflm-{hashlib.sha256(chr(10).join(rels).encode()).hexdigest()[:16]}.a"
    with _locked(out.parent / f"{config}-{key}.lock"):
        if lib.is_file():
            return lib
        objdir = out / "obj"
        todo = [(s, objdir / (r + ".o")) for s, r in zip(srcs, rels, strict=True)]

        def one(item: tuple[Path, Path]) -> None:
            src, obj = item
            if obj.is_file():
                return
            obj.parent.mkdir(parents=True, exist_ok=True)
            cxx = src.suffix == ".cc"
            cmd = [cfg.cxx if cxx else cfg.cc, *compile_flags(config, tree, cxx), "-w"]
            tmp = obj.with_suffix(".tmp.o")
            _run([*cmd, "-c", str(src), "-o", str(tmp)])
            tmp.replace(obj)

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(one, todo))
        ar = "arm-none-eabi-ar" if cfg.emulated else "ar"
        tmp_lib = lib.with_suffix(".tmp.a")
        tmp_lib.unlink(missing_ok=True)
        _run([ar, "rcs", str(tmp_lib), *(str(o) for _, o in todo)])
        tmp_lib.replace(lib)
        (out / "config.txt").write_text(f"{cfg.description}\ntree {tree}\n")
    return lib


# ---- the per-model probe program ---------------------------------------------------------------


@dataclass
class Probe:
    """A built probe executable for one exported model on one configuration."""

    config: str
    exe: Path
    arena_cap: int
    ctx: dict[str, Any] = field(repr=False)


def build_probe(
    config: str,
    export_dir: Path,
    ctx: dict[str, Any],
    workdir: Path,
    tree: Path | None = None,
    arena_cap: int = 0,
) -> Probe:
    """Compile the export in `export_dir` (model data, resolver, model_io.h) with the probe
    harness for `config`; `ctx` is the export's template context (tflm.build_context)."""
    from edgelstm.export.tflm import render_template

    cfg = _config(config)
    tree = tree or find_tree(config)
    if tree is None:
        raise MissingDependencyError(
            f"a TFLite Micro tree (${TREE_ENV[config]})", f"building for {config}"
        )
    lib = build_library(config, tree, ops=list(ctx["ops"]))
    workdir.mkdir(parents=True, exist_ok=True)
    cap = arena_cap or max(64 * 1024, 4 * int(ctx["arena"]["recommended_bytes"]))
    main = workdir / "probe_main.cpp"
    main.write_text(render_template("probe/probe_main.cpp.j2", ctx))
    ident = ctx["ident"]
    export_dir = Path(export_dir)
    inc = [f"-I{export_dir}"]
    cxx = [cfg.cxx, *compile_flags(config, tree, True), *inc, "-Wall", "-Wextra", "-Werror"]
    cc = [cfg.cc, *compile_flags(config, tree, False), *inc]
    objs = []
    jobs = [
        ([*cxx, f"-DEL_ARENA_CAP={cap}"], main),
        (cxx, export_dir / f"{ident}_op_resolver.cpp"),
        (cc, export_dir / f"{ident}_model_data.c"),
    ]
    if cfg.emulated:
        jobs.append((cc, PROBE_DIR / "m4_startup.c"))
    for cmd, src in jobs:
        obj = workdir / (src.name + ".o")
        _run([*cmd, "-c", str(src), "-o", str(obj)])
        objs.append(str(obj))
    exe = workdir / ("probe.elf" if cfg.emulated else "probe")
    link = [cfg.cxx, *cfg.flags, *objs, str(lib), "-o", str(exe), "-Wl,--gc-sections"]
    if cfg.emulated:
        link += ["-nostartfiles", "-T", str(PROBE_DIR / "m4_mps2.ld"), "--specs=rdimon.specs"]
        link += ["-Wl,--start-group", "-lc", "-lrdimon", "-lm", "-lstdc++", "-Wl,--end-group"]
    else:
        link += ["-lm"]
    _run(link)
    return Probe(config, exe, cap, ctx)


@dataclass
class ProbeRun:
    """What one probe run printed: status, arena use, every output of every invoke, counts."""

    ok: bool
    status: str  # ok | alloc_failed | invoke_failed | crashed | timeout
    arena_used: int
    outputs: list[np.ndarray]  # per output tensor: [invokes, *shape], raw stored values
    ticks: list[int]
    instructions: list[float]  # per invoke (emulated only): qemu instructions, not cycles
    log: str

    def placement(self) -> dict[tuple[str, int], tuple[int, int]]:
        """('in'|'out', index) -> (arena offset, bytes) of every I/O tensor."""
        found = re.findall(r"^EL_TENSOR (in|out) (\d+) (-?\d+) (\d+)$", self.log, re.M)
        return {(k, int(i)): (int(o), int(n)) for k, i, o, n in found}

    def aliases(self) -> list[tuple[int, int]]:
        """(output index, input index) pairs whose arena bytes overlap."""
        place = self.placement()
        outs = [(i, v) for (k, i), v in place.items() if k == "out"]
        ins = [(i, v) for (k, i), v in place.items() if k == "in"]
        return [
            (o, i) for o, (oo, on) in outs for i, (io, inn) in ins if oo < io + inn and io < oo + on
        ]


_NP = {"float32": np.float32, "int8": np.int8, "int16": np.int16, "int32": np.int32}


def run_probe(
    probe: Probe,
    arena: int,
    inputs: np.ndarray | None = None,
    steps: int = 1,
    reset_each: bool = False,
    timeout: float = 300,
) -> ProbeRun:
    """Run `steps` invokes with an `arena`-byte arena. `inputs`: raw x values [steps, ...] in the
    model's input dtype (None: zeros). Step models carry their state; sequence models call
    Reset() before every invoke when `reset_each`."""
    ctx = probe.ctx
    if arena > probe.arena_cap:
        raise ValueError(f"arena {arena} exceeds the probe's capacity {probe.arena_cap}")
    x = ctx["x"]
    with tempfile.TemporaryDirectory(prefix="edgelstm-probe-") as tmp:
        tmpd = Path(tmp)
        inp = tmpd / "in.bin"
        data = (
            np.zeros((steps, x["elements"]), _NP[x["dtype"]])
            if inputs is None
            else np.asarray(inputs, _NP[x["dtype"]]).reshape(steps, x["elements"])
        )
        inp.write_bytes(data.tobytes())
        outp = tmpd / "out.bin"
        args = [str(arena), "in.bin", "out.bin", str(steps), "1" if reset_each else "0"]
        if _config(probe.config).emulated:
            cmd = [*QEMU, "-kernel", str(probe.exe), "-append", " ".join(args)]
        else:
            cmd = [str(probe.exe), *args]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=tmpd)
        except subprocess.TimeoutExpired:
            return ProbeRun(False, "timeout", 0, [], [], [], "")
        log = proc.stdout + proc.stderr
        raw = outp.read_bytes() if outp.is_file() else b""
    status = "crashed"
    if "EL_ALLOC_FAIL" in log:
        status = "alloc_failed"
    elif "EL_INVOKE_FAIL" in log:
        status = "invoke_failed"
    elif "EL_DONE" in log and proc.returncode == 0:
        status = "ok"
    m = re.search(r"EL_ALLOC_OK used=(\d+)", log)
    used = int(m.group(1)) if m else 0
    outputs: list[np.ndarray] = []
    if status == "ok":
        per = [(t, _numel_bytes(t)) for t in ctx["outputs"]]
        stride = sum(b for _, b in per)
        buf = np.frombuffer(raw, np.uint8).reshape(steps, stride)
        off = 0
        for t, b in per:
            chunk = np.ascontiguousarray(buf[:, off : off + b])
            outputs.append(chunk.view(_NP[t["dtype"]]).reshape(steps, *t["shape"]))
            off += b
    ticks = [int(v) for v in re.findall(r"^EL_T (\d+)$", log, re.M)]
    instr: list[float] = []
    cal = re.search(r"^EL_CAL (\d+) (\d+) (\d+)$", log, re.M)
    if cal and ticks:
        n, t_loop, t_empty = map(int, cal.groups())
        per_tick = n / max(t_loop - t_empty, 1)
        instr = [max(0.0, (t - t_empty) * per_tick) for t in ticks]
    return ProbeRun(status == "ok", status, used, outputs, ticks, instr, log)


def _numel_bytes(t: dict[str, Any]) -> int:
    return int(t["bytes"])


def measure_arena_on(probe: Probe, start: int, align: int = 16) -> tuple[int, int]:
    """(smallest arena, in `align`-byte steps, with which AllocateTensors() and two Invoke()s
    succeed in this real build; probes run). `start` is a first guess (the Python figure)."""
    runs = 0

    def runs_with(n: int) -> bool:
        nonlocal runs
        runs += 1
        return run_probe(probe, n, steps=2, timeout=120).ok

    hi = -(-max(start, align) // align) * align
    step = 1024
    if runs_with(hi):
        lo = hi - step
        while lo > 0 and runs_with(lo):
            hi, step = lo, step * 2
            lo = hi - step
        lo = max(lo, 0)
    else:
        lo = hi
        hi = lo + step
        while not runs_with(hi):
            lo, step = hi, step * 2
            hi = min(lo + step, probe.arena_cap)
            if lo >= probe.arena_cap:
                raise RuntimeError(f"{probe.config}: no arena up to {probe.arena_cap} B works")
    lo_u, hi_u = lo // align, hi // align
    while hi_u - lo_u > 1:
        mid = (lo_u + hi_u) // 2
        if runs_with(mid * align):
            hi_u = mid
        else:
            lo_u = mid
    return hi_u * align, runs


def m4_instructions_per_invoke(
    tflite: Path,
    steps: int = 20,
    workdir: Path | None = None,
    tree: Path | None = None,
    release: bool = False,
) -> dict[str, Any]:
    """TFLite Micro + CMSIS-NN on a Cortex-M4 (qemu mps2-an386, -icount shift=0): qemu
    instructions (not cycles) per Invoke() of `tflite`, over `steps` invokes of zero input,
    state carried for step models; `release`: the -DNDEBUG build. For benchmarks: {'median',
    'min', 'max', 'per_invoke', 'arena_bytes', 'config'}."""
    build = CMSIS_NN_M4_RELEASE if release else CMSIS_NN_M4
    from edgelstm.export.tflm import export_for_build

    with tempfile.TemporaryDirectory(prefix="edgelstm-m4-") as tmp:
        root = Path(workdir) if workdir else Path(tmp)
        exp, ctx = export_for_build(Path(tflite).read_bytes(), root / "export")
        probe = build_probe(build, exp, ctx, root / "m4", tree=tree)
        arena = probe.arena_cap
        run = run_probe(probe, arena, steps=steps)
        if not run.ok:
            raise RuntimeError(f"the M4 run failed ({run.status}): {run.log[-500:]}")
    return {
        "config": _config(build).description,
        "unit": "qemu instructions (-icount shift=0), not cycles",
        "median": round(statistics.median(run.instructions)),
        "min": round(min(run.instructions)),
        "max": round(max(run.instructions)),
        "per_invoke": [round(v) for v in run.instructions],
        "arena_used_bytes": run.arena_used,
    }
