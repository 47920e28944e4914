"""`edgelstm export MODEL.tflite --target tflm|c -o OUTDIR` (targets from the export registry)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from edgelstm.cli._app import App
from edgelstm.errors import BadInputError
from edgelstm.export import TARGETS, export_artifact, resolve_target


@click.command()
@click.argument("model", type=click.Path(path_type=Path))
@click.option(
    "--target",
    type=click.Choice(list(TARGETS)),
    required=True,
    help="; ".join(f"{t.name}: {t.summary}" for t in TARGETS.values()) + ".",
)
@click.option(
    "-o",
    "--outdir",
    type=click.Path(path_type=Path),
    required=True,
    help="Output directory (created; files of the same name are replaced).",
)
@click.option("--name", help="C symbol/file prefix (default: the model file's stem, sanitised).")
@click.option(
    "--progmem", is_flag=True, help="tflm: put the model array in PROGMEM on AVR (__AVR__)."
)
@click.option(
    "--verify",
    "verify",
    multiple=True,
    type=click.Choice(["host", "qemu"]),
    help="c only, repeatable: build and compare on the host and/or an emulated Cortex-M4.",
)
@click.option(
    "--core",
    type=click.Choice(["m4", "m7", "m33", "m55", "rv32"]),
    default="m4",
    show_default=True,
    help="c only: the emulated board of --verify qemu: Cortex-M4 (mps2-an386), M7 (mps2-an500), "
    "M33 (mps2-an505), M55 (mps3-an547), RISC-V rv32imc (qemu virt).",
)
@click.option(
    "--rounding",
    type=click.Choice(["tflm", "litert-ref"]),
    default="tflm",
    show_default=True,
    help="c only: whose int8 FULLY_CONNECTED rounding to reproduce bit for bit: TFLite Micro's "
    "reference kernels (also CMSIS-NN's) or LiteRT's BUILTIN_REF kernels.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_obj
def export(
    app: App,
    *,
    model: Path,
    target: str,
    outdir: Path,
    name: str | None,
    progmem: bool,
    verify: tuple[str, ...],
    core: str,
    rounding: str,
    as_json: bool,
) -> None:
    """Export a converted .tflite for microcontrollers.

    A manifest.json next to MODEL (written by `edgelstm convert`) supplies state tensors and
    metadata; without it they are derived from the flatbuffer.
    """
    from edgelstm.codegen.c import c_identifier

    _check_model(model)
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is not a directory")
    c_name = c_identifier(name if name is not None else model.stem)
    manifest = _read_manifest(app, model)

    # Only the options given are passed on: one that belongs to another target is an error.
    given = {"progmem": progmem, "verify": list(verify), "rounding": rounding, "core": core}
    defaults = {"progmem": False, "verify": [], "rounding": "tflm", "core": "m4"}
    options = {k: v for k, v in given.items() if v != defaults[k]}
    resolve_target(target, options)  # before anything runs
    if target == "tflm":
        app.info(f"[export] {model.name}: measuring the TFLite Micro arena ...")
    elif verify:
        app.info(f"[export] {model.name}: building and checking the C engine ({', '.join(verify)})")
    result = export_artifact(target, model, outdir, name=c_name, manifest=manifest, **options)
    if target == "tflm":
        for note in result.get("notes", []):
            app.info(f"note: {note}")
    formatter = {"tflm": format_tflm, "c": format_c}.get(target, _format_any)
    if as_json:
        app.out_json(result)
    else:
        app.out(formatter(result))


def _check_model(model: Path) -> None:
    if not model.exists():
        raise BadInputError(f"{model}: no such file")
    if model.is_dir():
        raise BadInputError(f"{model}: is a directory, not a .tflite file")
    with model.open("rb") as fh:
        head = fh.read(8)
    if len(head) < 8 or head[4:8] != b"TFL3":
        raise BadInputError(f"{model}: not a TFLite flatbuffer (missing 'TFL3' identifier)")


def _read_manifest(app: App, model: Path) -> dict | None:
    """manifest.json beside the model, if any (a broken one is ignored with a warning)."""
    path = model.parent / "manifest.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        app.warn(f"{path}: unreadable ({exc}); deriving metadata from the flatbuffer")
        return None
    if not isinstance(data, dict) or not isinstance(data.get("artifacts"), list):
        app.warn(f"{path}: not an edgelstm manifest; deriving metadata from the flatbuffer")
        return None
    return data


def format_tflm(r: dict[str, Any]) -> str:
    """A short human report of a TFLite Micro export (sizes first)."""
    size = r["size"]
    arena = r["arena"]
    lines = [
        f"{r['source']} -> {r['outdir']}  ({r['variant']}, {r['quantization']}, "
        f"name {r['c_name']}, metadata from {r['metadata_from']})",
        f"  flash  model data            {size['flash_model_bytes']:>9,} B",
        f"  RAM    arena used (measured) {size['ram_arena_used_bytes']:>9,} B",
        f"  RAM    arena minimum         {size['ram_arena_min_bytes']:>9,} B",
        f"  RAM    arena recommended     {size['ram_arena_recommended_bytes']:>9,} B"
        f"  (+{arena['margin_bytes']:,} B margin for 32-bit targets / optimised kernels)",
        f"  MACs per invoke              {r['macs']:>9,}",
        f"  ops ({r['op_count']}): {', '.join(r['ops'])}",
    ]
    for s in r["states"]:
        lines.append(
            f"  state {s['output']} -> {s['input']}: {s['dtype']} {s['shape']}, "
            f"reset {s['reset_value']} (stored {s['reset_raw']})"
        )
    lines.append(f"  wrote {len(r['files']) + 1} files (see README.md)")
    return "\n".join(lines)


def format_c(r: dict[str, Any]) -> str:
    """A short human report of a C engine export: sizes, then each verification."""
    size = r["size"]
    lines = [
        f"{r['source']} -> {r['outdir']}  ({r['quantization']}, name {r['c_name']}"
        + (", with run_sequence" if r.get("run_sequence") else "")
        + ")",
        f"  flash  constants (weights, params, tables) {size['const_bytes']:>9,} B"
        f"  (model weights {size['weight_bytes']:,} B)",
        f"  RAM    arena + FC scratch                  "
        f"{size['arena_bytes'] + size['scratch_bytes']:>9,} B",
        f"  RAM    state (caller-owned struct)         {size['state_bytes']:>9,} B",
        f"  MACs per step                              {r['macs_per_step']:>9,}",
        f"  ops ({r['op_count']}): {', '.join(r['ops'])}",
    ]
    for target, v in r.get("verify", {}).items():
        p = v["parity"]
        if "max_lsb_diff" in p:
            parity = (
                f"max {p['max_lsb_diff']} LSB, {p['values_not_bit_exact']} of "
                f"{p['values_compared']} values not bit-exact"
            )
        else:
            parity = f"max abs diff {p['max_abs_diff']:.3g} over {p['values_compared']} values"
        ok = "ok" if p["ok"] else "FAILED"
        ref = p.get("reference", "LiteRT")
        lines.append(f"  verify {target}: {ok} vs {ref} over {p['steps']} steps: {parity}")
        for k in p.get("kernel_sets", {}).values():
            lines.append(f"    {k['kernels']}: max {k['max_lsb_diff']} LSB (measured, not a bound)")
        if "cycles" in v:
            c, z = v["cycles"], v["size"]
            core = v.get("core", {}).get("cpu", "cortex-m4")
            lines.append(
                f"    {core} (qemu icount, instructions not cycles): "
                f"{c['instructions_per_step_median']:,} instructions/step, "
                f"{c['instructions_per_mac']} per MAC"
            )
            groups = c.get("breakdown", {}).get("groups", {})
            if groups:
                lines.append(
                    "    per step: " + ", ".join(f"{k} {n:,}" for k, n in groups.items() if n)
                )
            lines.append(
                f"    flash {z['flash_engine_bytes']:,} B (text {z['flash_engine_text']:,} + "
                f"rodata {z['flash_engine_rodata']:,}), RAM {z['ram_total_bytes']:,} B (data+bss "
                f"{z['ram_engine_data_bss']:,} + state {z['ram_state_bytes']:,} + stack "
                f"{z['ram_stack_high_water']:,})"
            )
    lines.append(f"  wrote {len(r['files'])} files (see README.md)")
    return "\n".join(lines)


def _format_any(r: dict[str, Any]) -> str:
    """A target without a report of its own: where its files went."""
    return f"{r.get('source', '')} -> {r.get('outdir', '')}: wrote {len(r.get('files', []))} files"
