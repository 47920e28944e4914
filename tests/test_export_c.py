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


def _convert(model: Path, outdir: Path, calibration: Path, *, sequence: bool = False) -> dict:
    from edgelstm.convert.orchestrate import ConvertConfig, convert_model
    from edgelstm.types import Quantization, Variant

    cfg = ConvertConfig(
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


def _check_parity(result: dict, target: str, quant: str) -> None:
    p = result["verify"][target]["parity"]
    assert p["ok"], p
    assert p["saveload"], p
    if quant == "int8":
        # the acceptance bound is one quantization step; the engine mirrors LiteRT's integer
        # arithmetic (including ruy's rounding in FULLY_CONNECTED), so expect bit-exactness
        assert p["max_lsb_diff"] <= 1, p
        assert p["values_not_bit_exact"] == 0, p
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
            cache[kind] = (out, _convert(keras_model_file(kind), out, calibration_file))
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
    for quant in ("float", "int8"):
        result = export_c(
            d / _step_file(manifest, quant),
            tmp_path / quant,
            name="zoo",
            verify=["host"],
            manifest=manifest,
        )
        _check_parity(result, "host", quant)


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


def test_fuzz_under_sanitizers(converted, tmp_path: Path) -> None:
    """Many random streams (every int8 code, large float inputs) through ASan/UBSan builds."""
    from edgelstm.export.cengine import generate
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
        ref_y, ref_states = v.reference(eng.step_path, eng.ifc, inputs)
        parity = v.compare(eng.ifc, got, ref_y, ref_states)
        assert parity["ok"], (kind, quant, parity)


def test_embedding_token_range_checked(tmp_path: Path, keras_model_file, tmp_path_factory) -> None:
    """Token ids outside the table make step() return the index error instead of reading past it
    (under ASan), and valid ids match LiteRT."""
    from edgelstm.export.cengine import generate
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
    ref_y, ref_states = v.reference(eng.step_path, eng.ifc, inputs)
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
            keras.layers.Dense(3, activation="elu", name="elu_head"),
        ]
    )
    path = tmp_path / "elu.keras"
    model.save(path)
    from edgelstm.convert.orchestrate import ConvertConfig, convert_model
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

    with pytest.raises(UnsupportedLayerError, match=r"ELU.*elu_head"):
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
