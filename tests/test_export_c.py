"""`edgelstm export --target c`: the standalone C engine, checked against LiteRT on the host
(gcc with ASan/UBSan) and on an emulated Cortex-M4 (arm-none-eabi-gcc + qemu)."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from edgelstm.errors import UnsupportedLayerError

STEP_KINDS = ("lstm", "gru", "rnn", "dense_only")


def _have_core(core: str) -> bool:
    tools = ("riscv64-unknown-elf-gcc", "qemu-system-riscv32") if core == "rv32" else (
        "arm-none-eabi-gcc", "qemu-system-arm")  # fmt: skip
    return all(shutil.which(t) for t in tools)


CORE_PARAMS = [
    pytest.param(
        c,
        marks=pytest.mark.skipif(
            not _have_core(c), reason=f"the {c} toolchain / qemu not installed"
        ),
    )
    for c in ("m4", "m7", "m33", "m55", "rv32")
]


def _convert(
    model: Path, outdir: Path, calibration: Path, *, sequence: bool = False, int16_cell: bool = True
) -> dict:
    from edgelstm.convert import ConvertConfig, convert_model
    from edgelstm.types import Quantization, Variant

    cfg = ConvertConfig(
        int16_cell=int16_cell,
        variants=None if sequence else [Variant.STEP],
        quantizations=[Quantization.FLOAT, Quantization.INT8],
        calibration=str(calibration),
        calibration_samples=32,
        verify_samples=4,
        verify_fail=False,  # the converter's own bound is not what this file tests
    )
    convert_model(model, outdir, cfg)
    return json.loads((outdir / "manifest.json").read_text())


def _step_file(manifest: dict, quant: str) -> str:
    return next(
        a["file"]
        for a in manifest["artifacts"]
        if a["variant"] == "step" and a["quantization"] == quant
    )


REFERENCE = {
    "tflm": "TFLite Micro reference kernels",
    "litert-ref": "LiteRT BUILTIN_REF (reference kernels)",
}


def _check_parity(result: dict, target: str, quant: str, rounding: str = "tflm") -> None:
    p = result["verify"][target]["parity"]
    assert p["ok"], p
    assert p["saveload"], p
    if quant == "int8":
        # the engine mirrors TFLite Micro's reference kernels' integer arithmetic (gemmlowp
        # rounding everywhere), so expect bit-exactness with them; the other kernel sets are
        # measured and reported, not asserted (LiteRT's round FULLY_CONNECTED differently)
        assert p["reference"] == REFERENCE[rounding], p
        assert p["max_lsb_diff"] == 0, p
        assert p["values_not_bit_exact"] == 0, p
        others = {"tflm", "ref", "default", "xnnpack"} - {"ref" if rounding != "tflm" else "tflm"}
        assert others <= set(p["kernel_sets"]), p
        assert all(k["max_lsb_diff"] >= 0 for k in p["kernel_sets"].values()), p
    else:
        assert p["max_rel_diff"] <= 1e-4, p


@pytest.fixture(scope="module")
def converted(
    keras_model_file: Callable[[str], Path],
    calibration_file: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str], tuple[Path, dict]]:
    cache: dict[str, tuple[Path, dict]] = {}
    root = tmp_path_factory.mktemp("cengine")

    def get(kind: str) -> tuple[Path, dict]:
        if kind not in cache:
            out = root / kind
            # int8 LSTM cells (--int8-lstm-cell int8): these models exercise the int8 kernels
            # (el_lstm_cell_s8, the DSP FC paths); the zoo models run the int16 cell's
            cache[kind] = (
                out, _convert(keras_model_file(kind), out, calibration_file, int16_cell=False)
            )  # fmt: skip
        return cache[kind]

    return get


@pytest.mark.parametrize("quant", ["float", "int8"])
@pytest.mark.parametrize("kind", STEP_KINDS)
def test_host_parity(converted, tmp_path: Path, kind: str, quant: str) -> None:
    from edgelstm.export.cengine import export_c

    d, manifest = converted(kind)
    result = export_c(
        d / _step_file(manifest, quant),
        tmp_path / "eng",
        name=f"{kind}_{quant}",
        verify=["host"],
        manifest=manifest,
    )
    _check_parity(result, "host", quant)
    assert result["macs_per_step"] > 0
    assert (tmp_path / "eng" / f"{kind}_{quant}_model.c").is_file()


def _zoo_recipes() -> list[str]:
    from edgelstm.zoo import list_recipes

    return [r.name for r in list_recipes() if (r.dir / "model.keras").is_file()]


@pytest.fixture(scope="module")
def zoo_converted(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, dict]]:
    from edgelstm.zoo import load_recipe

    cache: dict[str, tuple[Path, dict]] = {}
    root = tmp_path_factory.mktemp("zoo")

    def get(name: str) -> tuple[Path, dict]:
        if name not in cache:
            r = load_recipe(name)
            out = root / name
            cal = r.dir / "calibration.npz"
            cache[name] = (out, _convert(r.dir / "model.keras", out, cal, sequence=name == "echo"))
        return cache[name]

    return get


@pytest.mark.parametrize("recipe", _zoo_recipes())
def test_zoo_recipe_host_parity(zoo_converted, tmp_path: Path, recipe: str) -> None:
    from edgelstm.export.cengine import export_c

    d, manifest = zoo_converted(recipe)
    for quant, rounding in (("float", "tflm"), ("int8", "tflm"), ("int8", "litert-ref")):
        result = export_c(
            d / _step_file(manifest, quant),
            tmp_path / f"{quant}_{rounding}",
            name="zoo",
            verify=["host"],
            manifest=manifest,
            rounding=rounding,
        )
        _check_parity(result, "host", quant, rounding)
        src = (tmp_path / f"{quant}_{rounding}" / "zoo_model.c").read_text()
        lstm = recipe != "temporal-order-gru"
        if quant == "int8":  # an LSTM's cell in int16 (tflite.cell16): its kernels, no int8 cell
            assert ("el_fc_s16x8(" in src and "el_act_s16(" in src) is lstm, recipe
            assert "el_lstm_cell_s8(" not in src or not lstm, recipe
            if lstm:
                states = {s["field"]: s["dtype"] for s in result["states"]}
                assert states == {"state0_h": "int8", "state0_c": "int16"}, states


def _have_arm() -> bool:
    return all(
        shutil.which(t) for t in ("arm-none-eabi-gcc", "arm-none-eabi-size", "qemu-system-arm")
    )


@pytest.mark.skipif(not _have_arm(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
def test_qemu_cortex_m4_int8_sequence(zoo_converted, tmp_path: Path) -> None:
    """The echo model's int8 *sequence* model: engine built from its step sibling, run on an
    emulated Cortex-M4 (DSP path) and on the host (portable path); both equal LiteRT."""
    from edgelstm.export.cengine import export_c

    d, manifest = zoo_converted("echo")
    seq = next(
        a["file"]
        for a in manifest["artifacts"]
        if a["variant"] == "sequence" and a["quantization"] == "int8"
    )
    result = export_c(
        d / seq, tmp_path / "m4", name="echo", verify=["host", "qemu"], manifest=manifest
    )
    assert result["run_sequence"]
    _check_parity(result, "qemu", "int8")
    _check_parity(result, "host", "int8")
    q = result["verify"]["qemu"]
    cyc, size = q["cycles"], q["size"]
    # icount: one instruction per ns, SysTick at 25 MHz -> 40 instructions a tick
    assert cyc["instructions_per_tick"] == pytest.approx(40.0, rel=0.01)
    assert 0 < cyc["instructions_per_mac"] < 100
    assert cyc["instructions_per_step_median"] > result["macs_per_step"]
    assert size["flash_engine_text"] > 0
    assert size["flash_engine_rodata"] >= result["size"]["const_bytes"] * 0.9
    assert 0 < size["ram_stack_high_water"] < 4096
    assert size["ram_engine_data_bss"] >= result["size"]["arena_bytes"]
    header = (tmp_path / "m4" / "echo_model.h").read_text()
    assert "echo_run_sequence" in header


@pytest.mark.skipif(not _have_arm(), reason="arm-none-eabi-gcc / qemu-system-arm not installed")
@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_qemu_int8_step_kinds(converted, tmp_path: Path, kind: str) -> None:
    """The DSP kernels (paired-row SMLAD loop, SMMULR requantization, fused gate tables) on the
    emulated Cortex-M4 equal LiteRT bit for bit on each recurrent kind."""
    from edgelstm.export.cengine import export_c

    d, manifest = converted(kind)
    result = export_c(
        d / _step_file(manifest, "int8"), tmp_path, name="k", verify=["qemu"], manifest=manifest
    )
    _check_parity(result, "qemu", "int8")
    cyc = result["verify"]["qemu"]["cycles"]
    b = cyc["breakdown"]  # the per-op profile build: groups add up to the measured step
    total = cyc["instructions_per_step_median"]
    assert sum(b["groups"].values()) == pytest.approx(total, rel=0.05, abs=120), b
    assert b["groups"]["fc"] > 0 and b["groups"]["gates"] + b["groups"]["cell_update"] > 0, b
    assert "FULLY_CONNECTED" in {r["kind"] for r in b["per_op"]}, b
    src = (tmp_path / "k_model.c").read_text()
    assert "el_fc_s8_fast(" in src  # the fast FC path is the one exercised
    if kind == "lstm":
        # the whole cell (gate ADD, tables, MULs, cell ADD, tanh) in one loop over units
        assert "el_lstm_cell_s8(" in src and "el_mul_s8_fast(" not in src
        sr = export_c(
            d / _step_file(manifest, "int8"),
            tmp_path / "sr",
            name="k",
            verify=["qemu"],
            manifest=manifest,
            rounding="litert-ref",
        )  # the single-rounding DSP loop, against LiteRT BUILTIN_REF
        _check_parity(sr, "qemu", "int8", "litert-ref")
        assert "el_fc_s8_fast_sr(" in (tmp_path / "sr" / "k_model.c").read_text()


@pytest.mark.parametrize("core", [p for p in CORE_PARAMS if p.values[0] != "m4"])
def test_qemu_cores_lstm(converted, tmp_path: Path, core: str) -> None:
    """The int8 LSTM step on every other emulated core (M7, M33, M55 with the Helium FC, RISC-V
    portable C): bit-exact with the reference kernels, counted and sized."""
    from edgelstm.export.cengine import export_c

    d, manifest = converted("lstm")
    result = export_c(
        d / _step_file(manifest, "int8"),
        tmp_path,
        name="k",
        verify=["qemu"],
        manifest=manifest,
        core=core,
    )
    _check_parity(result, "qemu", "int8")
    q = result["verify"]["qemu"]
    assert q["core"]["name"] == core and q["cycles"]["instructions_per_step_median"] > 0
    assert q["size"]["flash_engine_bytes"] > result["size"]["weight_bytes"]
    src = (tmp_path / "k_model.c").read_text()
    assert ("el_fc_s8_rows(" in src) == (core == "m55")


def test_sequence_model_without_step_sibling(zoo_converted, tmp_path: Path) -> None:
    from edgelstm.errors import BadInputError
    from edgelstm.export.cengine import export_c

    d, manifest = zoo_converted("echo")
    seq = next(a["file"] for a in manifest["artifacts"] if a["variant"] == "sequence")
    lone = tmp_path / "lone.tflite"
    shutil.copy(d / seq, lone)
    with pytest.raises(BadInputError, match="sequence model"):
        export_c(lone, tmp_path / "out", name="m", verify=[], manifest=None)
    trimmed = {**manifest, "artifacts": [a for a in manifest["artifacts"] if a["file"] == seq]}
    with pytest.raises(BadInputError, match=r"without a .* step model"):
        export_c(d / seq, tmp_path / "out", name="m", verify=[], manifest=trimmed)


def test_cli_exports_a_sequence_model_from_its_step_sibling(
    zoo_converted, run_cli, tmp_path: Path
) -> None:
    """`edgelstm export SEQUENCE.tflite --target c` finds the step model beside it (the export
    registry hands targets the files in the model's directory, read only when asked for)."""
    from edgelstm.fsutil import DirectoryFiles

    d, manifest = zoo_converted("echo")
    seq = next(
        a["file"]
        for a in manifest["artifacts"]
        if a["variant"] == "sequence" and a["quantization"] == "int8"
    )
    code, _out, err = run_cli("export", str(d / seq), "--target", "c", "-o", str(tmp_path / "e"))
    assert code == 0, err
    header = next((tmp_path / "e").glob("*_model.h")).read_text()
    assert "_run_sequence(" in header
    files = DirectoryFiles(d)
    assert seq in files and files[seq] == (d / seq).read_bytes()
    for name in ("../" + seq, "", "..", "no_such.tflite"):
        assert name not in files
        with pytest.raises(KeyError):
            files[name]


def test_fuzz_under_sanitizers(converted, tmp_path: Path) -> None:
    """Many random streams (every int8 code, large float inputs) through ASan/UBSan builds."""
    from edgelstm.codegen.engine import generate
    from edgelstm.export.cengine import verify as v

    for kind, quant, seed in (("gru", "int8", 11), ("lstm", "float", 12), ("rnn", "int8", 13)):
        d, manifest = converted(kind)
        eng = generate(d / _step_file(manifest, quant), name="fz", manifest=manifest)
        src = tmp_path / f"{kind}_{quant}"
        src.mkdir()
        for rel, text in eng.files.items():
            (src / rel).write_text(text)
        inputs = v.make_inputs(eng.ifc, 12, 20, seed)
        if quant == "float":
            inputs.data *= 20.0  # saturate the gates
        got = v.run_host(src, eng.ifc, inputs, eng.prog.macs, sanitize=True)
        ref_y, ref_states = v.reference(eng.step_data, eng.ifc, inputs)
        parity = v.compare(eng.ifc, got, ref_y, ref_states)
        assert parity["ok"], (kind, quant, parity)


def test_embedding_token_range_checked(tmp_path: Path, keras_model_file, tmp_path_factory) -> None:
    """Token ids outside the table make step() return the index error instead of reading past it
    (under ASan), and valid ids match LiteRT."""
    from edgelstm.codegen.engine import generate
    from edgelstm.export.cengine import verify as v

    cal = tmp_path / "tok.npz"
    np.savez(cal, x=np.random.default_rng(0).integers(0, 20, (16, 12)).astype(np.int32))
    d = tmp_path / "emb"
    manifest = _convert(keras_model_file("emb"), d, cal)
    eng = generate(d / _step_file(manifest, "int8"), name="emb", manifest=manifest)
    assert eng.vocab == 20
    src = tmp_path / "src"
    src.mkdir()
    for rel, text in eng.files.items():
        (src / rel).write_text(text)
    inputs = v.make_inputs(eng.ifc, 2, 6, 3, eng.vocab)
    good = v.run_host(src, eng.ifc, inputs, eng.prog.macs)
    ref_y, ref_states = v.reference(eng.step_data, eng.ifc, inputs)
    assert v.compare(eng.ifc, good, ref_y, ref_states)["ok"]
    inputs.data[0, 2, 0] = 20
    inputs.data[1, 4, 0] = -1
    bad = v.run_host(src, eng.ifc, inputs, eng.prog.macs)
    assert bad["rc"][0, 2] == 1 and bad["rc"][1, 4] == 1
    assert bad["rc"].sum() == 2


def test_unsupported_op_names_layer(tmp_path: Path, calibration_file: Path) -> None:
    from edgelstm._tf import import_tf

    import_tf()
    import keras

    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((12, 4)),
            keras.layers.LSTM(6, return_sequences=True),
            keras.layers.Dense(3, activation="gelu", name="gelu_head"),
        ]
    )
    path = tmp_path / "gelu.keras"
    model.save(path)
    from edgelstm.convert import ConvertConfig, convert_model
    from edgelstm.types import Quantization, Variant

    convert_model(
        path,
        tmp_path / "c",
        ConvertConfig(
            variants=[Variant.STEP], quantizations=[Quantization.FLOAT], verify_fail=False
        ),
    )
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    from edgelstm.export.cengine import export_c

    with pytest.raises(UnsupportedLayerError, match=r"GELU.*gelu_head"):
        export_c(
            tmp_path / "c" / _step_file(manifest, "float"),
            tmp_path / "out",
            name="m",
            verify=[],
            manifest=manifest,
        )
    assert not (tmp_path / "out").exists()  # nothing written on error


def test_cli_json_and_determinism(converted, run_cli, tmp_path: Path) -> None:
    d, manifest = converted("gru")
    model = d / _step_file(manifest, "int8")
    code, out, err = run_cli(
        "export",
        str(model),
        "--target",
        "c",
        "-o",
        str(tmp_path / "a"),
        "--name",
        "gru8",
        "--verify",
        "host",
        "--json",
    )
    assert code == 0, err
    r = json.loads(out)
    assert r["c_name"] == "gru8" and r["quantization"] == "int8"
    assert r["verify"]["host"]["parity"]["ok"]
    assert r["size"]["state_bytes"] == 8
    assert set(r["ops"]) >= {"FULLY_CONNECTED", "LOGISTIC", "TANH", "SUB"}
    code, out, err = run_cli(
        "export", str(model), "--target", "c", "-o", str(tmp_path / "sr"), "--name", "gru8",
        "--rounding", "litert-ref", "--verify", "host", "--json",
    )  # fmt: skip
    assert code == 0, err
    sr = json.loads(out)
    assert sr["rounding"] == "litert-ref"
    _check_parity(sr, "host", "int8", "litert-ref")
    code, out, err = run_cli(
        "export", str(model), "--target", "c", "-o", str(tmp_path / "bad"), "--core", "m99"
    )
    assert code == 2 and not (tmp_path / "bad").exists(), err
    code, out, err = run_cli(
        "export", str(model), "--target", "c", "-o", str(tmp_path / "b"), "--name", "gru8"
    )
    assert code == 0, err
    assert "MACs per step" in out
    for f in sorted((tmp_path / "a").iterdir()):  # same inputs -> byte-identical sources
        assert f.read_bytes() == (tmp_path / "b" / f.name).read_bytes(), f.name
    # the shipped example builds warning-free and runs
    subprocess.run(["make", "-s", "-C", str(tmp_path / "b")], check=True, capture_output=True)
    run = subprocess.run([str(tmp_path / "b" / "gru8_example")], capture_output=True, text=True)
    assert run.returncode == 0 and len(run.stdout.splitlines()) == 4
    code, out, err = run_cli(
        "export", str(tmp_path / "nope.tflite"), "--target", "c", "-o", str(tmp_path / "c")
    )
    assert code == 2 and "error:" in err


# ---- kernel fuzz: the fast int8 kernels against an independent Python model of TFLite's ---------
# integer arithmetic (gemmlowp MultiplyByQuantizedMultiplier, as TFLite Micro's kernels), on
# random shapes, parameters and every int8 code; the portable path on the host (ASan/UBSan) and
# the DSP assembly on qemu. The LiteRT parity tests above cover real models; this covers the
# parameter corners a few small models cannot reach.


def _srdhm(a: int, b: int) -> int:
    ab = a * b
    v = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    return v // (1 << 31) if v >= 0 else -((-v) // (1 << 31))  # C division truncates


def _rdbpot(x: int, e: int) -> int:
    mask = (1 << e) - 1
    return (x >> e) + (1 if (x & mask) > (mask >> 1) + (1 if x < 0 else 0) else 0)


def _mbqm(x: int, m: int, shift: int) -> int:
    return _rdbpot(_srdhm(x << max(shift, 0), m), max(-shift, 0))


def _c_arr(ctype: str, name: str, vals) -> str:
    body = ", ".join(str(int(v)) if int(v) != -(2**31) else "(-2147483647 - 1)" for v in vals)
    return f"static const {ctype} {name}[{max(len(vals), 1)}] = {{{body or '0'}}};\n"


def _fuzz_cases(seed: int) -> tuple[str, list[tuple[str, np.ndarray]]]:
    """C source of a driver that prints each kernel call's output, and the expected outputs."""
    from edgelstm.codegen.engine import quant
    from edgelstm.codegen.engine.lower import _add_fast, _paired_layout, fc_rows_stream, fc_stream

    rng = np.random.default_rng(seed)
    data, calls, expect = [], [], []

    def emit(label: str, n: int, call: str, want: np.ndarray) -> None:
        calls.append(f'    {call}\n    el_out("{label}", y, {n});\n')
        expect.append((label, want.astype(np.int8)))

    # FULLY_CONNECTED: stream kernel (both flags) and the generic kernel (paired DSP loop +
    # 64-bit requantization), odd shapes: tail blocks, cols_pad / 8 odd and even (Helium: the
    # 64-column, 8-column and any-width loops, each over several blocks and a partial one)
    for ci, (rows, cols) in enumerate(
        [(4, 8), (7, 3), (20, 24), (64, 40), (9, 17), (1, 64), (12, 130), (9, 64), (12, 8)]
    ):
        rp, cp = -(-rows // 4) * 4, -(-cols // 8) * 8
        w = rng.integers(-128, 128, (rows, cols))
        bias = rng.integers(-(2**20), 2**20, rows)
        mult = rng.integers(2**30, 2**31 - 1, rows)
        shift = rng.integers(-14, 0, rows)
        zp = int(rng.integers(-128, 128))
        wpad = np.zeros((rp, cp), np.int8)
        wpad[:rows, :cols] = w
        bias, mult, shift = (
            np.concatenate([a, np.zeros(rp - rows, np.int64)]) for a in (bias, mult, shift)
        )
        stream = fc_stream(wpad, bias, mult, -shift - 1)
        data.append(_c_arr("int8_t", f"fc{ci}_s", stream))
        # the Helium row-tile stream (el_fc_s8_rows), same padding: a last 8-wide tile when odd
        data.append(_c_arr("int8_t", f"fc{ci}_r", fc_rows_stream(wpad, bias, mult, -shift - 1)))
        data.append(_c_arr("int8_t", f"fc{ci}_w", _paired_layout(wpad)))
        data.append(_c_arr("int32_t", f"fc{ci}_b", bias))
        data.append(_c_arr("int32_t", f"fc{ci}_m", mult))
        data.append(_c_arr("int8_t", f"fc{ci}_e", shift))
        # el_fc_s8_small: row-major rows, columns padded to 4, e - 1
        data.append(_c_arr("int8_t", f"fc{ci}_sw", wpad[:rows, : -(-cols // 4) * 4].reshape(-1)))
        data.append(_c_arr("int8_t", f"fc{ci}_e1", -shift - 1))
        for xi, x in enumerate(
            [np.full(cols, -128), np.full(cols, 127), *rng.integers(-128, 128, (3, cols))]
        ):
            data.append(_c_arr("int8_t", f"fc{ci}_x{xi}", x))
            acc = bias[:rows] + w.astype(np.int64) @ x.astype(np.int64)
            want = np.clip(
                [
                    _mbqm(int(a), int(m), int(s)) + zp
                    for a, m, s in zip(acc, mult[:rows], shift[:rows], strict=True)
                ],
                -128,
                127,
            )
            emit(
                f"fc{ci}.{xi}",
                rows,
                f"el_fc_s8_fast(fc{ci}_x{xi}, {cols}, {cp}, fc{ci}_s, {rows}, {zp}, xs, y);",
                want,
            )
            for flags in ("0", "EL_FC_PAIRED_DSP"):
                emit(
                    f"fcg{ci}.{xi}.{flags[0]}",
                    rows,
                    f"el_fc_s8(fc{ci}_x{xi}, {cols}, {cp}, fc{ci}_w, fc{ci}_b, {rows}, fc{ci}_m, "
                    f"fc{ci}_e, {zp}, -128, 127, {flags}, xs, y);",
                    want,
                )
            # LiteRT BUILTIN_REF's single rounding (--rounding litert-ref)
            single = np.clip(
                [
                    ((int(a) * int(m) + (1 << (30 - int(s)))) >> (31 - int(s))) + zp
                    for a, m, s in zip(acc, mult[:rows], shift[:rows], strict=True)
                ],
                -128,
                127,
            )
            for sr, wanted in ((0, want), (1, single)):
                emit(
                    f"fcr{ci}.{xi}.{sr}",
                    rows,
                    f"el_fc_s8_rows(fc{ci}_x{xi}, {cols}, {cp}, fc{ci}_r, {rows}, {zp}, xs, y, "
                    f"{sr});",
                    wanted,
                )
            for sr, wanted in ((0, want), (1, single)):
                emit(
                    f"fcsm{ci}.{xi}.{sr}",
                    rows,
                    f"el_fc_s8_small(fc{ci}_x{xi}, {cols}, fc{ci}_sw, fc{ci}_b, fc{ci}_m, "
                    f"fc{ci}_e1, {rows}, {zp}, y, {sr});",
                    wanted,
                )
            emit(
                f"fcs{ci}.{xi}",
                rows,
                f"el_fc_s8_fast_sr(fc{ci}_x{xi}, {cols}, {cp}, fc{ci}_s, {rows}, {zp}, xs, y);",
                single,
            )
            emit(
                f"fcgs{ci}.{xi}",
                rows,
                f"el_fc_s8(fc{ci}_x{xi}, {cols}, {cp}, fc{ci}_w, fc{ci}_b, {rows}, fc{ci}_m, "
                f"fc{ci}_e, {zp}, -128, 127, EL_FC_PAIRED_DSP | EL_FC_SINGLE_ROUND, xs, y);",
                single,
            )

    # ADD / SUB / MUL over every pair of codes in a random order
    x1 = rng.permutation(256) - 128
    x2 = rng.permutation(256) - 128
    data += [_c_arr("int8_t", "ex1", x1), _c_arr("int8_t", "ex2", x2)]
    # MAXIMUM / MINIMUM: raw int8 compare, elementwise and against a scalar (step 0)
    for is_max in (1, 0):
        pick = np.maximum if is_max else np.minimum
        emit(f"mm{is_max}", 256, f"el_maxmin_s8({is_max}, ex1, 1, ex2, 1, y, 256);", pick(x1, x2))
        emit(
            f"mms{is_max}", 256, f"el_maxmin_s8({is_max}, ex1, 1, ex2 + 7, 0, y, 256);",
            pick(x1, x2[7]),
        )  # fmt: skip
    luts = rng.integers(-128, 128, (4, 256))
    n_add = n_mul = 0
    while n_add < 24 or n_mul < 12:
        s1, s2, so = (float(v) for v in 10 ** rng.uniform(-3, 0, 3))
        if n_add % 4 == 0:
            s2 = s1  # both inputs get exactly 1/2
        z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
        sign = 1 if n_add % 3 else -1
        prm = quant.addsub_params(s1, z1, s2, z2, so, zo)
        fast = _add_fast(prm, sign, -128, 127)
        if fast is not None and n_add < 24:
            raw = [
                _mbqm((prm.in1_off + int(a)) << 20, prm.in1_mult, prm.in1_shift)
                + sign * _mbqm((prm.in2_off + int(b)) << 20, prm.in2_mult, prm.in2_shift)
                for a, b in zip(x1, x2, strict=True)
            ]
            want = np.clip([_mbqm(r, prm.out_mult, prm.out_shift) + zo for r in raw], -128, 127)
            name = f"add{n_add}"
            data.append(f"static const el_add_fast_t {name} = {{{', '.join(map(str, fast))}}};\n")
            emit(name, 256, f"el_add_s8_fast(&{name}, ex1, 1, ex2, 1, y, 256);", want)
            if sign > 0:
                centred = [np.roll(luts[j], 128) for j in range(4)]
                data += [_c_arr("int8_t", f"{name}_c{j}", centred[j]) for j in range(4)]
                data.append(
                    f"static const int8_t *const {name}_l[4] = "
                    f"{{{', '.join(f'{name}_c{j}' for j in range(4))}}};\n"
                )
                lw = np.concatenate([luts[j][(want[64 * j : 64 * j + 64] & 255)] for j in range(4)])
                emit(
                    f"{name}l",
                    256,
                    f"el_add_s8_fast_lut(&{name}, ex1, ex2, y, 64, 4, {name}_l);",
                    lw,
                )
            n_add += 1
        m, sh = quant.quantize_multiplier(s1 * s2 / so)
        if sh <= -1 and n_mul < 12:
            want = np.clip(
                [
                    _mbqm((int(a) - z1) * (int(b) - z2), m, sh) + zo
                    for a, b in zip(x1, x2, strict=True)
                ],
                -128,
                127,
            )
            name = f"mul{n_mul}"
            vals = [-2 * z1, -z2, m, -sh - 1, 1 + 2 * zo]
            data.append(f"static const el_mul_fast_t {name} = {{{', '.join(map(str, vals))}}};\n")
            emit(name, 256, f"el_mul_s8_fast(&{name}, ex1, 1, ex2, 1, y, 256);", want)
            n_mul += 1
    # the fused LSTM cell (el_lstm_cell_s8): gate ADD (table form) + 4 tables, MUL(f, c),
    # MUL(i, g), the cell ADD (both operand orders), tables, MUL(o, tanh c), against the same
    # ops one at a time; x1 / x2 hold every code once, gates in a shuffled order, 64 or 63 units
    from edgelstm.codegen.engine.lower.cell import cell_params, gate_line
    from edgelstm.codegen.engine.lower.elementwise import MulFast

    def add_ref(prm: quant.AddSubParams, a: int, b: int) -> int:
        raw = _mbqm((prm.in1_off + a) << 20, prm.in1_mult, prm.in1_shift) + _mbqm(
            (prm.in2_off + b) << 20, prm.in2_mult, prm.in2_shift
        )
        return int(np.clip(_mbqm(raw, prm.out_mult, prm.out_shift) + prm.out_off, -128, 127))

    def mul_ref(z1: int, z2: int, m: int, sh: int, zo: int, a: int, b: int) -> int:
        return int(np.clip(_mbqm((a - z1) * (b - z2), m, sh) + zo, -128, 127))

    n_cell = 0
    cstate = rng.integers(-128, 128, 64)
    data.append(_c_arr("int8_t", "cst", cstate))
    while n_cell < 6:
        sc = [float(v) for v in 10 ** rng.uniform(-3, 0, 12)]
        z = [int(v) for v in rng.integers(-128, 128, 12)]
        gp = quant.addsub_params(sc[0], z[0], sc[1], z[1], sc[2], z[2])
        cp = quant.addsub_params(sc[3], z[3], sc[4], z[4], sc[5], z[5])
        gfast, cfast = _add_fast(gp, 1, -128, 127), _add_fast(cp, 1, -128, 127)
        swap = bool(n_cell % 2)  # the cell ADD's fast form with (i * g, f * c) as (x1, x2)
        if swap:
            cfast = _add_fast(cp.swapped(), 1, -128, 127)
        # (in1 zp, in1 scale, in2 zp, in2 scale, out zp, out scale): fc (gate f, c), ig, oh
        mp = [(z[6 + k], sc[6 + k], z[9 + k], sc[9 + k]) for k in range(3)]
        mq = []
        for k, (za, sa_, zb, sb_) in enumerate(mp):
            zo_, so_ = (z[3], sc[3]) if k == 0 else (z[4], sc[4])
            if k == 2:
                zo_, so_ = int(z[0] // 2), sc[0] * 2
            m, sh = quant.quantize_multiplier(sa_ * sb_ / so_)
            mq.append((za, zb, m, sh, zo_))
        if gfast is None or cfast is None or any(q[3] > -1 for q in mq):
            continue
        name = f"cell{n_cell}"
        order = rng.permutation(4)  # gate k's segment
        # 63 (odd: the portable gate loop on a DSP core) and 6: a last partial vector on Helium
        nu = (64, 64, 64, 64, 63, 6)[n_cell]
        offs = [int(order[k]) * nu for k in range(4)]
        tabs = rng.integers(-128, 128, (5, 256))  # i, f, g, o, tanh(c), indexed by code + 128
        line = gate_line(gfast)
        assert line is not None
        data.append(_c_arr("int8_t", f"{name}_t", line[0]))
        data += [_c_arr("int8_t", f"{name}_l{k}", tabs[k]) for k in range(5)]
        mf = [MulFast(-2 * za, -zb, m, -sh - 1, 1 + 2 * zo_) for za, zb, m, sh, zo_ in mq]
        init = cell_params(
            f"{name}_t", line[1:], gfast, *((mf[1], mf[0]) if swap else (mf[0], mf[1])), mf[2], cfast,
            swap, offs, [f"{name}_l{k}" for k in range(5)],
        )  # fmt: skip
        data.append(f"static const el_lstm_cell_t {name} = {init};\n")
        c_want, h_want = [], []
        for j in range(nu):
            a = [
                int(tabs[k][add_ref(gp, int(x1[offs[k] + j]), int(x2[offs[k] + j])) + 128])
                for k in range(4)
            ]
            fc = mul_ref(*mq[0][:2], *mq[0][2:], a[1], int(cstate[j]))
            ig = mul_ref(*mq[1][:2], *mq[1][2:], a[0], a[2])
            cn = add_ref(cp, fc, ig)  # the kernel takes i * g first when swapped
            c_want.append(cn)
            h_want.append(mul_ref(*mq[2][:2], *mq[2][2:], a[3], int(tabs[4][cn + 128])))
        emit(
            name,
            2 * nu,
            f"el_lstm_cell_s8(&{name}, ex1, ex2, cst, gb, y, y + {nu}, {nu});",
            np.array(c_want + h_want),
        )
        n_cell += 1
    # DIV: every pair of codes, both divisor signs (a divisor at its zero point gives out_off);
    # MEAN: rows of 1..40 codes summed, 1/n folded into the multiplier
    for k in range(8):
        s1, s2, so = (float(np.float32(v)) for v in 10 ** rng.uniform(-3, 0, 3))
        z1, z2, zo = (int(v) for v in rng.integers(-128, 128, 3))
        m, sh = quant.quantize_multiplier(float(np.float32(s1) / (np.float32(s2) * np.float32(so))))
        inv, rs = quant.div_tables(z2)
        data += [_c_arr("int32_t", f"div{k}_i", inv), _c_arr("int8_t", f"div{k}_r", rs)]
        data.append(f"static const el_div_s8_t div{k} = {{{-z1}, {zo}, {m}, {sh}, -128, 127}};\n")
        want = np.clip(
            [
                quant.div_s8(int(a), int(b), -z1, -z2, zo, m, sh)
                for a, b in zip(x1, x2, strict=True)
            ],
            -128,
            127,
        )
        emit(
            f"div{k}", 256, f"el_div_s8(&div{k}, div{k}_i, div{k}_r, ex1, 1, ex2, 1, y, 256);", want
        )
        n = int(rng.integers(1, 41))
        rows = 256 // n
        m, sh = quant.mean_params(s1, so, n)
        sums = x1[: rows * n].reshape(rows, n).sum(axis=1)
        want = np.clip([_mbqm(int(t) - z1 * n, m, sh) + zo for t in sums], -128, 127)
        emit(f"mean{k}", rows, f"el_mean_s8(ex1, {rows}, {n}, 1, {z1}, {m}, {sh}, {zo}, y);", want)
    src = (
        '#include <stdio.h>\n#include "edgelstm_kernels.h"\n'
        + "".join(data)
        + "static int16_t xs[136];\nstatic int8_t y[256], gb[256];\n"
        + "static void el_out(const char *label, const int8_t *v, int n)\n{\n    int i;\n"
        + '    printf("%s ", label);\n    for (i = 0; i < n; ++i) {\n'
        + '        printf("%02x", (unsigned)(uint8_t)v[i]);\n    }\n    printf("\\n");\n}\n'
        + "int main(void)\n{\n"
        + "".join(calls)
        + '    printf("done\\n");\n    return 0;\n}\n'
    )
    return src, expect


def test_int8_integer_formulas_follow_the_float_functions() -> None:
    """The Python ports of TFLite's integer ABS, RSQRT, DIV and MEAN (gemmlowp reciprocal and
    inverse square root, exact in Python integers) stay within 1 LSB of the real function."""
    from edgelstm.codegen.engine import quant

    rng = np.random.default_rng(5)
    v = np.arange(-128, 128)
    for _ in range(100):
        s1, s2, so = (float(np.float32(x)) for x in 10 ** rng.uniform(-3, 0, 3))
        z1, z2, zo = (int(x) for x in rng.integers(-128, 128, 3))

        def q(real: np.ndarray, so: float = so, zo: int = zo) -> np.ndarray:
            return np.clip(np.round(real / so) + zo, -128, 127)

        got = quant.abs_table(s1, z1, so, zo)[v.astype(np.uint8)]
        assert np.abs(got - q(np.abs(s1 * (v - z1)))).max() <= 1
        pos = v > z1
        got = quant.rsqrt_table(s1, z1, so, zo)[v.astype(np.uint8)][pos]
        assert np.abs(got - q(1 / np.sqrt(s1 * (v[pos] - z1)))).max(initial=0) <= 1
        m, sh = quant.quantize_multiplier(float(np.float32(s1) / (np.float32(s2) * np.float32(so))))
        a, b = rng.integers(-128, 128, (2, 64))
        a, b = a[b != z2], b[b != z2]
        got = [quant.div_s8(int(x), int(y), -z1, -z2, zo, m, sh) for x, y in zip(a, b, strict=True)]
        got = np.clip(got, -128, 127)
        assert np.abs(got - q(s1 * (a - z1) / (s2 * (b - z2)))).max(initial=0) <= 1
        n = int(rng.integers(1, 40))
        x = rng.integers(-128, 128, n)
        m, sh = quant.mean_params(s1, so, n)
        got = np.clip(quant.mbqm(int(x.sum()) - z1 * n, m, sh) + zo, -128, 127)
        assert abs(got - q(s1 * (x - z1).mean())) <= 1


def _check_fuzz_output(text: str, expect: list[tuple[str, np.ndarray]], where: str) -> None:
    got = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
    assert "done" in text, text[-500:]
    for label, want in expect:
        have = np.frombuffer(bytes.fromhex(got[label]), np.int8)
        bad = np.flatnonzero(have != want)
        assert bad.size == 0, f"{where} {label}: {bad.size} differ, first at {bad[:4]}"


def _fuzz_dir(tmp_path: Path, seed: int) -> list[tuple[str, np.ndarray]]:
    from edgelstm.codegen.engine.emit import KERNEL_DIR

    src, expect = _fuzz_cases(seed)
    for f in ("edgelstm_kernels.c", "edgelstm_kernels.h"):
        shutil.copy(KERNEL_DIR / f, tmp_path / f)
    (tmp_path / "fuzz.c").write_text(src)
    return expect


def test_kernel_fuzz_host(tmp_path: Path) -> None:
    from edgelstm.export.cengine import verify as v

    expect = _fuzz_dir(tmp_path, 2024)
    assert len(expect) > 150
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    cc = [*v.C_WARN, "-O1", *san, "-o", "fuzz", "fuzz.c", "edgelstm_kernels.c", "-lm"]
    v._run(["gcc", *cc], tmp_path, 300, "host gcc")
    _check_fuzz_output(v._run([str(tmp_path / "fuzz")], tmp_path, 120, "host"), expect, "host")


@pytest.mark.parametrize("core", CORE_PARAMS)
def test_kernel_fuzz_qemu(tmp_path: Path, core: str) -> None:
    """The DSP assembly on every emulated Cortex-M (and the portable C as gcc builds it for each
    core, RISC-V rv32imc included) against the Python model of the integer formulas."""
    from edgelstm.export.cengine import verify as v

    expect = _fuzz_dir(tmp_path, 2024)
    out, _ = v.build_and_run(core, tmp_path, ["fuzz.c", "edgelstm_kernels.c"], timeout=120)
    _check_fuzz_output(out, expect, f"qemu {core}")


def _have_armhf() -> bool:
    return all(shutil.which(t) for t in ("arm-linux-gnueabihf-gcc", "qemu-arm-static"))


@pytest.mark.skipif(
    not _have_armhf(), reason="arm-linux-gnueabihf-gcc / qemu-arm-static not installed"
)
@pytest.mark.parametrize("mode", ["-marm", "-mthumb"])
def test_kernel_fuzz_armv7_linux(tmp_path: Path, mode: str) -> None:
    """32-bit ARM Linux (Raspberry Pi OS armhf) builds the DSP assembly in both instruction sets
    (ARM-mode LDRD needs an even register pair) and gets the same results."""
    from edgelstm.export.cengine import verify as v

    expect = _fuzz_dir(tmp_path, 2025)
    cpu = ["-march=armv7-a", "-mfpu=neon-vfpv4", "-mfloat-abi=hard", mode]
    cc = ["arm-linux-gnueabihf-gcc", *v.C_WARN, "-O2", *cpu, "-static"]
    v._run([*cc, "-o", "fuzz", "fuzz.c", "edgelstm_kernels.c", "-lm"], tmp_path, 300, "armhf gcc")
    out = v._run(["qemu-arm-static", "-cpu", "cortex-a7", "./fuzz"], tmp_path, 120, "qemu-arm")
    _check_fuzz_output(out, expect, f"armv7 {mode}")
