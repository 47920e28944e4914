"""Conversion: load -> parse -> build -> convert (isolated) -> check fusion -> verify.

`convert(model, cfg)` is the stage itself: it returns a `ConversionResult` that owns every
artifact's bytes and the manifest, and writes nothing but its own temporary work directory.
`ConversionResult.save(outdir)` publishes it (merging with the manifest already there, under the
directory's lock); `convert_model(model, outdir, cfg)` chains the two for the CLI and the other
stages, with the output-directory checks and signal handling. Files move into OUTDIR only when
the whole run succeeded, so a failure never leaves half-written artifacts behind.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm import __version__
from edgelstm.arrays import load_array
from edgelstm.convert import build, isolate, verify
from edgelstm.convert import int16x8 as int16
from edgelstm.convert import outdir as outdir_mod
from edgelstm.convert.graph import ModelSpec, parse_model
from edgelstm.convert.layers import fusable_activations, handler_for
from edgelstm.convert.load import load_keras_model
from edgelstm.convert.verify import VerifyPlan, keras_reference, run_sequence, run_step
from edgelstm.errors import (
    BadInputError,
    ConversionError,
    UnsupportedLayerError,
    VerificationError,
)
from edgelstm.fsutil import no_space, signals_as_interrupt, write_atomic
from edgelstm.tflite.passes import add_fc_bias, remove_lstm_cell_clip, tie_state_quantization
from edgelstm.tflite_info import TFLiteInfo, read_tflite
from edgelstm.types import (
    Artifact,
    ConvertConfig,
    Manifest,
    OutputKind,
    Quantization,
    Variant,
    manifest_from_dict,
)

Progress = Callable[[str], None]
# (source info, sequence length or None) -> None; raises BadInputError to stop a conversion early
SourceCheck = Callable[[dict[str, Any], int | None], None]


@dataclass
class ConversionResult:
    """What a conversion made, in memory: the manifest and the bytes of every artifact in it.

    `failed` is the error for artifacts that did not pass verification (they are not in
    `files`); `save` writes the rest, and `convert_model` raises it after saving."""

    manifest: Manifest
    files: dict[str, bytes] = field(default_factory=dict)
    failed: VerificationError | None = None

    def save(self, outdir: str | Path, on_wait: Callable[[], None] | None = None) -> Manifest:
        """Publish into `outdir` (merged with the artifacts of earlier runs of the same model
        there, under its lock); returns the manifest as written."""
        outdir = Path(outdir)
        stage = outdir_mod.new_stage(outdir)
        try:
            for name, data in self.files.items():
                write_atomic(stage / name, data)
            merged = outdir_mod.publish_run(stage, outdir, self.manifest.to_dict(), on_wait)
        finally:
            shutil.rmtree(stage, ignore_errors=True)
        return manifest_from_dict(merged)


def load_calibration(path: str | Path, ms: ModelSpec, what: str = "calibration") -> np.ndarray:
    """Calibration sequences from .npy or .npz (key `x`), checked against the model's input."""
    path = Path(path)
    x = load_array(path, what)
    want = (ms.seq_len,) if ms.token_input else (ms.seq_len, ms.in_dim)
    if x.ndim != len(want) + 1 or tuple(x.shape[1:]) != want:
        raise BadInputError(
            f"{path}: {what} data has shape {tuple(x.shape)}, the model needs (N, {', '.join(map(str, want))})"
        )
    if ms.token_input and x.dtype.kind not in "iu":
        raise BadInputError(f"{path}: {what} data must be integer token ids (got {x.dtype})")
    if not ms.token_input and x.dtype.kind != "f":
        raise BadInputError(f"{path}: {what} data must be floating point (got {x.dtype})")
    if len(x) == 0:
        raise BadInputError(f"{path}: {what} data is empty")
    if not ms.token_input and not np.isfinite(x).all():
        raise BadInputError(f"{path}: {what} data contains NaN or inf")
    if ms.token_input:
        _check_token_range(path, x, ms, what)
    return x.astype(np.int32 if ms.token_input else np.float32)


def _check_token_range(path: Path, x: np.ndarray, ms: ModelSpec, what: str) -> None:
    """Token ids must index the Embedding table (Keras would fail deep inside a gather)."""
    vocab = int(ms.layers[0].config["input_dim"])
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= vocab:
        bad = lo if lo < 0 else hi
        raise BadInputError(
            f"{path}: {what} data has token id {bad}, outside the embedding "
            f"'{ms.layers[0].name}' range 0..{vocab - 1}"
        )


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
    ms: ModelSpec,
    xs: np.ndarray,
    limit: int,
    seed: int,
    stream: np.ndarray | None = None,
    streamed: bool = True,
) -> dict[str, np.ndarray]:
    """Step-model calibration: inputs *and realistic states*, from running the float cell.

    A step model deployed as a stream (`streamed`: many-to-many, stateful, or a
    --calibration-stream given) carries state across windows, so besides every window from a
    zero state the cell also runs over one long stream (the windows end to end, or the given
    stream): a model trained on short windows otherwise never shows its state ranges. A
    many-to-one model over fixed windows is reset per window, and is calibrated on the windows
    alone: the never-reset stream's states are not its deployment's, and their wider ranges cost
    it resolution (the zoo's temporal-order GRU: int8 step error 0.9999 with them, 0.004 without)."""
    feeds: list[dict[str, np.ndarray]] = []
    for seq in xs:
        feeds.extend(build.run_step_numpy(ms, seq)[1])
        if len(feeds) >= 10 * limit:  # long windows: enough samples, keep calibration quick
            break
    long = stream if stream is not None else verify.concat_stream(ms, xs)
    if streamed and len(long):
        feeds.extend(build.run_step_numpy(ms, long[: verify.MAX_STREAM * 4])[1])
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
    file: str, info: TFLiteInfo, variant: Variant, quant: Quantization, ms: ModelSpec
) -> Artifact:
    states = info.states()
    layout = [(k, spec) for k, spec, _ in ms.state_layout()]
    for st in states:
        k = int(st.layer[len("state") :])
        st.layer = layout[k][1].name if k < len(layout) else st.layer
    return Artifact(
        file=file,
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
    lstms = [
        cell
        for spec, handler in zip(ms.layers, ms.handlers, strict=True)
        for cell in handler.cells(spec)
        if handler_for(cell.kind, cell.name).fusable
    ]
    fused = info.op_counts.get("UNIDIRECTIONAL_SEQUENCE_LSTM", 0)
    unfused_lstms = [
        s for s in lstms if s.config.get("masked") or not fusable_activations(s.config)
    ]
    for s in unfused_lstms:
        why = (
            "masking (a masked LSTM is unrolled into plain ops)"
            if s.config.get("masked")
            else "its activations are not tanh/sigmoid (unrolled into plain ops)"
        )
        notes.append(f"{s.name}: not fused: {why}")
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


def _plan_verification(
    ms: ModelSpec, cfg: ConvertConfig, calib: np.ndarray | None, streamed: bool
) -> tuple[VerifyPlan, np.ndarray | None]:
    """Held-out verification data and the calibration part of the calibration file.

    The bound is checked on data the calibration never saw: --verify-data, else a seeded split of
    the calibration file, else (file too small) seeded inputs with its statistics; the
    calibration-set figures are reported beside. Returns the plan and the sequences to calibrate
    with."""
    n = cfg.verify_samples
    notes: list[str] = []
    cal_part = calib
    if calib is not None:
        notes += [
            f"warning: {w}"
            for w in verify.calibration_warnings(calib, cfg.calibration_samples, ms.token_input)
        ]
    if cfg.verify_data:
        held = load_calibration(cfg.verify_data, ms, what="verification")[:n]
        source = f"{len(held)} sequences of --verify-data {Path(cfg.verify_data).name}"
    elif calib is not None and verify.is_degenerate(calib):
        held = synthetic_inputs(ms, n, cfg.seed)
        source = f"{n} seeded synthetic sequences (the calibration data is constant)"
    elif calib is not None:
        cal_part, split = verify.split_heldout(calib, n, cfg.seed)
        if split is None:
            held = verify.matched_inputs(ms, calib, n, cfg.seed)
            source = (
                f"{n} seeded sequences matched to the calibration statistics (the calibration "
                f"file's {len(calib)} sequences are too few to split)"
            )
        else:
            held = split
            source = (
                f"{len(held)} held-out sequences of the calibration file (seeded split; "
                f"calibration used the other {len(cal_part)})"
            )
    else:
        held = synthetic_inputs(ms, n, cfg.seed)
        source = f"{n} seeded synthetic sequences"
    plan = VerifyPlan(x=held, source=source, mask=verify.input_mask(ms, held))
    if calib is not None:
        plan.cal_x = cal_part[:n]
        plan.cal_mask = verify.input_mask(ms, plan.cal_x)
    if streamed and ms.recurrent:
        plan.stream = verify.stream_inputs(ms, held, cfg.seed)
    if plan.mask is not None and ms.output_kind != OutputKind.MANY_TO_ONE:
        notes.append(
            "parity compares unmasked positions only (masked steps' outputs are undefined)"
        )
    plan.notes = notes
    return plan, cal_part


def _load_stream(path: str | Path, ms: ModelSpec) -> np.ndarray:
    """--calibration-stream: one long stream [L, D] (floats) or [L] (token ids)."""
    path = Path(path)
    x = load_array(path, "calibration stream", first_if_missing=True)
    want = 1 if ms.token_input else 2
    if x.ndim != want or (not ms.token_input and x.shape[1] != ms.in_dim) or len(x) == 0:
        need = "(L,) token ids" if ms.token_input else f"(L, {ms.in_dim})"
        raise BadInputError(f"{path}: calibration stream has shape {tuple(x.shape)}, need {need}")
    if not ms.token_input and (x.dtype.kind != "f" or not np.isfinite(x).all()):
        raise BadInputError(f"{path}: calibration stream must be finite floating point")
    return x.astype(np.int32 if ms.token_input else np.float32)


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


def check_outdir(outdir: Path) -> None:
    if outdir.exists() and not outdir.is_dir():
        raise BadInputError(f"{outdir}: output path exists and is a file")


def convert_model(
    model_path: str | Path,
    outdir: str | Path,
    cfg: ConvertConfig,
    progress: Progress = lambda _msg: None,
) -> Manifest:
    """Convert a Keras model file into verified .tflite artifacts plus manifest.json in outdir.

    SIGTERM/SIGHUP end the run like Ctrl-C (staging and work dirs removed); leftovers of runs
    killed outright (SIGKILL) are removed by the next run into the same -o."""
    model_path, outdir = Path(model_path), Path(outdir)
    created = outdir_mod.prepare(outdir)
    try:
        with signals_as_interrupt():
            outdir_mod.clean_leftovers(outdir)
            res = convert(
                model_path, cfg, progress,
                check=lambda source, seq_len: outdir_mod.check_compatible(outdir, source, seq_len),
            )  # fmt: skip
            manifest = res.save(
                outdir,
                on_wait=lambda: progress(f"waiting for another convert writing into {outdir}"),
            )
            if res.failed is not None:
                res.failed.manifest = manifest  # type: ignore[attr-defined]  # what was written
                raise res.failed
            return manifest
    except OSError as exc:
        if no_space(exc):
            raise BadInputError(
                f"no space left on device while writing {exc.filename or outdir}"
            ) from None
        raise
    finally:
        outdir_mod.discard_if_unused(outdir, created)


def _stream_is_deployment(ms: ModelSpec, cfg: ConvertConfig) -> bool:
    """Whether the step model is meant to run across windows without a reset: many-to-many
    outputs, a stateful layer, or a calibration stream given by the user."""
    stateful = any(s.config.get("stateful") for _k, s, _st in ms.state_layout())
    return (
        ms.output_kind == OutputKind.MANY_TO_MANY
        or stateful
        or getattr(cfg, "calibration_stream", None) is not None
    )


# TFLite's dynamic-range quantizer leaves constant tensors under this many elements in float.
DYNAMIC_MIN_ELEMENTS = 1024


def _dynamic_note(info: TFLiteInfo) -> list[str]:
    """Say why a dynamic-range artifact kept (some of) its weights in float."""
    weights = [t for t in info.tensors if t.buffer_bytes and len(t.shape) >= 2]
    small = [t for t in weights if t.dtype == "float32" and np.prod(t.shape) < DYNAMIC_MIN_ELEMENTS]
    if not small:
        return []
    kept = sum(t.buffer_bytes for t in small)
    return [
        f"dynamic range: {len(small)} of {len(weights)} weight matrices stay float32 ({kept:,} B): "
        f"the converter quantizes only tensors of {DYNAMIC_MIN_ELEMENTS} elements or more, and the "
        "fused LSTM keeps each gate's matrix (units x inputs, units x units) apart; int8 "
        "quantizes all of them"
    ]


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
    ref = onnx_ref or (lambda xs: keras_reference(model, xs, progress))
    plan.reference = ref(plan.x)
    if plan.cal_x is not None:
        plan.cal_reference = ref(plan.cal_x)
    if plan.stream is not None:
        plan.stream_reference = verify.float_stream_reference(ms, plan.stream)

    stem = _stem(cfg, model_path)
    work = outdir_mod.new_workdir()
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
                    feeds = _step_calibration(
                        ms, cal_x, limit=2000, seed=cfg.seed, stream=cal_stream,
                        streamed=_stream_is_deployment(ms, cfg),
                    )  # fmt: skip
                    np.savez(cal_file, **feeds)
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
            # Every FC gets an explicit (zero) bias: tflite-runtime's ARM kernels crash without.
            data, _bias_fcs = add_fc_bias(data)
            info = read_tflite(data)
            if variant == Variant.STEP and quant.is_integer:
                data, tie_notes = tie_state_quantization(
                    data, [(s.input, s.output) for s in info.states()]
                )
                if tie_notes:
                    info = read_tflite(data)
            if variant == Variant.SEQUENCE and info.variable_tensors:
                data, clip_notes = remove_lstm_cell_clip(data)
                if clip_notes:
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
        partial: VerificationError | None = None
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
    ranges = (
        int16.lstm_state_ranges(ms, calib[: cfg.calibration_samples]) if calib is not None else None
    )
    data, notes = int16.requantize_int8_to_int16x8(data, ranges)
    return data, [int16.PATH_NOTE, *notes]


__all__ = ["ConvertConfig", "OutputKind", "convert_model"]
