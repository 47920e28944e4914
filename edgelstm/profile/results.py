"""What `edgelstm profile` measures: the result rows, their latency statistics, the options."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError

Progress = Callable[[str], None]


@dataclass
class LatencyStats:
    """Statistics over timed runs, in microseconds."""

    runs: int
    min_us: float
    p50_us: float
    p90_us: float
    p99_us: float
    max_us: float
    mean_us: float
    std_us: float

    @classmethod
    def from_ns(cls, samples_ns: np.ndarray) -> LatencyStats:
        us = np.asarray(samples_ns, np.float64) / 1e3
        if us.size == 0:
            raise BadInputError("--runs must be at least 1")
        p50, p90, p99 = np.percentile(us, [50, 90, 99])
        return cls(
            runs=int(us.size),
            min_us=float(us.min()),
            p50_us=float(p50),
            p90_us=float(p90),
            p99_us=float(p99),
            max_us=float(us.max()),
            mean_us=float(us.mean()),
            std_us=float(us.std()),
        )


@dataclass
class ProfileResult:
    """One model on one runtime."""

    model: str
    runtime: str
    variant: str = ""
    threads: int | None = None
    xnnpack: bool | None = None
    quantization: str = ""
    seq_len: int | None = None
    size_bytes: int = 0
    macs_per_invoke: int = 0
    init_ms: float = 0.0
    first_invoke_us: float = 0.0
    latency: LatencyStats | None = None  # per invoke (a step, or a whole sequence)
    call: LatencyStats | None = None  # per application call, I/O conversion included
    per_step_p50_us: float = 0.0
    per_step_mean_us: float = 0.0
    chunked_per_step_us: float | None = None  # native: push_many's C call ÷ steps per chunk
    gmacs_per_s: float = 0.0
    memory: dict[str, Any] = field(default_factory=dict)
    accuracy: float | None = None
    accuracy_samples: int = 0
    accuracy_note: str = ""
    notes: list[str] = field(default_factory=list)
    error: str = ""
    samples_us: list[float] = field(default_factory=list, repr=False)

    @property
    def label(self) -> str:
        return f"{Path(self.model).name} [{self.runtime}]"

    def to_dict(self, samples: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not samples:
            d.pop("samples_us")
        return d


@dataclass
class ProfileConfig:
    """Options of `edgelstm profile` (the CLI maps its flags onto this)."""

    runtimes: list[str] = field(default_factory=lambda: ["auto"])
    threads: int | None = 1
    xnnpack: bool | None = None  # None: the runtime's default (on in LiteRT/TF)
    warmup: int = 20
    runs: int = 200
    data: str | None = None
    max_eval: int = 1000  # sequences evaluated for accuracy at most
    seed: int = 0
