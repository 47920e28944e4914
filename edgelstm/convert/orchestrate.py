"""Conversion: load -> parse -> build -> convert (isolated) -> check fusion -> verify.

`convert(model, cfg)` is the stage itself: it returns a `ConversionResult` that owns every
artifact's bytes and the manifest, and writes nothing but its own temporary work directory.
`ConversionResult` and `convert_model` (publishing into OUTDIR) are in convert/result.py;
calibration.py prepares the data it runs on, artifacts.py the notes on each artifact.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm import __version__
from edgelstm.arrays import Named, load_array
from edgelstm.convert import build, isolate, verify
from edgelstm.convert import int16x8 as int16
from edgelstm.convert import outdir as outdir_mod
from edgelstm.convert.artifacts import (
    _artifact,
    _dynamic_note,
    _float_bias_vectors,
    _fused_cell_maxima,
    _fusion_check,
)
from edgelstm.convert.calibration import (
    _load_stream,
    _plan_verification,
    _step_calibration,
    _stream_is_deployment,
    load_calibration,
)
from edgelstm.convert.graph import ModelSpec, parse_model
from edgelstm.convert.load import load_keras_model
from edgelstm.convert.result import ConversionResult
from edgelstm.convert.verify import keras_reference, run_sequence, run_step
from edgelstm.errors import (
    BadInputError,
    ConversionError,
    EdgeLSTMError,
    UnsupportedLayerError,
    VerificationError,
)
from edgelstm.tflite.cell16 import int16_lstm_cells
from edgelstm.tflite.passes import requantize_int16_fc_bias, run_passes, widen_lstm_cell_range
from edgelstm.tflite_info import read_tflite
from edgelstm.types import STEP_OUTPUT, Artifact, ConvertConfig, Manifest, Quantization, Variant

Progress = Callable[[str], None]
# (source info, sequence length or None) -> None; raises BadInputError to stop a conversion early
SourceCheck = Callable[[dict[str, Any], int | None], None]


def _is_classifier(ms: ModelSpec) -> bool:
    last = ms.layers[-1]
    return last.activation == "softmax"  # a Dense, Activation, ... with softmax


def _source_info(path: Path, framework: str) -> dict[str, Any]:
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        digest.update(f.read_bytes())
    return {"path": str(path), "sha256": digest.hexdigest(), "framework": framework}


def _stem(cfg: ConvertConfig, model_path: Path) -> str:
    stem = cfg.name or (model_path.name if model_path.is_dir() else model_path.stem)
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem) or "model"


def _check_memory(ms: ModelSpec, cfg: ConvertConfig) -> None:
    """Refuse a --verify-samples that cannot fit in memory, up front."""
    out = 1
    for d in ms.out_shape[1:]:
        out *= d or 1
    out = max(out, (ms.seq_len or 1) * (ms.out_shape[-1] or 1))
    # held-out + calibration-set copies
    need = verify.memory_needed(ms, cfg.verify_samples * 2, out, len(cfg.quantizations))
    have = verify.available_memory()
    if have is not None and need > 0.8 * have:
        raise BadInputError(
            f"--verify-samples {cfg.verify_samples} would need about {_gib(need)} of memory "
            f"for the inputs and reference outputs; {_gib(have)} is available"
        )


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.0f} MiB"


def _step_only_length(model: Any, cfg: ConvertConfig) -> tuple[int | None, str]:
    """A step model has no sequence length: with `--variant step` and a model whose length is
    None, verification streams get the calibration windows' length (else 32) instead of
    demanding --seq-len. Returns (length for parse_model, a note or "")."""
    if cfg.seq_len is not None or cfg.variants != [Variant.STEP]:
        return cfg.seq_len, ""
    shape = model.input_shape[0] if isinstance(model.input_shape, list) else model.input_shape
    if len(shape) < 2 or shape[1] is not None:
        return cfg.seq_len, ""
    length, where = 32, "the default 32 steps"
    if cfg.calibration:
        try:
            x = load_array(cfg.calibration)
            if x.ndim >= 2 and x.shape[1] > 0:
                length, where = int(x.shape[1]), "the calibration windows' length"
        except BadInputError:
            pass  # load_calibration names the problem with the file
    return length, (
        f"the model's sequence length is None: the step model has none; verified over "
        f"sequences of {length} steps ({where}; --seq-len T sets it)"
    )


def _source_passes(
    data: bytes,
    info: Any,
    variant: Variant,
    quant: Quantization,
    ms: ModelSpec,
    calib: np.ndarray | None,
    cfg: ConvertConfig,
) -> tuple[bytes, Any, list[str]]:
    """The flatbuffer edits that need the source model (tflite.passes, after POST_CONVERSION):
    each integer fused LSTM's int16 cell range from the float cell's |c| on the calibration
    data; each unrolled int16x8 FC's own bias from the source model's float biases."""
    notes: list[str] = []
    if variant == Variant.SEQUENCE and quant == Quantization.INT16X8:
        data, shared = requantize_int16_fc_bias(data, _float_bias_vectors(ms))
        notes.extend(shared)
    fused = info.op_counts.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)  # (no edit here adds ops)
    if quant.is_integer and fused and calib is not None:
        c_max = _fused_cell_maxima(ms, calib[: cfg.calibration_samples], fused)
        data, widened = widen_lstm_cell_range(data, c_max)
        notes.extend(widened)
    return data, (read_tflite(data) if notes else info), notes


def convert(
    model_path: str | Path,
    cfg: ConvertConfig,
    progress: Progress = lambda _msg: None,
    check: SourceCheck = lambda _source, _seq_len: None,
) -> ConversionResult:
    """Convert a model file into verified .tflite artifacts, in memory (see ConversionResult).

    `check(source, seq_len)` runs as soon as the source is known (before the slow load) and again
    with the deploy length: `convert_model` refuses another model's output directory there."""
    model_path = Path(model_path)
    if cfg.calibration_samples < 1 or cfg.verify_samples < 1:
        raise BadInputError("--calibration-samples and --verify-samples must be at least 1")
    if cfg.seed < 0:
        raise BadInputError(f"--seed must be a non-negative integer (got {cfg.seed})")
    needs_cal = [q for q in cfg.quantizations if q.needs_calibration]
    if needs_cal and not cfg.calibration:
        raise BadInputError(
            f"--quantize {needs_cal[0].value} needs --calibration FILE (.npy or .npz with key 'x')"
        )

    progress(f"loading {model_path}")
    # Refuse another model's -o before the slow load (a missing file: the loader says so).
    source = _source_info(model_path, "") if model_path.exists() else None
    if source is not None:
        check(source, cfg.seq_len)
    onnx_ref = None  # an .onnx source is verified against onnxruntime, not its Keras rebuild
    if model_path.suffix.lower() in (".onnx", ".pt", ".pth"):
        from edgelstm.convert.onnx_import import load_model_file

        imported = load_model_file(model_path, cfg)
        model, framework, onnx_ref = imported.model, "onnx", imported.reference
    else:
        model, framework = load_keras_model(model_path, unsafe=cfg.unsafe)
    seq_len, step_len_note = _step_only_length(model, cfg)
    ms = parse_model(model, framework, seq_len)
    if step_len_note:
        ms.notes.append(step_len_note)
    if onnx_ref is not None:
        ms.notes[:0] = imported.notes
    source = source or _source_info(model_path, "")
    check(source, ms.seq_len)
    source["framework"] = framework
    _check_memory(ms, cfg)
    calib_file = load_calibration(cfg.calibration, ms) if cfg.calibration else None
    cal_stream = _load_stream(cfg.calibration_stream, ms) if cfg.calibration_stream else None

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

    plan, calib = _plan_verification(ms, cfg, calib_file, Variant.STEP in variants)
    notes.extend(plan.notes)
    progress(
        f"reference outputs from the {framework} model on {len(plan.x)} held-out sequences"
        + (f" and {len(plan.cal_x)} calibration sequences" if plan.cal_x is not None else "")
    )
    out_names = [o.name for o in ms.outputs] if ms.multi_io else None
    ref = onnx_ref or (lambda xs: keras_reference(model, xs, progress, names=out_names))
    plan.reference = ref(plan.x)
    if plan.cal_x is not None:
        plan.cal_reference = ref(plan.cal_x)
    if plan.stream is not None:
        plan.stream_reference = verify.float_stream_reference(ms, plan.stream)

    stem = _stem(cfg, model_path)
    work = outdir_mod.new_workdir()
    try:
        jobs: list[isolate.ConvertJob] = []
        state_max: dict[str, float] = {}  # step calibration: max |state| the float cell reaches
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
                if variant == Variant.SEQUENCE and isinstance(cal_x, Named):
                    np.savez(cal_file, **{k: v[:, None] for k, v in cal_x.arrays.items()})
                elif variant == Variant.SEQUENCE:
                    np.savez(cal_file, x=cal_x[:, None])
                else:
                    # Cap steps so calibration stays quick on long sequences.
                    feeds = _step_calibration(
                        ms, cal_x, limit=2000, seed=cfg.seed, stream=cal_stream,
                        streamed=_stream_is_deployment(ms, cfg),
                    )  # fmt: skip
                    np.savez(cal_file, **feeds)
                    state_max = {
                        k: float(np.max(np.abs(v)))
                        for k, v in feeds.items()
                        if k.startswith("state")
                    }
            for quant in cfg.quantizations:
                name = f"{stem}_{variant.value}_{quant.value}.tflite"
                # The converter refuses 16x8 for the fused LSTM: convert to int8 into the work
                # dir instead; the int16x8 artifact is derived from it below (convert/int16x8.py).
                via_int8 = _int16_via_int8(variant, quant, ms)
                jobs.append(
                    isolate.ConvertJob(
                        id=f"{variant.value}/{quant.value}",
                        saved_model=str(saved),
                        out=str(work / (f"int8_for_{name}" if via_int8 else name)),
                        quantization="int8" if via_int8 else quant.value,
                        calibration=str(cal_file) if cal_file else None,
                        float_io=cfg.float_io,
                    )
                )
        progress(f"converting {len(jobs)} artifact(s) in an isolated process")
        results = isolate.run_jobs(jobs, work)
        if any(isolate.NO_SPACE_MESSAGE in r.message for r in results.values()):
            raise BadInputError(f"no space left on device while converting (in {work})")

        artifacts: list[Artifact] = []
        files: dict[str, bytes] = {}
        failures: list[str] = []
        for job in jobs:
            variant, quant = Variant(job.id.split("/")[0]), Quantization(job.id.split("/")[1])
            res = results[job.id]
            if not res.ok:
                failures.append(f"{job.id}: {res.message}")
                continue
            data = Path(job.out).read_bytes()
            file = f"{stem}_{variant.value}_{quant.value}.tflite"
            tie_notes: list[str] = []
            via_int8 = _int16_via_int8(variant, quant, ms)
            if via_int8:
                try:
                    data, tie_notes = _requantize_int16(data, ms, calib, cfg)
                except UnsupportedLayerError as exc:
                    failures.append(f"{job.id}: {exc}")
                    continue
            if variant == Variant.STEP and quant == Quantization.INT8 and cfg.int16_cell:
                # Before POST_CONVERSION: the state ties then see int16 c in and out alike.
                data, cell_notes = int16_lstm_cells(data, state_max)
                tie_notes.extend(cell_notes)
            data, info, pass_notes = run_passes(data, variant, quant)  # tflite.passes, in order
            tie_notes.extend(pass_notes)
            if not via_int8:  # (the requantizer sized its cell and biases itself)
                data, info, source_notes = _source_passes(
                    data, info, variant, quant, ms, calib, cfg
                )
                tie_notes.extend(source_notes)
            art = _artifact(file, info, variant, quant, ms)
            art.notes.extend(tie_notes)
            if quant == Quantization.DYNAMIC:
                art.notes.extend(_dynamic_note(info))
            if variant == Variant.SEQUENCE and quant == Quantization.FLOAT:
                art.notes.extend(_fusion_check(ms, info, cfg.allow_unfused))
            progress(f"verifying {file} in {'TFLite Micro' if via_int8 else 'LiteRT'}")
            run: Callable[[np.ndarray], np.ndarray]
            run_stream = None
            if via_int8:
                run = lambda xs, d=data, i=info: int16.run_sequence_tflm(d, i, xs)  # noqa: E731
            elif variant == Variant.SEQUENCE:
                run = lambda xs, d=data, i=info: run_sequence(d, i, xs)  # noqa: E731
            else:
                run = lambda xs, d=data, i=info: run_step(  # noqa: E731
                    d, i, xs, ms.token_input, verify.input_mask(ms, xs)
                )
                run_stream = lambda st, d=data, i=info: verify.run_step_stream(  # noqa: E731
                    d, i, st, ms.token_input
                )
            art.parity = verify.measure(
                plan, run, quant, variant, ms.output_kind, _is_classifier(ms), run_stream,
                stream_gates=_stream_is_deployment(ms, cfg),
            )  # fmt: skip
            y_out = next((t for t in info.outputs if t.name == STEP_OUTPUT), None)
            if not art.parity.passed and quant.is_integer and y_out is not None:
                why = verify.output_saturation(plan.reference, y_out, art.parity.max_abs)
                art.parity.note = "; ".join(n for n in (art.parity.note, why) if n)
            st = art.parity.stream
            if st and not st["gates"] and not st["passed"]:
                art.notes.append(
                    f"a never-reset stream of {st['steps']} steps drifts {st['max_abs']:.3g} from "
                    "float (bound not applied: a many-to-one model over fixed windows is run with "
                    "a reset per window; --calibration-stream makes the stream the bound)"
                )
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
            files[file] = data

        unconverted: list[str] = []  # failures no other variant of the quantization makes up for
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
                    unconverted.append(f)
            if unconverted and not artifacts:
                raise ConversionError(f"conversion failed: {'; '.join(unconverted)}")
        bad = [a for a in artifacts if a.parity and not a.parity.passed]
        partial: EdgeLSTMError | None = None
        if bad and cfg.verify_fail:
            why = "; ".join(
                verify.failure_text(a.file, a.parity, a.quantization) for a in bad if a.parity
            )
            good = [a for a in artifacts if a not in bad]
            if not good:
                raise VerificationError(f"{why} (pass --no-verify-fail to keep it)")
            # Keep what passed: write those (and their manifest), then fail naming the rest.
            for a in bad:
                files.pop(a.file, None)
            notes.append(f"not written: {why}")
            artifacts = good
            # Where the other variant of a failed quantization passed, point the user at it.
            alt = sorted(
                {
                    g.variant.value
                    for a in bad
                    for g in good
                    if g.quantization == a.quantization and g.variant != a.variant
                }
            )
            hint = f" (its {alt[0]} model passed: use --variant {alt[0]})" if len(alt) == 1 else ""
            partial = VerificationError(
                f"{why}, so it was not written; wrote the {len(good)} artifact(s) that passed "
                f"({', '.join(a.file for a in good)}){hint}; "
                "pass --no-verify-fail to keep the failing one too"
            )
        if unconverted:
            # Like a missed bound: publish what converted, then fail naming what did not.
            notes.append(f"not converted: {'; '.join(unconverted)}")
            partial = ConversionError(
                f"conversion failed: {'; '.join(unconverted)}; wrote the {len(artifacts)} "
                f"artifact(s) that converted ({', '.join(a.file for a in artifacts)})"
                + (f"; also: {partial}" if partial else "")
            )

        manifest = Manifest(
            edgelstm_version=__version__,
            source=source,
            model=ms.summary(),
            artifacts=artifacts,
            notes=notes,
        )
        return ConversionResult(manifest, files, partial)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _int16_via_int8(variant: Variant, quant: Quantization, ms: ModelSpec) -> bool:
    """SEQUENCE + INT16X8 with a fused LSTM: produced by requantizing the int8 model."""
    return (
        variant == Variant.SEQUENCE and quant == Quantization.INT16X8 and int16.has_fused_lstm(ms)
    )


def _requantize_int16(
    data: bytes, ms: ModelSpec, calib: np.ndarray | None, cfg: ConvertConfig
) -> tuple[bytes, list[str]]:
    """The int16x8 sequence model from the int8 one; LSTM state ranges from the float cell."""
    # The float cell's ranges are matched to the fused ops by order, which only a chain keeps.
    ranges = (
        int16.lstm_state_ranges(ms, calib[: cfg.calibration_samples])
        if calib is not None and ms.is_chain
        else None
    )
    data, notes = int16.requantize_int8_to_int16x8(data, ranges)
    return data, [int16.PATH_NOTE, *notes]


__all__ = ["convert"]
