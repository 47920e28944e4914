"""Parity of converted artifacts against the source Keras model, run in LiteRT.

Bounds (max abs error over all outputs, as a fraction of the reference outputs' range where noted)
are the documented contract of `edgelstm convert`; exceeding one fails the conversion unless the
user passes --no-verify-fail.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgelstm.arrays import Named
from edgelstm.runtime.litert import LiteRTRunner
from edgelstm.tflite_info import TFLiteInfo
from edgelstm.types import OutputKind, Parity, Quantization, TensorInfo, Variant

# Absolute bound for float; for the rest, a fraction of the reference range (at least 1.0 wide).
PARITY_BOUNDS: dict[Quantization, tuple[str, float]] = {
    Quantization.FLOAT: ("abs", 1e-4),
    Quantization.FLOAT16: ("range", 2e-2),
    Quantization.DYNAMIC: ("range", 5e-2),
    Quantization.INT16X8: ("range", 2e-2),
    Quantization.INT8: ("range", 1e-1),
}


def bound_for(quant: Quantization, reference: np.ndarray) -> float:
    kind, value = PARITY_BOUNDS[quant]
    if kind == "abs":
        return value
    span = float(np.max(reference) - np.min(reference)) if reference.size else 1.0
    return value * max(span, 1.0)


def run_sequence(model: bytes, info: TFLiteInfo, xs: np.ndarray | Named) -> np.ndarray | Named:
    """Outputs for each sequence, resetting the fused LSTM's variable state in between. Several
    inputs (Named, by signature name) give Named outputs, by signature name."""
    runner = LiteRTRunner(model, info)
    if isinstance(xs, Named) or len(info.outputs) > 1:
        many = []
        for x in xs if isinstance(xs, Named) else Named({"x": xs}):
            runner.reset()
            res = runner.invoke({k: v[None] for k, v in x.arrays.items()})
            many.append({t.name: res[t.name][0] for t in info.outputs})
        return Named({t.name: np.stack([m[t.name] for m in many]) for t in info.outputs})
    outs = []
    for x in xs:
        runner.reset()
        outs.append(runner.invoke({"x": x[None]})["y"][0])
    return np.stack(outs)


def run_step(
    model: bytes,
    info: TFLiteInfo,
    xs: np.ndarray | Named,
    token_input: bool,
    mask: np.ndarray | None = None,
) -> np.ndarray | Named:
    """Outputs at every step [N, T, ...], state carried step to step and reset per sequence.

    Masked steps (`mask[n, t]` False) are skipped, as the manifest tells deployers to: the output
    there repeats the last unmasked one (zeros before any). With several inputs or outputs, Named
    in and out: a side-feature input [N, F] is fed at every step ([N, T, F]: one row per step)."""
    if isinstance(xs, Named) or len(info.outputs) - len(info.states()) > 1:
        return _run_step_named(model, info, xs)
    runner = LiteRTRunner(model, info)
    states = info.states()
    outs = []
    for n, seq in enumerate(xs):
        state_vals = {s.input: np.full(s.shape, s.reset_value, np.float64) for s in states}
        ys: list[np.ndarray] = []
        y_last: np.ndarray | None = None
        for t in range(seq.shape[0]):
            if mask is not None and not mask[n, t]:
                ys.append(y_last if y_last is not None else None)  # type: ignore[arg-type]
                continue
            x = seq[t : t + 1].reshape(1) if token_input else seq[t : t + 1]
            res = runner.invoke({"x": x, **state_vals})
            for s in states:
                state_vals[s.input] = res[s.output]
            y_last = res["y"][0]
            ys.append(y_last)
        shape = next((y.shape for y in ys if y is not None), None)
        if shape is None:  # every step masked: nothing was run
            shape = tuple(next(t.shape for t in info.outputs if t.name == "y")[1:])
        outs.append(np.stack([np.zeros(shape) if y is None else y for y in ys]))
    return np.stack(outs)


def _run_step_named(model: bytes, info: TFLiteInfo, xs: np.ndarray | Named) -> Named:
    runner = LiteRTRunner(model, info)
    states = info.states()
    state_ins = {s.input for s in states}
    state_outs = {s.output for s in states}
    x_names = [t.name for t in info.inputs if t.name not in state_ins]
    y_names = [t.name for t in info.outputs if t.name not in state_outs]
    xs = xs if isinstance(xs, Named) else Named({x_names[0]: xs})
    steps = max(v.shape[1] for v in xs.arrays.values() if v.ndim >= 3)
    outs: dict[str, list[np.ndarray]] = {n: [] for n in y_names}
    for seq in xs:
        state_vals = {s.input: np.full(s.shape, s.reset_value, np.float64) for s in states}
        ys: dict[str, list[np.ndarray]] = {n: [] for n in y_names}
        for t in range(steps):
            feed = {
                n: (seq.arrays[n][t : t + 1] if seq.arrays[n].ndim >= 2 else seq.arrays[n][None])
                for n in x_names
            }
            res = runner.invoke({**feed, **state_vals})
            for s in states:
                state_vals[s.input] = res[s.output]
            for n in y_names:
                ys[n].append(res[n][0])
        for n in y_names:
            outs[n].append(np.stack(ys[n]))
    return Named({n: np.stack(v) for n, v in outs.items()})


def run_step_stream(
    model: bytes, info: TFLiteInfo, stream: np.ndarray | Named, token_input: bool
) -> np.ndarray | Named:
    """Outputs [L, ...] of one long stream, state carried across the whole of it (never reset):
    how a step model is deployed."""
    if isinstance(stream, Named):
        return run_step(model, info, stream.map(lambda v: v[None]), token_input)[0]
    return run_step(model, info, stream[None], token_input)[0]


def keras_reference(
    model: Any,
    xs: np.ndarray | Named,
    progress: Callable[[str], None] | None = None,
    chunk: int = 32,
    names: list[str] | None = None,
) -> np.ndarray | Named:
    """The source model's outputs. Stateful models: one sequence at a time (states reset each
    time); others in batches of `chunk`. Progress every few seconds on long runs. With several
    inputs (Named, in the model's input order) or outputs (`names`, in its output order), the
    outputs are Named."""
    if names is not None and not isinstance(xs, Named):
        xs = Named({"x": xs})
    names = names or ["y"]
    stateful = any(getattr(layer, "stateful", False) for layer in getattr(model, "layers", []))
    step = 1 if stateful else chunk
    shape = getattr(model, "input_shape", None)
    shape = shape[0] if isinstance(shape, list) else shape
    batch = int(shape[0]) if shape and shape[0] else 1
    outs = []
    start = last = time.monotonic()
    for i in range(0, len(xs), step):
        if stateful:
            for layer in model.layers:
                for meth in ("reset_states", "reset_state"):
                    if getattr(layer, "stateful", False) and hasattr(layer, meth):
                        getattr(layer, meth)()
                        break
        x = xs[i : i + step]
        if stateful and batch > 1:
            # A stateful layer's state is sized for its fixed batch: run the sequence in every
            # row (rows are independent) and keep the first.
            x = np.repeat(x, batch, axis=0)
        if isinstance(x, Named):
            args = [x.arrays[n] for n in x.names]
            got = model(args if len(args) > 1 else args[0], training=False)
            got = got if isinstance(got, (list, tuple)) else [got]
            outs.append(
                Named({n: np.asarray(g, np.float64) for n, g in zip(names, got, strict=True)})
            )
        else:
            y = np.asarray(model(x, training=False))[: len(xs[i : i + step])]
            outs.append(y.astype(np.float64))
        now = time.monotonic()
        if progress and now - last > 3.0:
            done = min(i + step, len(xs))
            eta = (now - start) / done * (len(xs) - done)
            progress(f"reference outputs: {done}/{len(xs)} sequences (~{eta:.0f} s left)")
            last = now
    if outs and isinstance(outs[0], Named):
        return Named.concat(outs)
    return np.concatenate(outs)


def float_stream_reference(ms: Any, stream: np.ndarray) -> np.ndarray:
    """Outputs [L, ...] of the float cell (float64 NumPy, the math the step model lowers) over
    one long stream: the reference a streamed step model is compared with."""
    from edgelstm.convert.build import run_step_numpy

    return run_step_numpy(ms, stream)[0]


# --- held-out data -------------------------------------------------------------------------------

# A split needs at least this many sequences; fewer and held-out inputs are generated instead.
MIN_SPLIT = 8


def input_mask(ms: Any, xs: np.ndarray) -> np.ndarray | None:
    """[N, T] True where a step is *not* masked, for Embedding(mask_zero=True) or a leading
    Masking layer; None when the model masks nothing (or has several inputs: masking refused)."""
    if isinstance(xs, Named) or not ms.layers or not ms.handlers[0].starts_mask(ms.layers[0]):
        return None
    return ms.handlers[0].step_mask(ms.layers[0], np.asarray(xs), None)[..., 0] != 0


def matched_inputs(ms: Any, like: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Seeded inputs with the statistics of `like`: per-feature mean and std (floats), the
    empirical token frequencies (token ids); per input for several (Named)."""
    if isinstance(like, Named):
        out = {}
        for k, (name, v) in enumerate(like.arrays.items()):
            flat = v.reshape(-1, v.shape[-1]).astype(np.float64)
            rng = np.random.default_rng(seed + 7919 + k)
            noise = rng.standard_normal((n, *v.shape[1:]))
            out[name] = (flat.mean(0) + flat.std(0) * noise).astype(np.float32)
        return Named(out)
    rng = np.random.default_rng(seed + 7919)
    shape = (n, *like.shape[1:])
    if ms.token_input:
        ids, counts = np.unique(like, return_counts=True)
        return rng.choice(ids, size=shape, p=counts / counts.sum()).astype(np.int32)
    flat = like.reshape(-1, like.shape[-1]).astype(np.float64)
    mean, std = flat.mean(0), flat.std(0)
    return (mean + std * rng.standard_normal(shape)).astype(np.float32)


def split_heldout(
    calib: np.ndarray, verify_samples: int, seed: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """Deterministic split of a calibration set: (calibration part, held-out part).

    Up to a quarter of the sequences (at most `verify_samples`) are held out, chosen by a seeded
    permutation; the held-out part is None when the file is too small to split."""
    if len(calib) < MIN_SPLIT:
        return calib, None
    held = min(verify_samples, len(calib) // 4)
    order = np.random.default_rng(seed).permutation(len(calib))
    keep = np.sort(order[held:])
    out = np.sort(order[:held])
    return calib[keep], calib[out]


def is_degenerate(x: np.ndarray) -> bool:
    """All values equal: quantization ranges calibrated on it cover one point."""
    if isinstance(x, Named):
        return all(is_degenerate(v) for v in x.arrays.values())
    return bool(x.size == 0 or np.ptp(x) == 0)


def calibration_warnings(x: np.ndarray, requested: int, token_input: bool) -> list[str]:
    """Why the calibration data may not represent real inputs (constant, dead features, few)."""
    if isinstance(x, Named):
        return [
            f"input '{name}': {w}"
            for name, v in x.arrays.items()
            for w in calibration_warnings(v, requested, token_input)
        ]
    warn = []
    if is_degenerate(x):
        warn.append(
            f"calibration data is constant (every value {x.flat[0]!r}): quantized ranges "
            "calibrated on it cover one point; held-out parity uses seeded standard-normal inputs"
        )
    elif not token_input:
        flat = x.reshape(-1, x.shape[-1])
        dead = np.flatnonzero(np.ptp(flat, axis=0) == 0)
        if len(dead):
            warn.append(
                f"calibration data: feature(s) {', '.join(map(str, dead[:8]))} have zero range "
                f"(constant at {flat[0, dead[0]]:.3g})"
            )
    if len(x) * 4 < requested:
        warn.append(
            f"calibration data has {len(x)} sequence(s), far fewer than --calibration-samples "
            f"{requested}: ranges may not cover real inputs"
        )
    return warn


def memory_needed(ms: Any, n: int, out_per_seq: int, quantizations: int) -> int:
    """Bytes the parity check holds at once for `n` sequences: inputs (float32), the float64
    reference and one float64 result per artifact."""
    t = ms.seq_len or 1
    per_in = t * (1 if ms.token_input else (ms.in_dim or 1)) * 4
    return int(n * (per_in + out_per_seq * 8 * (1 + quantizations) * 2))


def available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def compare(
    reference: np.ndarray,
    got: np.ndarray,
    quant: Quantization,
    variant: Variant,
    output_kind: OutputKind,
    classifier: bool,
    mask: np.ndarray | None = None,
) -> Parity:
    """Max/mean abs error, cosine and (for classifiers) argmax agreement.

    With `mask` ([N, T], True = real step) a many-to-many comparison covers only the unmasked
    positions: what a masked layer outputs at padded steps is documented as meaningless.

    Several outputs (Named): each is compared with its own bound; the figures are the output
    that is worst against its bound (named in `note`), every output's in `outputs`."""
    if isinstance(reference, Named):
        return _compare_named(reference, got, quant, variant, classifier, mask)
    if variant == Variant.STEP and output_kind == OutputKind.MANY_TO_ONE:
        got = got[:, -1]
    got = got.reshape(reference.shape)
    note = ""
    if mask is not None and reference.ndim >= 2 and reference.shape[:2] == mask.shape:
        reference, got = reference[mask], got[mask]
        note = f"masked steps not compared ({int((~mask).sum())} of {mask.size})"
    err = np.abs(got - reference)
    bound = bound_for(quant, reference)
    a, b = reference.ravel(), got.ravel()
    denom = float(np.linalg.norm(a) * np.linalg.norm(b))
    cosine = float(a @ b / denom) if denom else 1.0
    agreement = None
    if classifier and got.size:
        agreement = float(np.mean(np.argmax(got, -1) == np.argmax(reference, -1)))
    max_abs = float(err.max()) if err.size else 0.0
    return Parity(
        reference="keras",
        runtime="litert",
        samples=int(mask.shape[0]) if note else int(reference.shape[0]),
        max_abs=max_abs,
        mean_abs=float(err.mean()) if err.size else 0.0,
        bound=bound,
        passed=bool(max_abs <= bound),
        argmax_agreement=agreement,
        cosine=cosine,
        note=note,
    )


def _compare_named(
    reference: Named,
    got: Named,
    quant: Quantization,
    variant: Variant,
    classifier: bool,
    mask: np.ndarray | None,
) -> Parity:
    per = {}
    for name, ref in reference.arrays.items():
        # a many-to-one output of a step model: the last step is the answer
        g = got.arrays[name]
        kind = OutputKind.MANY_TO_ONE if g.ndim > ref.ndim else OutputKind.MANY_TO_MANY
        per[name] = compare(ref, g, quant, variant, kind, classifier, mask)
    worst = max(per, key=lambda n: per[n].max_abs / per[n].bound if per[n].bound else 0.0)
    p = per[worst]
    p.passed = all(q.passed for q in per.values())
    p.note = "; ".join(x for x in (f"worst output {worst}", p.note) if x)
    p.outputs = {
        n: {"max_abs": q.max_abs, "mean_abs": q.mean_abs, "bound": q.bound, "passed": q.passed}
        for n, q in per.items()
    }
    return p


# --- the verification plan of one convert run ----------------------------------------------------

MIN_STREAM = 64  # steps: a streamed step model is checked over at least this many
MAX_STREAM = 4096  # ... and at most this many (the float reference runs step by step)


@dataclass
class VerifyPlan:
    """What every artifact of one run is verified on."""

    x: np.ndarray  # held-out sequences: the bound applies here
    source: str  # where they come from, for the manifest and the CLI
    reference: np.ndarray | None = None
    mask: np.ndarray | None = None
    cal_x: np.ndarray | None = None  # calibration sequences, reported beside the held-out figure
    cal_reference: np.ndarray | None = None
    cal_mask: np.ndarray | None = None
    stream: np.ndarray | None = None  # [L, ...]: held-out windows as one stream (step models)
    stream_reference: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def concat_stream(ms: Any, xs: np.ndarray, limit: int = MAX_STREAM) -> np.ndarray:
    """Windows [N, T, ...] end to end as one stream [L, ...], masked steps dropped (deployed step
    models skip them), at most `limit` steps. Named (several inputs): side inputs [N, F] are
    repeated per step of their window, [L, F]."""
    if isinstance(xs, Named):
        steps = max(v.shape[1] for v in xs.arrays.values() if v.ndim >= 3)
        return xs.map(
            lambda v: (v.reshape(-1, *v.shape[2:]) if v.ndim >= 3 else np.repeat(v, steps, 0))[
                :limit
            ]
        )
    mask = input_mask(ms, xs)
    flat = xs.reshape(-1, *xs.shape[2:])
    if mask is not None:
        flat = flat[mask.reshape(-1)]
    return flat[:limit]


def stream_inputs(ms: Any, held: np.ndarray, seed: int) -> np.ndarray:
    """The held-out windows as one stream, topped up with matched seeded windows when short."""
    xs = held
    t = ms.seq_len if isinstance(held, Named) else held.shape[1]
    steps = len(held) * t
    if steps < MIN_STREAM:
        extra = -(-(MIN_STREAM - steps) // t)
        more = matched_inputs(ms, held, extra, seed + 1)
        xs = Named.concat([held, more]) if isinstance(held, Named) else np.concatenate([held, more])
    return concat_stream(ms, xs)


def measure(
    plan: VerifyPlan,
    run: Callable[[np.ndarray], np.ndarray],
    quant: Quantization,
    variant: Variant,
    output_kind: OutputKind,
    classifier: bool,
    run_stream: Callable[[np.ndarray], np.ndarray] | None = None,
    stream_gates: bool = True,
) -> Parity:
    """Parity on the held-out data (which decides `passed`), the calibration-set figures beside
    it, and for step models the streamed check. The streamed check must pass too when streaming
    across windows is how the model is deployed (`stream_gates`: many-to-many or stateful models,
    or a --calibration-stream); a many-to-one model over fixed windows is deployed with a reset
    per window, so its never-reset stream is reported, not a bound."""
    assert plan.reference is not None
    p = compare(plan.reference, run(plan.x), quant, variant, output_kind, classifier, plan.mask)
    p.data = plan.source
    if plan.cal_x is not None and plan.cal_reference is not None:
        c = compare(
            plan.cal_reference,
            run(plan.cal_x),
            quant,
            variant,
            output_kind,
            classifier,
            plan.cal_mask,
        )
        p.calibration_set = {"samples": c.samples, "max_abs": c.max_abs, "mean_abs": c.mean_abs}
    if run_stream is not None and plan.stream is not None and plan.stream_reference is not None:
        ref = plan.stream_reference
        got = run_stream(plan.stream)
        if isinstance(ref, Named):  # several outputs: the worst against its bound
            rows = []
            for name, r in ref.arrays.items():
                e = np.abs(got.arrays[name].reshape(r.shape) - r)
                rows.append((e, bound_for(quant, r)))
            err, bound = max(rows, key=lambda eb: (eb[0].max() if eb[0].size else 0.0) / eb[1])
        else:
            err = np.abs(got.reshape(ref.shape) - ref)
            bound = bound_for(quant, ref)
        max_abs = float(err.max()) if err.size else 0.0
        p.stream = {
            "steps": len(plan.stream),
            "max_abs": max_abs,
            "mean_abs": float(err.mean()) if err.size else 0.0,
            "bound": bound,
            "passed": bool(max_abs <= bound),
            "gates": stream_gates,
            "reference": "float cell (float64), state carried across windows",
        }
        if stream_gates:
            p.passed = p.passed and p.stream["passed"]
    return p


def failure_text(file: str, p: Parity, quant: Quantization) -> str:
    """One clause naming how an artifact failed its bound."""
    parts = []
    if p.max_abs > p.bound:
        parts.append(f"max abs error {p.max_abs:.3g} on {p.data or 'the verification data'}")
    if p.stream and not p.stream["passed"] and p.stream.get("gates", True):
        parts.append(
            f"max abs error {p.stream['max_abs']:.3g} streaming {p.stream['steps']} steps across "
            "windows"
        )
    why = f" ({p.note})" if p.note else ""
    return f"{file}: {' and '.join(parts)} exceeds the bound {p.bound:.3g} for {quant.value}{why}"


def output_saturation(reference: np.ndarray, out: TensorInfo, max_abs: float) -> str:
    """Why an integer artifact missed its bound when the reference outputs reach past what its
    output tensor can hold (a range the converter takes from the calibration data alone), or ""
    when that is not most of the error."""
    if not out.quantized or out.dtype not in ("int8", "int16") or not reference.size:
        return ""
    lim = np.iinfo(out.dtype)
    lo, hi = (lim.min - out.zero_point) * out.scale, (lim.max - out.zero_point) * out.scale
    r_lo, r_hi = float(reference.min()), float(reference.max())
    if max(lo - r_lo, r_hi - hi) < 0.5 * max_abs:
        return ""
    return (
        f"the reference outputs span [{r_lo:.3g}, {r_hi:.3g}], past the {out.dtype} output "
        f"range [{lo:.3g}, {hi:.3g}] calibrated on the calibration data: calibrate on data that "
        "covers the outputs' full range"
    )
