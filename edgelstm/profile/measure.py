"""The measurement of one model on one runtime: load, time, memory, accuracy."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError
from edgelstm.profile.inputs import accuracy, check_data, sequence_shape, synthetic_x
from edgelstm.profile.memory import _peak_rss_kb, _reset_peak_rss, _status_kb
from edgelstm.profile.results import LatencyStats, ProfileConfig, ProfileResult, Progress
from edgelstm.runtime.backends import Runtime, TFLMBackend, resolve_runtime
from edgelstm.runtime.stream import (
    SequenceRunner,
    StepRunner,
    manifest_artifact,
    model_variant,
)
from edgelstm.tflite_info import read_tflite
from edgelstm.types import STEP_INPUT, Variant


def profile_model(
    model: str | Path,
    runtime: str | Runtime | None,
    cfg: ProfileConfig,
    data: tuple[np.ndarray, np.ndarray | None] | None = None,
    progress: Progress = lambda _m: None,
) -> ProfileResult:
    """Load `model` on `runtime`, time it, measure memory and (with labelled data) accuracy."""
    path = Path(model)
    info = read_tflite(path)
    rt = resolve_runtime(runtime)
    variant = model_variant(info)
    art = manifest_artifact(path)
    x_info = next((t for t in info.inputs if t.name == STEP_INPUT), info.inputs[0])
    quant = art.quantization.value if art else ("int8" if x_info.scale else x_info.dtype)
    res = ProfileResult(
        model=str(path),
        runtime=rt.value,
        variant=variant.value,
        quantization=quant,
        size_bytes=info.size_bytes,
        macs_per_invoke=info.macs,
    )
    if cfg.runs < 1 or cfg.warmup < 0:
        raise BadInputError("--runs must be at least 1 and --warmup at least 0")
    seq_len = x_info.shape[1] if variant == Variant.SEQUENCE and len(x_info.shape) > 1 else None
    if variant == Variant.STEP and data is not None:
        seq_len = int(data[0].shape[1]) if data[0].ndim >= 2 else None
    res.seq_len = seq_len
    shape = sequence_shape(info, variant, seq_len)

    if data is not None:
        x_all = check_data(data[0], shape, variant, cfg.data or "data")
        labels = data[1]
    else:
        x_all, labels = synthetic_x(info, shape, 8, cfg.seed), None

    rss_reset = _reset_peak_rss()
    rss_before = _status_kb("VmRSS") or 0
    progress(f"{res.label}: loading")
    t0 = time.perf_counter()
    if variant == Variant.STEP:
        runner: StepRunner | SequenceRunner = StepRunner(
            path, rt, threads=cfg.threads, xnnpack=cfg.xnnpack
        )
    else:
        runner = SequenceRunner(path, rt, threads=cfg.threads, xnnpack=cfg.xnnpack)
    res.init_ms = (time.perf_counter() - t0) * 1e3
    backend = runner.backend
    res.threads, res.xnnpack = backend.threads, backend.xnnpack
    res.notes.extend(backend.notes)

    # Timing inputs: step models walk through the sequences' steps, sequence models cycle them.
    if variant == Variant.STEP:
        steps = x_all.reshape(-1, *shape[1:]) if shape[1:] else x_all.reshape(-1)
        feed = [steps[i % len(steps)] for i in range(min(len(steps), 4096))]
    else:
        feed = list(x_all[: min(len(x_all), 256)])

    def one_call(i: int) -> tuple[int, int]:
        """(invoke ns, whole call ns) of the i-th call."""
        c0 = time.perf_counter_ns()
        if isinstance(runner, StepRunner):
            runner.push(feed[i % len(feed)])
            inv = runner.last_invoke_ns
        else:
            b = runner.backend
            b.reset()
            b.set_input(runner.x_info.name, feed[i % len(feed)])
            i0 = time.perf_counter_ns()
            b.invoke()
            inv = time.perf_counter_ns() - i0
            b.get_output(runner.y_info.name)
        return inv, time.perf_counter_ns() - c0

    res.first_invoke_us = one_call(0)[0] / 1e3
    progress(f"{res.label}: warm-up {cfg.warmup}, then {cfg.runs} timed runs")
    for i in range(cfg.warmup):
        one_call(i + 1)
    inv = np.empty(cfg.runs, np.int64)
    call = np.empty(cfg.runs, np.int64)
    mark = max(cfg.runs // 4, 1)
    started = time.perf_counter()
    for i in range(cfg.runs):
        inv[i], call[i] = one_call(i + 1 + cfg.warmup)
        if cfg.runs >= 1000 and (i + 1) % mark == 0 and i + 1 < cfg.runs:
            progress(
                f"{res.label}: {i + 1}/{cfg.runs} runs ({time.perf_counter() - started:.1f} s)"
            )
    res.latency = LatencyStats.from_ns(inv)
    res.call = LatencyStats.from_ns(call)
    res.samples_us = (inv / 1e3).tolist()
    per = res.seq_len if variant == Variant.SEQUENCE and res.seq_len else 1
    res.per_step_p50_us = res.latency.p50_us / per
    res.per_step_mean_us = res.latency.mean_us / per
    if isinstance(runner, StepRunner) and hasattr(runner.backend, "run_chunk"):
        res.chunked_per_step_us = _chunked_per_step_us(runner, feed, cfg.runs)
        res.notes.append(
            f"chunked push_many ({CHUNK} steps per C call): {res.chunked_per_step_us:.3g} µs/step "
            f"vs {res.per_step_p50_us:.3g} µs per single push"
        )
    if res.macs_per_invoke and res.latency.p50_us > 0:
        res.gmacs_per_s = res.macs_per_invoke / (res.latency.p50_us * 1e-6) / 1e9

    res.memory = {
        "model_bytes": info.size_bytes,
        "rss_before_load_kb": rss_before,
        "peak_rss_kb": _peak_rss_kb(),
        "peak_rss_scope": "load + runs" if rss_reset else "process lifetime",
        "note": "RSS is process-wide (Python, NumPy and the runtime library included)",
    }
    if isinstance(backend, TFLMBackend):
        res.memory.update(backend.arena_used())
        res.memory["arena_given_bytes"] = backend.arena_size
        # The recording allocator's total leaves out kernel scratch that Prepare needs (fused LSTM),
        # so also bisect the smallest arena that actually runs, in child processes.
        from edgelstm.runtime.tflm_arena import measure_arena

        progress(f"{res.label}: bisecting the minimum TFLite Micro arena")
        arena = measure_arena(Path(model).read_bytes())
        res.memory["arena_min_bytes"] = arena.min_bytes
        res.memory["arena_recommended_bytes"] = arena.recommended_bytes

    if labels is not None:
        progress(f"{res.label}: accuracy on {min(len(x_all), cfg.max_eval)} sequences")
        n = min(len(x_all), cfg.max_eval, len(labels))
        outs = np.stack([runner.run(x_all[i]) for i in range(n)])
        res.accuracy = accuracy(outs, labels[:n])
        res.accuracy_samples = n
        if n < len(x_all):
            res.accuracy_note = f"first {n} of {len(x_all)} sequences"
    elif data is not None:
        res.accuracy_note = "no labels ('y') in the data"
    return res


CHUNK = 64  # steps per push_many call when timing the chunked path


def _chunked_per_step_us(runner: StepRunner, feed: list[Any], runs: int) -> float:
    """Median over repeated chunks of push_many's C call (invoke only), per step."""
    xs = np.stack([feed[i % len(feed)] for i in range(CHUNK)])
    runner.push_many(xs)  # warm-up
    ns = []
    for _ in range(max(runs // CHUNK, 5)):
        runner.push_many(xs)
        ns.append(runner.last_invoke_ns)
    return float(np.median(ns)) / CHUNK / 1e3
