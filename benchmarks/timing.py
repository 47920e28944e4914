"""Timing helpers: warm up, then median/min/max of per-call time over repeated batches."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Stats:
    """Per-call latency in microseconds over `repeats` batches of `batch` calls each."""

    median_us: float
    min_us: float
    max_us: float
    repeats: int
    batch: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Budget:
    """How hard to measure: warm-up calls, batches, and the wall time aimed at per batch."""

    warmup: int = 50
    repeats: int = 15
    batch_seconds: float = 0.02
    max_batch: int = 5000


def measure(fn: Callable[[], Any], budget: Budget) -> Stats:
    """Time `fn()`: warm up, size batches to ~budget.batch_seconds, report per-call stats.

    Batches (rather than timing single calls) keep the timer's own cost out of sub-microsecond
    loops; the median over batches is robust to the other users sharing this machine.
    """
    for _ in range(budget.warmup):
        fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-7)
    batch = int(min(budget.max_batch, max(1, budget.batch_seconds / one)))
    per_call: list[float] = []
    for _ in range(budget.repeats):
        t0 = time.perf_counter()
        for _ in range(batch):
            fn()
        per_call.append((time.perf_counter() - t0) / batch * 1e6)
    return Stats(
        median_us=statistics.median(per_call),
        min_us=min(per_call),
        max_us=max(per_call),
        repeats=budget.repeats,
        batch=batch,
    )


def stats_from_samples(samples_us: list[float], batch: int = 1) -> Stats:
    """Stats from externally timed samples (e.g. a native harness's per-repeat figures)."""
    return Stats(
        median_us=statistics.median(samples_us),
        min_us=min(samples_us),
        max_us=max(samples_us),
        repeats=len(samples_us),
        batch=batch,
    )
