"""Seeded data generators for the zoo recipes (nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Generator = Callable[..., tuple[np.ndarray, np.ndarray]]
GENERATORS: dict[str, Generator] = {}


def generator(name: str) -> Callable[[Generator], Generator]:
    def wrap(fn: Generator) -> Generator:
        GENERATORS[name] = fn
        return fn

    return wrap


@generator("echo")
def echo(n: int, seq_len: int, seed: int, delay: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Random bits; y[t] = x[t - delay]. Each sequence is a window of one long stream, so the
    first `delay` targets of a window depend on bits before it: they are given as -1 (unscored)."""
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, 2, size=n * seq_len + delay).astype(np.float32)
    x = stream[delay:].reshape(n, seq_len, 1)
    y = stream[:-delay].reshape(n, seq_len, 1).copy()
    y[:, :delay] = -1.0  # the model cannot know bits from before its window
    return x, y
