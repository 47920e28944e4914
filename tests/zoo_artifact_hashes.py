"""Hash every artifact of every zoo model: a refactoring must leave them byte-identical.

    python tests/zoo_artifact_hashes.py OUT.json [--recipe R ...]   # before and after, then diff
    python tests/zoo_artifact_hashes.py OUT.json --work DIR            # keep the conversions
    python tests/zoo_artifact_hashes.py OUT.json --work DIR --reuse    # exports only (seconds)

Converts each committed zoo model (sequence + step; float, int8, int16x8) with its committed
calibration data, renders the TFLite Micro export of every artifact (arena measured) and the C
engine of every float/int8 step model (generated in memory, not compiled), and writes one
sha256 per file. Not a test (it takes minutes): run it around a change that must not alter output.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def hashes(recipes: list[str], work: Path, reuse: bool = False) -> dict[str, str]:
    from edgelstm.codegen.engine import generate
    from edgelstm.convert import convert_model
    from edgelstm.errors import EdgeLSTMError
    from edgelstm.export.tflm import plan_tflm
    from edgelstm.types import ConvertConfig, Quantization
    from edgelstm.zoo import load_recipe

    out: dict[str, str] = {}
    for name in recipes:
        rec = load_recipe(name)
        art = work / name
        cfg = ConvertConfig(
            quantizations=[Quantization.FLOAT, Quantization.INT8, Quantization.INT16X8],
            calibration=str(rec.dir / "calibration.npz"),
            verify_fail=False,
            name=name.replace("-", "_"),
        )
        if reuse:  # a change to the exporters only: hash the exports of the kept conversions
            manifest = json.loads((art / "manifest.json").read_text())
        else:
            manifest = convert_model(rec.dir / "model.keras", art, cfg, progress=print).to_dict()
        for a in manifest["artifacts"]:
            path = art / a["file"]
            out[f"{name}/{a['file']}"] = _sha(path.read_bytes())
            key = f"{name}/{a['file']}"
            try:  # a model an export refuses is recorded with its message (that must not move)
                plan = plan_tflm(path.read_bytes(), name="m", manifest=manifest,
                                 source_file=a["file"])  # fmt: skip
                out.update({f"{key}/tflm/{f}": _sha(d) for f, d in sorted(plan.files.items())})
            except EdgeLSTMError as exc:
                out[f"{key}/tflm"] = f"error: {exc}"
            if a["variant"] == "step" and a["quantization"] in ("float", "int8"):
                try:
                    eng = generate(path, name="m", manifest=manifest)
                    out.update({f"{key}/c/{f}": _sha(d) for f, d in sorted(eng.files.items())})
                except EdgeLSTMError as exc:
                    out[f"{key}/c"] = f"error: {exc}"
    return out


def main() -> int:
    from edgelstm.zoo import list_recipes

    ap = argparse.ArgumentParser(prog="python tests/zoo_artifact_hashes.py")
    ap.add_argument("out", type=Path)
    ap.add_argument("--recipe", action="append", help="only these recipes (default: every one)")
    ap.add_argument("--work", type=Path, help="convert into (or, with --reuse, read from) DIR")
    ap.add_argument("--reuse", action="store_true", help="hash exports of the models in --work")
    args = ap.parse_args()
    if args.reuse and not args.work:
        ap.error("--reuse needs --work")
    recipes = args.recipe or [r.name for r in list_recipes()]
    if args.work:
        result = hashes(recipes, args.work, args.reuse)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = hashes(recipes, Path(tmp))
    args.out.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    print(f"{len(result)} files hashed -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
