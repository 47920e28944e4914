"""`convert_model`: load -> parse -> build -> convert (isolated) -> check fusion -> verify -> write.

Everything is produced in a temporary directory and moved into OUTDIR only when the whole run
succeeded, so a failure never leaves half-written artifacts behind.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm import __version__
from edgelstm.convert import build, isolate
from edgelstm.convert.fbedit import add_fc_bias, remove_lstm_cell_clip, tie_state_quantization
from edgelstm.convert.graph import ModelSpec, parse_model
from edgelstm.convert.load import load_keras_model
from edgelstm.convert.verify import compare, keras_reference, run_sequence, run_step
from edgelstm.errors import (
    BadInputError,
    ConversionError,
    UnsupportedLayerError,
    VerificationError,
)
from edgelstm.fsutil import publish, write_atomic
from edgelstm.quantize import int16
from edgelstm.tflite_info import TFLiteInfo, read_tflite
from edgelstm.types import (
    Artifact,
    ConvertConfig,
    Manifest,
    OutputKind,
    Quantization,
    Variant,
)

Progress = Callable[[str], None]


def load_calibration(path: str | Path, ms: ModelSpec) -> np.ndarray:
    """Calibration sequences from .npy or .npz (key `x`), checked against the model's input."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: calibration file not found")
    try:
        if path.suffix == ".npz":
            with np.load(path) as data:
                if "x" not in data:
                    raise BadInputError(
                        f"{path}: .npz has no array 'x' (keys: {', '.join(data.files)})"
                    )
                x = data["x"]
        else:
            x = np.load(path, allow_pickle=False)
    except BadInputError:
        raise
    except Exception as exc:
        raise BadInputError(
            f"{path}: not a readable .npy/.npz file ({type(exc).__name__})"
        ) from None
    want = (ms.seq_len,) if ms.token_input else (ms.seq_len, ms.in_dim)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise BadInputError(
            f"{path}: calibration data has shape {tuple(x.shape)}, the model needs (N, {', '.join(map(str, want))})"
        )
    if ms.token_input and x.dtype.kind not in "iu":
        raise BadInputError(f"{path}: calibration data must be integer token ids (got {x.dtype})")
    if not ms.token_input and x.dtype.kind != "f":
        raise BadInputError(f"{path}: calibration data must be floating point (got {x.dtype})")
    if len(x) == 0:
        raise BadInputError(f"{path}: calibration data is empty")
    if not ms.token_input and not np.isfinite(x).all():
        raise BadInputError(f"{path}: calibration data contains NaN or inf")
    return x.astype(np.int32 if ms.token_input else np.float32)


def synthetic_inputs(ms: ModelSpec, n: int, seed: int) -> np.ndarray:
    """Seeded inputs shaped like the model's, for parity checks without user data."""
    rng = np.random.default_rng(seed)
    if ms.token_input:
        vocab = ms.layers[0].config["input_dim"]
        return rng.integers(0, vocab, size=(n, ms.seq_len)).astype(np.int32)
    return rng.standard_normal((n, ms.seq_len, ms.in_dim)).astype(np.float32)


def _is_classifier(ms: ModelSpec) -> bool:
    last = ms.layers[-1]
    return last.config.get("activation") == "softmax" or (
        last.kind == "Activation" and last.config.get("activation") == "softmax"
    )


def _step_calibration(
    ms: ModelSpec, xs: np.ndarray, limit: int, seed: int
) -> dict[str, np.ndarray]:
    """Step-model calibration: inputs *and realistic states*, from running the float cell."""
    feeds: list[dict[str, np.ndarray]] = []
    for seq in xs:
        feeds.extend(build.run_step_numpy(ms, seq)[1])
    rng = np.random.default_rng(seed)
    pick = np.sort(rng.choice(len(feeds), size=min(limit, len(feeds)), replace=False))
    return {name: np.stack([feeds[i][name] for i in pick]) for name in feeds[0]}


def _cell_range_notes(ms: ModelSpec, info: TFLiteInfo, cal_x: np.ndarray) -> list[str]:
    """Warn when the calibrated cell state exceeds what the fused LSTM's int16 cell can hold.

    The integer fused LSTM stores c in a variable int16 tensor with a power-of-two scale; where
    the float cell reaches larger values it saturates (a silent clip). The step model's state is
    calibrated from the float cell's real states instead.
    """
    cells = [t for t in info.variable_tensors if t.dtype == "int16" and t.scales]
    if not cells:
        return []
    maxima = build.state_abs_max(ms, cal_x[:64])
    c_max = max((v for name, v in maxima.items() if name.endswith("_c")), default=0.0)
    limit = min(32767 * t.scales[0] for t in cells)
    if c_max <= limit:
        return []
    return [
        f"the cell state reaches |c| = {c_max:.3g} on the calibration data, but this integer fused "
        f"LSTM keeps c in int16 with range +-{limit:.3g}: it saturates there; the step model "
        "(state calibrated from the float cell) does not"
    ]


def _artifact(
    path: Path, info: TFLiteInfo, variant: Variant, quant: Quantization, ms: ModelSpec
) -> Artifact:
    states = info.states()
    layout = [(k, spec) for k, spec, _ in ms.state_layout()]
    for st in states:
        k = int(st.layer[len("state") :])
        st.layer = layout[k][1].name if k < len(layout) else st.layer
    return Artifact(
        file=path.name,
        variant=variant,
        quantization=quant,
        ops=info.op_set,
        op_counts=info.op_counts,
        fused_lstm=info.fused_lstm,
        inputs=info.inputs,
        outputs=info.outputs,
        states=states if variant == Variant.STEP else [],
        macs_per_invoke=info.macs,
        params=info.params,
        size_bytes=info.size_bytes,
    )


def _fusion_check(ms: ModelSpec, info: TFLiteInfo, allow_unfused: bool) -> list[str]:
    """Fail when a sequence model with LSTMs kept WHILE/TensorList/Flex ops, naming the layer."""
    notes = []
    lstms = [s for s in ms.layers if s.kind == "LSTM"] + [
        s.config[p]
        for s in ms.layers
        if s.kind == "Bidirectional"
        for p in ("forward", "backward")
        if s.config[p].kind == "LSTM"
    ]
    fused = info.op_counts.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
    unfused_lstms = [s for s in lstms if s.config.get("masked")]
    for s in unfused_lstms:
        notes.append(f"{s.name}: not fused: masking (a masked LSTM is unrolled into plain ops)")
    bad = info.unfused_ops
    if bad:
        culprits = []
        for s in ms.layers:
            c = s.config
            for arg in ("go_backwards", "stateful", "masked"):
                if c.get(arg):
                    culprits.append(f"layer '{s.name}' ({arg})")
        who = (
            ", ".join(culprits)
            or ", ".join(f"layer '{s.name}'" for s in lstms)
            or "a recurrent layer"
        )
        msg = f"sequence model still has {', '.join(bad)} ops (not fused): {who}"
        if not allow_unfused:
            raise ConversionError(msg + "; pass --allow-unfused to keep it anyway")
        notes.append(msg)
    elif lstms and fused < len(lstms) - len(unfused_lstms):
        notes.append(f"{len(lstms) - fused} LSTM layer(s) not fused")
    return notes


def _source_info(path: Path, framework: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(f.read_bytes())
    return {"path": str(path), "sha256": digest.hexdigest(), "framework": framework}


def _stem(cfg: ConvertConfig, model_path: Path) -> str:
    stem = cfg.name or (model_path.name if model_path.is_dir() else model_path.stem)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "model"


def check_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")


def convert_model(
    model_path: str | Path,
    outdir: str | Path,
    cfg: ConvertConfig,
    progress: Progress = lambda _msg: None,
) -> Manifest:
    """Convert a Keras model file into verified .tflite artifacts plus manifest.json in outdir."""
    model_path, outdir = Path(model_path), Path(outdir)
    check_outdir(outdir)
    if cfg.calibration_samples < 1 or cfg.verify_samples < 1:
        raise BadInputError("--calibration-samples and --verify-samples must be at least 1")
    needs_cal = [q for q in cfg.quantizations if q.needs_calibration]
    if needs_cal and not cfg.calibration:
        raise BadInputError(
            f"--quantize {needs_cal[0].value} needs --calibration FILE (.npy or .npz with key 'x')"
        )

    progress(f"loading {model_path}")
    onnx_ref = None  # an .onnx source is verified against onnxruntime, not its Keras rebuild
    if model_path.suffix.lower() == ".onnx":
        from edgelstm.convert.onnx_import import load_onnx

        imported = load_onnx(model_path, cfg.seq_len)
        model, framework, onnx_ref = imported.model, "onnx", imported.reference
    else:
        model, framework = load_keras_model(model_path, unsafe=cfg.unsafe)
    ms = parse_model(model, framework, cfg.seq_len)
    if onnx_ref is not None:
        ms.notes[:0] = imported.notes
    calib = load_calibration(cfg.calibration, ms) if cfg.calibration else None

    variants = cfg.variants or (
        [Variant.SEQUENCE, Variant.STEP] if ms.streamable else [Variant.SEQUENCE]
    )
    notes = list(ms.notes)
    if not ms.streamable and cfg.variants is None:
        notes.append("no step model: " + "; ".join(ms.stream_blockers))
    if Variant.STEP in variants and not ms.streamable:
        if cfg.variants and Variant.SEQUENCE not in cfg.variants:
            raise BadInputError("the model cannot be streamed: " + "; ".join(ms.stream_blockers))
        notes.append("no step model: " + "; ".join(ms.stream_blockers))
        variants = [v for v in variants if v != Variant.STEP] or [Variant.SEQUENCE]
        if Variant.SEQUENCE not in variants:
            variants.append(Variant.SEQUENCE)

    verify_x = (
        calib[: cfg.verify_samples]
        if calib is not None
        else synthetic_inputs(ms, cfg.verify_samples, cfg.seed)
    )
    progress(f"reference outputs from the {framework} model on {len(verify_x)} sequences")
    reference = onnx_ref(verify_x) if onnx_ref else keras_reference(model, verify_x)

    stem = _stem(cfg, model_path)
    outdir.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    work = Path(tempfile.mkdtemp(prefix="edgelstm-work-"))
    try:
        jobs: list[isolate.ConvertJob] = []
        for variant in variants:
            progress(f"building the {variant.value} graph")
            module = (
                build.build_sequence_module(build.build_sequence_model(ms), ms)
                if variant == Variant.SEQUENCE
                else build.build_step_module(ms)
            )
            saved = work / f"saved_{variant.value}"
            build.save_module(module, saved)
            cal_file = None
            if calib is not None and needs_cal:
                cal_file = work / f"calib_{variant.value}.npz"
                cal_x = calib[: cfg.calibration_samples]
                if variant == Variant.SEQUENCE:
                    np.savez(cal_file, x=cal_x[:, None])
                else:
                    # Cap steps so calibration stays quick on long sequences.
                    np.savez(cal_file, **_step_calibration(ms, cal_x, limit=2000, seed=cfg.seed))
            for quant in cfg.quantizations:
                name = f"{stem}_{variant.value}_{quant.value}.tflite"
                # The converter refuses 16x8 for the fused LSTM: convert to int8 into the work
                # dir instead; the int16x8 artifact is derived from it below (quantize/int16.py).
                via_int8 = _int16_via_int8(variant, quant, ms)
                jobs.append(
                    isolate.ConvertJob(
                        id=f"{variant.value}/{quant.value}",
                        saved_model=str(saved),
                        out=str(work / f"int8_for_{name}") if via_int8 else str(stage / name),
                        quantization="int8" if via_int8 else quant.value,
                        calibration=str(cal_file) if cal_file else None,
                        float_io=cfg.float_io,
                    )
                )
        progress(f"converting {len(jobs)} artifact(s) in an isolated process")
        results = isolate.run_jobs(jobs, work)

        artifacts: list[Artifact] = []
        failures: list[str] = []
        for job in jobs:
            variant, quant = Variant(job.id.split("/")[0]), Quantization(job.id.split("/")[1])
            res = results[job.id]
            if not res.ok:
                failures.append(f"{job.id}: {res.message}")
                continue
            path = Path(job.out)
            data = path.read_bytes()
            tie_notes: list[str] = []
            via_int8 = _int16_via_int8(variant, quant, ms)
            if via_int8:
                path = stage / f"{stem}_{variant.value}_{quant.value}.tflite"
                try:
                    data, tie_notes = _requantize_int16(data, ms, calib, cfg)
                except UnsupportedLayerError as exc:
                    failures.append(f"{job.id}: {exc}")
                    continue
                write_atomic(path, data)
            # Every FC gets an explicit (zero) bias: tflite-runtime's ARM kernels crash without.
            data, bias_fcs = add_fc_bias(data)
            if bias_fcs:
                write_atomic(path, data)
            info = read_tflite(data)
            if variant == Variant.STEP and quant.is_integer:
                data, tie_notes = tie_state_quantization(
                    data, [(s.input, s.output) for s in info.states()]
                )
                if tie_notes:
                    write_atomic(path, data)
                    info = read_tflite(data)
            if variant == Variant.SEQUENCE and info.variable_tensors:
                data, clip_notes = remove_lstm_cell_clip(data)
                if clip_notes:
                    write_atomic(path, data)
                    info = read_tflite(data)
                    tie_notes.extend(clip_notes)
            # (via_int8: the requantizer sized the cell from the float cell's range itself, and
            # this check cannot tell int16 h from int16 c.)
            if (
                variant == Variant.SEQUENCE
                and quant.is_integer
                and calib is not None
                and not via_int8
            ):
                tie_notes.extend(_cell_range_notes(ms, info, calib[: cfg.calibration_samples]))
            art = _artifact(path, info, variant, quant, ms)
            art.notes.extend(tie_notes)
            if variant == Variant.SEQUENCE and quant == Quantization.FLOAT:
                art.notes.extend(_fusion_check(ms, info, cfg.allow_unfused))
            progress(f"verifying {path.name} in {'TFLite Micro' if via_int8 else 'LiteRT'}")
            if via_int8:
                got = int16.run_sequence_tflm(data, info, verify_x)
            elif variant == Variant.SEQUENCE:
                got = run_sequence(data, info, verify_x)
            else:
                got = run_step(data, info, verify_x, ms.token_input)
            art.parity = compare(reference, got, quant, variant, ms.output_kind, _is_classifier(ms))
            if onnx_ref is not None:
                art.parity.reference = "onnxruntime"
            if via_int8:
                art.parity.runtime = "tflm"
                art.parity.note = "LiteRT has no int16-activation fused LSTM kernel"
                art.notes.append(
                    "verified in TFLite Micro (tflite-micro interpreter): LiteRT's fused LSTM "
                    "kernel has no int16-activation path"
                )
            if variant == Variant.SEQUENCE and ms.recurrent and info.variable_tensors:
                art.notes.append(
                    "fused LSTM state lives in variable tensors: call reset_all_variables() "
                    "(TFLite Micro: interpreter.Reset()) before each new sequence"
                )
            artifacts.append(art)

        if failures:
            ok_keys = {(a.variant, a.quantization) for a in artifacts}
            for f in failures:
                variant, quant = (
                    Variant(f.split("/")[0]),
                    Quantization(f.split("/")[1].split(":")[0]),
                )
                alt = Variant.STEP if variant == Variant.SEQUENCE else Variant.SEQUENCE
                if (alt, quant) in ok_keys:
                    notes.append(
                        f"{f} -- fell back to the {alt.value} {quant.value} artifact, which converted"
                    )
                else:
                    raise ConversionError(f"conversion failed: {f}")
        bad = [a for a in artifacts if a.parity and not a.parity.passed]
        if bad and cfg.verify_fail:
            a = bad[0]
            raise VerificationError(
                f"{a.file}: max abs error {a.parity.max_abs:.3g} exceeds the bound {a.parity.bound:.3g} "
                f"for {a.quantization.value} (pass --no-verify-fail to keep it)"
            )

        manifest = Manifest(
            edgelstm_version=__version__,
            source=_source_info(model_path, framework),
            model=ms.summary(),
            artifacts=artifacts,
            notes=notes,
        )
        (stage / "manifest.json").write_text(json.dumps(manifest.to_dict(), indent=2) + "\n")
        publish(stage, outdir)
        return manifest
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(stage, ignore_errors=True)


def _int16_via_int8(variant: Variant, quant: Quantization, ms: ModelSpec) -> bool:
    """SEQUENCE + INT16X8 with a fused LSTM: produced by requantizing the int8 model."""
    return (
        variant == Variant.SEQUENCE and quant == Quantization.INT16X8 and int16.has_fused_lstm(ms)
    )


def _requantize_int16(
    data: bytes, ms: ModelSpec, calib: np.ndarray | None, cfg: ConvertConfig
) -> tuple[bytes, list[str]]:
    """The int16x8 sequence model from the int8 one; LSTM state ranges from the float cell."""
    ranges = (
        int16.lstm_state_ranges(ms, calib[: cfg.calibration_samples]) if calib is not None else None
    )
    data, notes = int16.requantize_int8_to_int16x8(data, ranges)
    return data, [int16.PATH_NOTE, *notes]


__all__ = ["ConvertConfig", "OutputKind", "convert_model"]
