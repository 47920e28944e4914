"""Build a generated engine with a test driver, run it on the host (gcc, sanitizers) or on an
emulated Cortex-M4 (arm-none-eabi-gcc + qemu-system-arm mps2-an386), and compare every output and
state with LiteRT running the same .tflite on the same inputs."""

from __future__ import annotations

import re
import shutil
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError, MissingDependencyError, VerificationError
from edgelstm.export.cengine.emit import KERNEL_DIR, Interface
from edgelstm.export.cengine.lower import _c_float_list, _c_int_list

DRIVER_DIR = KERNEL_DIR / "verify"
C_WARN = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"]
M4_FLAGS = ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"]
FLOAT_TOL = 1e-4  # max |C - LiteRT| for float32, relative to max(1, |LiteRT|)
QEMU_TIMEOUT = 300.0
_NP = {"float32": np.float32, "int8": np.int8, "int32": np.int32}


@dataclass
class Inputs:
    """Raw step inputs: streams x steps x input size, in the model's input dtype."""

    data: np.ndarray


def make_inputs(ifc: Interface, streams: int, steps: int, seed: int, vocab: int = 0) -> Inputs:
    """Random inputs covering the input's whole range (int8: every code; tokens: every id)."""
    rng = np.random.default_rng(seed)
    shape = (streams, steps, ifc.x.numel)
    if ifc.x.dtype == "int8":
        data = rng.integers(-128, 128, shape).astype(np.int8)
    elif ifc.x.dtype == "int32":
        data = rng.integers(0, max(vocab, 1), shape).astype(np.int32)
    else:
        data = (rng.standard_normal(shape) * 1.5).astype(np.float32)
    return Inputs(data)


# ---- reference ---------------------------------------------------------------------------------


# The kernel sets the engine is measured against. The int8 engine reproduces TFLite Micro's
# reference kernels bit for bit (gemmlowp MultiplyByQuantizedMultiplier everywhere; CMSIS-NN
# rounds the same way). The others are reported as distances: LiteRT BUILTIN_REF's int8
# FULLY_CONNECTED rounds once ((acc * m + 2^(s-1)) >> s) where TFLite Micro rounds twice, the
# x86 default requantizes FC through ruy (ties up), XNNPACK has its own requantization.
KERNEL_SETS = ("tflm", "ref", "default", "xnnpack")
PRIMARY_KERNELS = "tflm"
KERNEL_LABELS = {
    "tflm": "TFLite Micro reference kernels",
    "ref": "LiteRT BUILTIN_REF (reference kernels)",
    "default": "LiteRT built-in kernels (x86-64, no delegate)",
    "xnnpack": "LiteRT + XNNPACK delegate (x86-64)",
}


def primary_kernels() -> str:
    """TFLite Micro's reference kernels when its wheel is installed (x86-64 only), else
    LiteRT BUILTIN_REF (same kernels except FULLY_CONNECTED's single rounding, see README)."""
    import importlib.util

    return "tflm" if importlib.util.find_spec("tflite_micro") is not None else "ref"


def kernel_distances(eng: Any, got: dict[str, Any], inputs: Inputs, skip: str) -> dict[str, Any]:
    """LSB distance of the engine's outputs and states from each other kernel set."""
    out: dict[str, Any] = {}
    for k in KERNEL_SETS:
        if k == skip or (k == "tflm" and primary_kernels() != "tflm"):
            continue
        y, st = reference(eng.step_path, eng.ifc, inputs, k)
        p = compare(eng.ifc, got, y, st)
        out[k] = {
            "kernels": KERNEL_LABELS[k],
            "max_lsb_diff": p["max_lsb_diff"],
            "values_not_bit_exact": p["values_not_bit_exact"],
        }
    return out


def _litert(model: bytes, kernels: str) -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError as exc:
        raise MissingDependencyError("ai-edge-litert", "verifying the C engine", "runtime") from exc
    resolver = {
        "ref": OpResolverType.BUILTIN_REF,
        "default": OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
        "xnnpack": OpResolverType.BUILTIN,
    }[kernels]
    interp = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
    interp.allocate_tensors()
    return interp


class _TflmRunner:
    """TFLite Micro's Python interpreter (reference kernels) behind LiteRT-style calls."""

    def __init__(self, model: bytes, positions: dict[int, int], out_positions: dict[int, int]):
        from edgelstm.export.tflm_arena import make_interpreter

        self.interp = make_interpreter(model, max(256 * 1024, 16 * len(model)))
        self.pos, self.out_pos = positions, out_positions

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        self.interp.set_input(np.ascontiguousarray(value), self.pos[index])

    def invoke(self) -> None:
        self.interp.invoke()

    def get_tensor(self, index: int) -> np.ndarray:
        return np.array(self.interp.get_output(self.out_pos[index]), copy=True)


def reference(
    tflite: Path, ifc: Interface, inputs: Inputs, kernels: str = PRIMARY_KERNELS
) -> tuple[np.ndarray, list[np.ndarray]]:
    """One kernel set (KERNEL_SETS) on the raw inputs: y [S,T,Y] and each state [S,T,n]."""
    model = Path(tflite).read_bytes()
    meta = _litert(model, "ref" if kernels == "tflm" else kernels)
    in_list, out_list = meta.get_input_details(), meta.get_output_details()
    ins = {d["name"]: d for d in in_list}
    outs = {d["name"]: d for d in out_list}
    by_name_in = _by_signature(meta, "inputs", ins)
    by_name_out = _by_signature(meta, "outputs", outs)
    interp: Any = meta
    if kernels == "tflm":
        interp = _TflmRunner(
            model,
            {d["index"]: i for i, d in enumerate(in_list)},
            {d["index"]: i for i, d in enumerate(out_list)},
        )
    S, T, _ = inputs.data.shape
    ys = np.zeros((S, T, ifc.y.numel), _NP[ifc.y.dtype])
    sts = [np.zeros((S, T, s.numel), _NP[s.dtype]) for s in ifc.states]
    for s in range(S):
        cur = [np.array(f.reset_raw, _NP[f.dtype]) for f in ifc.states]
        for t in range(T):
            d = by_name_in["x"]
            interp.set_tensor(d["index"], inputs.data[s, t].reshape(d["shape"]).astype(d["dtype"]))
            for f, v in zip(ifc.states, cur, strict=True):
                d = by_name_in[f.field]
                interp.set_tensor(d["index"], v.reshape(d["shape"]))
            interp.invoke()
            ys[s, t] = interp.get_tensor(by_name_out[_y_name(by_name_out)]["index"]).reshape(-1)
            cur = [
                interp.get_tensor(by_name_out[f.output]["index"]).reshape(-1).copy()
                for f in ifc.states
            ]
            for k, v in enumerate(cur):
                sts[k][s, t] = v
    return ys, sts


def _y_name(outs: dict[str, Any]) -> str:
    return "y" if "y" in outs else next(n for n in outs if not n.endswith("_out"))


def _by_signature(interp: Any, kind: str, details: dict[str, dict]) -> dict[str, dict]:
    """Map signature names (x, state0_h, y, ...) to tensor details."""
    sigs = interp.get_signature_list()
    if not sigs:
        return details
    key = next(iter(sigs))
    runner = interp.get_signature_runner(key)
    sd = runner.get_input_details() if kind == "inputs" else runner.get_output_details()
    by_index = {d["index"]: d for d in details.values()}
    return {name: by_index.get(d["index"], d) for name, d in sd.items()}


# ---- build + run ---------------------------------------------------------------------------------


def _need(tool: str, package: str) -> str:
    """Path of `tool`, or MissingDependencyError naming the apt package that provides it."""
    path = shutil.which(tool)
    if path is None:
        err = MissingDependencyError(package, "the C engine check")
        err.args = (f"the C engine check needs '{tool}': apt-get install {package}",)
        raise err
    return path


def _glue(ifc: Interface, inputs: Inputs, macs: int) -> dict[str, str]:
    n = ifc.name
    S, T, D = inputs.data.shape
    flat = inputs.data.reshape(-1)
    body = _c_float_list(flat) if ifc.x.dtype == "float32" else _c_int_list(flat)
    glue = f"""#ifndef EL_VERIFY_GLUE_H
#define EL_VERIFY_GLUE_H
#include "{n}_model.h"
#define EL_STATE_T {n}_state_t
#define EL_IN_T {n}_input_t
#define EL_OUT_T {n}_output_t
#define EL_INIT {n}_init
#define EL_RESET {n}_reset
#define EL_STEP {n}_step
#define EL_IN_SIZE {D}
#define EL_OUT_SIZE {ifc.y.numel}
#define EL_N_STREAMS {S}
#define EL_N_STEPS {T}
#define EL_MACS {macs}
extern const EL_IN_T el_inputs[{flat.size}];
#endif
"""
    data = (
        f'#include "el_verify_glue.h"\nconst EL_IN_T el_inputs[{flat.size}] = {{\n    {body}\n}};\n'
    )
    prof = "/* the per-op profile hook (verify builds only) */\nvoid el_prof_mark(int op);\n"
    return {"el_verify_glue.h": glue, "el_verify_data.c": data, "el_prof.h": prof}


def _prepare(src_dir: Path, build: Path, ifc: Interface, inputs: Inputs, macs: int) -> list[str]:
    for f in src_dir.iterdir():
        if f.suffix in (".c", ".h") and f.name != "main.c":
            shutil.copy(f, build / f.name)
    for f in DRIVER_DIR.iterdir():
        shutil.copy(f, build / f.name)
    for rel, text in _glue(ifc, inputs, macs).items():
        (build / rel).write_text(text)
    return [f"{ifc.name}_model.c", "edgelstm_kernels.c", "el_verify_data.c", "el_verify_main.c"]


def _run(cmd: list[str], cwd: Path, timeout: float, what: str) -> str:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise VerificationError(f"{what} timed out after {timeout:.0f} s") from exc
    if proc.returncode != 0:
        msg = (proc.stderr or proc.stdout).strip().splitlines()
        tail = " | ".join(msg[-6:]) if msg else f"exit code {proc.returncode}"
        raise VerificationError(f"{what} failed: {tail}")
    return proc.stdout


def _parse(text: str, ifc: Interface, inputs: Inputs) -> dict[str, Any]:
    S, T, _ = inputs.data.shape
    ys = np.zeros((S, T, ifc.y.numel), _NP[ifc.y.dtype])
    sts = [np.zeros((S, T, f.numel), _NP[f.dtype]) for f in ifc.states]
    rcs = np.zeros((S, T), np.int32)
    ticks: dict[int, int] = {}
    info: dict[str, Any] = {}
    offsets, off = [], 0
    for f in ifc.states:
        align = 4 if f.dtype in ("float32", "int32") else 1
        off = -(-off // align) * align
        offsets.append(off)
        off += f.nbytes
    seen = 0
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "o":
            k, rc = int(parts[1]), int(parts[2])
            s, t = divmod(k, T)
            rcs[s, t] = rc
            ybytes = bytes.fromhex(parts[3])
            sbytes = bytes.fromhex(parts[4]) if len(parts) > 4 else b""
            ys[s, t] = np.frombuffer(ybytes, _NP[ifc.y.dtype])
            for j, f in enumerate(ifc.states):
                sts[j][s, t] = np.frombuffer(
                    sbytes[offsets[j] : offsets[j] + f.nbytes], _NP[f.dtype]
                )
            seen += 1
        elif parts[0] == "t":
            ticks[int(parts[1])] = int(parts[2])
        elif parts[0] == "calib":
            info["calib"] = [int(v) for v in parts[1:]]
        elif parts[0] == "prof":
            info.setdefault("prof", {})[int(parts[1])] = int(parts[2])
        elif parts[0] == "profhook":
            info["profhook"] = int(parts[1]) / int(parts[2])
        elif parts[0] in ("stack", "statesize"):
            info[parts[0]] = int(parts[1])
        elif parts[0] == "saveload":
            info["saveload"] = parts[1]
    if seen != S * T or "done" not in text:
        raise VerificationError(f"the engine's driver printed {seen} of {S * T} steps")
    return {"y": ys, "states": sts, "rc": rcs, "ticks": ticks, **info}


def compare(
    ifc: Interface, got: dict[str, Any], ref_y: np.ndarray, ref_states: list[np.ndarray]
) -> dict[str, Any]:
    """Max differences between the C engine and LiteRT over y and every state."""
    pairs = [("y", got["y"], ref_y)] + [
        (f.field, g, r) for f, g, r in zip(ifc.states, got["states"], ref_states, strict=True)
    ]
    result: dict[str, Any] = {"steps": int(ref_y.shape[0] * ref_y.shape[1])}
    per = {}
    worst = 0.0
    mismatched = 0
    total = 0
    for name, g, r in pairs:
        if g.dtype == np.float32:
            d = np.abs(g.astype(np.float64) - r.astype(np.float64))
            rel = d / np.maximum(1.0, np.abs(r.astype(np.float64)))
            per[name] = float(d.max(initial=0.0))
            worst = max(worst, float(rel.max(initial=0.0)))
        else:
            d = np.abs(g.astype(np.int64) - r.astype(np.int64))
            per[name] = int(d.max(initial=0))
            worst = max(worst, float(per[name]))
            mismatched += int((d != 0).sum())
        total += d.size
    integer = ifc.y.dtype == "int8"
    if integer:
        result["max_lsb_diff"] = int(worst)
        result["values_not_bit_exact"] = mismatched
        result["values_compared"] = total
        result["ok"] = worst <= 1
    else:
        result["max_abs_diff"] = max(per.values())
        result["max_rel_diff"] = worst
        result["values_compared"] = total
        result["ok"] = worst <= FLOAT_TOL
    result["per_tensor"] = per
    result["saveload"] = got.get("saveload") == "ok"
    result["ok"] = bool(result["ok"] and result["saveload"] and not got["rc"].any())
    return result


def run_host(
    src_dir: Path,
    ifc: Interface,
    inputs: Inputs,
    macs: int,
    *,
    sanitize: bool = True,
    opt: str = "-O1",
    keep: Path | None = None,
) -> dict[str, Any]:
    """Compile src_dir's engine + the driver with host gcc (sanitizers on) and run it."""
    cc = _need("gcc", "gcc")
    with tempfile.TemporaryDirectory(prefix="edgelstm-c-") as tmp:
        build = keep or Path(tmp)
        build.mkdir(parents=True, exist_ok=True)
        srcs = _prepare(src_dir, build, ifc, inputs, macs)
        flags = [*C_WARN, opt, "-g"]
        if sanitize:
            flags += ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
        _run([cc, *flags, "-o", "engine_host", *srcs, "-lm"], build, 300, "host gcc build")
        out = _run([str(build / "engine_host")], build, 300, "host run")
    return _parse(out, ifc, inputs)


def _map_sizes(map_text: str, objects: tuple[str, ...]) -> dict[str, int]:
    """Sum text/rodata/data/bss of the given object files from a GNU ld map file."""
    body = map_text.split("Linker script and memory map", 1)[-1]
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0, "libm": 0}
    # an input section is listed on one line, or (long names) with its numbers on the next
    pat = re.compile(
        r"^ (\.[\w.$]+)(?:[ \t]+|\n[ \t]+)0x([0-9a-f]+)[ \t]+0x([0-9a-f]+)[ \t]+(\S+)$", re.M
    )
    for m in pat.finditer(body):
        sec, size, obj = m.group(1), int(m.group(3), 16), m.group(4)
        base = Path(obj).name
        kind = next((k for k in ("text", "rodata", "data", "bss") if sec.startswith("." + k)), None)
        if kind is None:
            continue
        if base in objects:
            sizes[kind] += size
        elif "libm.a(" in obj and kind in ("text", "rodata"):
            sizes["libm"] += size
    return sizes


def run_qemu(
    src_dir: Path,
    ifc: Interface,
    inputs: Inputs,
    macs: int,
    keep: Path | None = None,
    profile_ops: int = 0,
) -> dict[str, Any]:
    """Cross-compile for Cortex-M4, run under qemu (icount shift=0), parse outputs and counts.
    With profile_ops > 0 the model's EL_PROFILE hook reads SysTick after each op (a separate
    build: the hook's calls would otherwise inflate the per-step figures)."""
    gcc = _need("arm-none-eabi-gcc", "gcc-arm-none-eabi")
    size_tool = _need("arm-none-eabi-size", "binutils-arm-none-eabi")
    qemu = _need("qemu-system-arm", "qemu-system-arm")
    with tempfile.TemporaryDirectory(prefix="edgelstm-m4-") as tmp:
        build = keep or Path(tmp)
        build.mkdir(parents=True, exist_ok=True)
        srcs = _prepare(src_dir, build, ifc, inputs, macs)
        flags = [*C_WARN, "-O2", *M4_FLAGS, "-ffunction-sections", "-fdata-sections", "-DEL_QEMU"]
        objs = []
        for src in [*srcs, "el_startup.c"]:
            obj = src[:-2] + ".o"
            # the vector table casts function pointers to data pointers: not ISO C, not engine code
            fl = [f for f in flags if f != "-pedantic"] if src == "el_startup.c" else flags
            if profile_ops and src == f"{ifc.name}_model.c":
                fl = [*fl, "-DEL_PROFILE(op)=el_prof_mark(op)", "-include", "el_prof.h"]
            elif profile_ops and src == "el_verify_main.c":
                fl = [*fl, f"-DEL_PROF_OPS={profile_ops}"]
            _run([gcc, *fl, "-c", src, "-o", obj], build, 300, f"arm-none-eabi-gcc {src}")
            objs.append(obj)
        _run(
            [
                gcc,
                *M4_FLAGS,
                "--specs=rdimon.specs",
                "-nostartfiles",
                "-T",
                "el_mps2.ld",
                "-Wl,--gc-sections",
                "-Wl,-Map=engine.map",
                "-o",
                "engine.elf",
                *objs,
                "-lm",
                "-lrdimon",
            ],
            build,
            300,
            "arm-none-eabi-gcc link",
        )
        size_out = _run([size_tool, "-A", "engine.elf"], build, 60, "arm-none-eabi-size")
        out = _run(
            [
                qemu,
                "-M",
                "mps2-an386",
                "-cpu",
                "cortex-m4",
                "-nographic",
                "-semihosting",
                "-icount",
                "shift=0",
                "-kernel",
                "engine.elf",
            ],
            build,
            QEMU_TIMEOUT,
            "qemu-system-arm",
        )
        map_text = (build / "engine.map").read_text(errors="replace")
    got = _parse(out, ifc, inputs)
    objects = (f"{ifc.name}_model.o", "edgelstm_kernels.o")
    eng = _map_sizes(map_text, objects)
    image = {}
    for line in size_out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            image[parts[0]] = int(parts[1])
    calib = got.get("calib")
    if not calib or calib[1] <= 0:
        raise VerificationError("qemu run printed no SysTick calibration")
    instr_per_tick = calib[0] / calib[1]
    overhead = calib[2]
    ticks = [got["ticks"][k] for k in sorted(got["ticks"])]
    instr = [max(0.0, (t - overhead) * instr_per_tick) for t in ticks]
    med = statistics.median(instr) if instr else 0.0
    got["cycles"] = {
        "instructions_per_tick": round(instr_per_tick, 3),
        "instructions_per_step_median": round(med),
        "instructions_per_step_max": round(max(instr)) if instr else 0,
        "instructions_per_mac": round(med / macs, 3) if macs else None,
        "ticks_per_step": sorted(set(ticks))[:8],
        "resolution_instructions": round(instr_per_tick, 1),
        "method": "qemu -icount shift=0, SysTick read around each step, calibrated with a "
        "loop of known instruction count",
    }
    if profile_ops:
        steps = max(1, len(ticks))
        hook = got.get("profhook", 0.0)
        got["profile"] = {
            k: max(0.0, (v / steps - hook) * instr_per_tick) for k, v in got.get("prof", {}).items()
        }
    stack = int(got.get("stack", 0))
    state_bytes = ifc.state_bytes
    got["size"] = {
        "flash_engine_bytes": eng["text"] + eng["rodata"],
        "flash_engine_text": eng["text"],
        "flash_engine_rodata": eng["rodata"],
        "flash_libm_bytes": eng["libm"],
        "ram_engine_data_bss": eng["data"] + eng["bss"],
        "ram_state_bytes": state_bytes,
        "ram_stack_high_water": stack,
        "ram_total_bytes": eng["data"] + eng["bss"] + state_bytes + stack,
        "image_text": image.get(".text", 0),
        "image_data": image.get(".data", 0),
        "image_bss": image.get(".bss", 0),
    }
    return got


def check_src(src_dir: Path) -> None:
    if not (src_dir / "edgelstm_kernels.c").is_file():
        raise BadInputError(f"{src_dir}: not a generated C engine directory")
