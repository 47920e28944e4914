"""The data a conversion runs on: calibration sequences and streams, seeded inputs, the
held-out verification split, and the step model's calibration (inputs and float-cell states).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.arrays import Named, load_array, load_arrays
from edgelstm.convert import build, verify
from edgelstm.convert.graph import IOSpec, ModelSpec
from edgelstm.convert.verify import VerifyPlan
from edgelstm.errors import BadInputError
from edgelstm.types import ConvertConfig, OutputKind


def load_calibration(
    path: str | Path, ms: ModelSpec, what: str = "calibration"
) -> np.ndarray | Named:
    """Calibration sequences from .npy or .npz (key `x`), checked against the model's input.
    A model with several inputs reads a .npz with one array per input, keyed by its signature
    name (x0, x1, ...): [N, T, D] for a sequence input, [N, F] for side features."""
    path = Path(path)
    if len(ms.inputs) > 1:
        return _load_named(path, ms, what)
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


def _load_named(path: Path, ms: ModelSpec, what: str) -> Named:
    arrays = load_arrays(path, what)
    want = ", ".join(f"'{io.name}' {_shape_text(io)}" for io in ms.inputs)
    out: dict[str, np.ndarray] = {}
    for io in ms.inputs:
        if io.name not in arrays:
            have = ", ".join(arrays) or "none"
            raise BadInputError(
                f"{path}: {what} data has no array '{io.name}' (model input '{io.keras_name}'); "
                f"a model with {len(ms.inputs)} inputs needs a .npz with {want} (arrays: {have})"
            )
        x = arrays[io.name]
        if x.ndim != len(io.shape) + 1 or tuple(x.shape[1:]) != io.shape:
            raise BadInputError(
                f"{path}: {what} array '{io.name}' (model input '{io.keras_name}') has shape "
                f"{tuple(x.shape)}, the model needs {_shape_text(io)}"
            )
        if x.dtype.kind != "f":
            raise BadInputError(
                f"{path}: {what} array '{io.name}' must be floating point (got {x.dtype})"
            )
        if len(x) == 0:
            raise BadInputError(f"{path}: {what} array '{io.name}' is empty")
        if not np.isfinite(x).all():
            raise BadInputError(f"{path}: {what} array '{io.name}' contains NaN or inf")
        out[io.name] = x.astype(np.float32)
    sizes = {k: len(v) for k, v in out.items()}
    if len(set(sizes.values())) > 1:
        raise BadInputError(
            f"{path}: {what} arrays have different numbers of samples "
            + ", ".join(f"{k}: {n}" for k, n in sizes.items())
        )
    return Named(out)


def _shape_text(io: IOSpec) -> str:
    return "(N, " + ", ".join(map(str, io.shape)) + ")"


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


def synthetic_inputs(ms: ModelSpec, n: int, seed: int) -> np.ndarray | Named:
    """Seeded inputs shaped like the model's, for parity checks without user data."""
    rng = np.random.default_rng(seed)
    if len(ms.inputs) > 1:
        return Named(
            {io.name: rng.standard_normal((n, *io.shape)).astype(np.float32) for io in ms.inputs}
        )
    if ms.token_input:
        vocab = ms.layers[0].config["input_dim"]
        return rng.integers(0, vocab, size=(n, ms.seq_len)).astype(np.int32)
    return rng.standard_normal((n, ms.seq_len, ms.in_dim)).astype(np.float32)


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
    if len(ms.inputs) > 1:
        raise BadInputError(
            f"{path}: --calibration-stream is not supported for a model with several inputs"
        )
    x = load_array(path, "calibration stream", first_if_missing=True)
    want = 1 if ms.token_input else 2
    if x.ndim != want or (not ms.token_input and x.shape[1] != ms.in_dim) or len(x) == 0:
        need = "(L,) token ids" if ms.token_input else f"(L, {ms.in_dim})"
        raise BadInputError(f"{path}: calibration stream has shape {tuple(x.shape)}, need {need}")
    if not ms.token_input and (x.dtype.kind != "f" or not np.isfinite(x).all()):
        raise BadInputError(f"{path}: calibration stream must be finite floating point")
    return x.astype(np.int32 if ms.token_input else np.float32)


def _stream_is_deployment(ms: ModelSpec, cfg: ConvertConfig) -> bool:
    """Whether the step model is meant to run across windows without a reset: many-to-many
    outputs, a stateful layer, or a calibration stream given by the user."""
    stateful = any(s.stateful for _k, s, _st in ms.state_layout())
    return (
        ms.output_kind == OutputKind.MANY_TO_MANY
        or stateful
        or getattr(cfg, "calibration_stream", None) is not None
    )
