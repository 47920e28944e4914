"""Seeded data generators for the zoo recipes (nothing is downloaded).

Every generator is `fn(n, seq_len, seed, *, split="train", **recipe_args) -> (x, y)`; generators
whose data is not synthetic per seed (char-lm's corpus) use `split` to pick a disjoint region.
Extra arrays a metric needs (sensor anomaly labels) come from `extras(...)`.
"""

from __future__ import annotations

import sysconfig
from collections import Counter
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from edgelstm.errors import BadInputError

Generator = Callable[..., tuple[np.ndarray, np.ndarray]]
GENERATORS: dict[str, Generator] = {}
SPLITS = ("train", "val", "test")


def generator(name: str) -> Callable[[Generator], Generator]:
    def wrap(fn: Generator) -> Generator:
        GENERATORS[name] = fn
        return fn

    return wrap


# --- echo -----------------------------------------------------------------------------------


@generator("echo")
def echo(
    n: int, seq_len: int, seed: int, delay: int = 3, split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Random bits; y[t] = x[t - delay]. Each sequence is a window of one long stream, so the
    first `delay` targets of a window depend on bits before it: they are given as -1 (unscored)."""
    rng = np.random.default_rng(seed)
    stream = rng.integers(0, 2, size=n * seq_len + delay).astype(np.float32)
    x = stream[delay:].reshape(n, seq_len, 1)
    y = stream[:-delay].reshape(n, seq_len, 1).copy()
    y[:, :delay] = -1.0  # the model cannot know bits from before its window
    return x, y


def echo_streams(
    rows: int, length: int, seed: int, delay: int = 3
) -> tuple[np.ndarray, np.ndarray]:
    """`rows` independent bit streams of `length` steps ([rows, length, 1]); only each stream's
    first `delay` targets are unscored (-1), since the state is carried across chunks."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, size=(rows, length, 1)).astype(np.float32)
    y = np.full_like(x, -1.0)
    y[:, delay:] = x[:, :-delay]
    return x, y


# generator name -> fn(rows, length, seed, **recipe_args): long streams for TBPTT training
STREAMS: dict[str, Callable[..., tuple[np.ndarray, np.ndarray]]] = {"echo": echo_streams}


def tbptt_layout(a: np.ndarray, seq_len: int) -> np.ndarray:
    """Cut [rows, L, ...] streams into chunks laid out for truncated BPTT with carried state.

    Output row k*rows + r is chunk k of stream r, so with batch_size=rows and no shuffling every
    batch row continues the same stream as in the previous batch (what a stateful RNN needs).
    """
    rows, length = a.shape[:2]
    chunks = length // seq_len
    if chunks < 1:
        raise BadInputError(f"streams of {length} steps are shorter than one chunk ({seq_len})")
    a = a[:, : chunks * seq_len].reshape(rows, chunks, seq_len, *a.shape[2:])
    return np.swapaxes(a, 0, 1).reshape(rows * chunks, seq_len, *a.shape[3:])


# --- temporal order -------------------------------------------------------------------------

# One-hot alphabet; an all-zero row is padding (sequences are right-aligned in the window).
TO_SYMBOLS = "BEabcdXY"
TO_CLASSES = "QRSU"  # X,X / X,Y / Y,X / Y,Y
# level -> (min length, max length, t1 range, t2 range), positions 0-based with B at 0
TO_LEVELS: dict[str, tuple[int, int, tuple[int, int], tuple[int, int]]] = {
    "easy": (20, 25, (2, 6), (10, 14)),
    "hard": (100, 110, (10, 20), (50, 60)),
}


@generator("temporal_order")
def temporal_order(
    n: int, seq_len: int, seed: int, level: str = "hard", split: str = "train"
) -> tuple[np.ndarray, np.ndarray]:
    """Hochreiter & Schmidhuber's temporal-order task: class = order of the X/Y symbols.

    x [n, seq_len, 8] one-hot, left-padded with zero rows so every sequence ends (with E) at the
    last step: a many-to-one model reads its answer there. y [n] int class (Q, R, S, U).
    """
    if level not in TO_LEVELS:
        raise BadInputError(f"unknown temporal-order level '{level}' (easy, hard)")
    lo, hi, (a1, b1), (a2, b2) = TO_LEVELS[level]
    if seq_len < hi:
        raise BadInputError(f"temporal-order {level} needs seq_len >= {hi}, got {seq_len}")
    rng = np.random.default_rng(seed)
    x = np.zeros((n, seq_len, len(TO_SYMBOLS)), np.float32)
    y = np.empty(n, np.int32)
    for i in range(n):
        length = int(rng.integers(lo, hi + 1))
        sym = rng.integers(2, 6, size=length)  # a, b, c, d
        sym[0], sym[-1] = 0, 1  # B ... E
        t1, t2 = int(rng.integers(a1, b1 + 1)), int(rng.integers(a2, b2 + 1))
        v1, v2 = rng.integers(0, 2, size=2)
        sym[t1], sym[t2] = 6 + v1, 6 + v2
        y[i] = 2 * v1 + v2
        x[i, np.arange(seq_len - length, seq_len), sym] = 1.0
    return x, y


def decode_temporal_order(x: np.ndarray) -> str:
    """One sequence back to its symbols (padding dropped), e.g. 'BacXdY...E'."""
    rows = x[x.sum(-1) > 0]
    return "".join(TO_SYMBOLS[i] for i in rows.argmax(-1))


# --- char-lm --------------------------------------------------------------------------------

OOV = "\x00"  # vocabulary slot 0: every character outside the vocabulary


def corpus_files() -> list[Path]:
    """The corpus: the Python standard library's own top-level .py files, sorted by name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in root.glob("*.py") if p.is_file())


@lru_cache(maxsize=2)
def char_corpus(max_chars: int = 2_000_000) -> str:
    """Concatenated stdlib sources (deterministic for one Python version), at most max_chars."""
    parts, total = [], 0
    for path in corpus_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    if not parts:
        raise BadInputError(f"no Python sources found under {sysconfig.get_paths()['stdlib']}")
    return "".join(parts)[:max_chars]


def build_vocab(text: str, size: int) -> list[str]:
    """OOV first, then the size-1 most frequent characters (ties broken by code point)."""
    counts = Counter(text)
    ranked = sorted(counts, key=lambda c: (-counts[c], ord(c)))
    return [OOV, *sorted(ranked[: size - 1])]


def encode(text: str, vocab: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(vocab)}
    return np.fromiter((index.get(c, 0) for c in text), np.int32, len(text))


def decode(ids: np.ndarray | list[int], vocab: list[str]) -> str:
    return "".join("?" if int(i) == 0 else vocab[int(i)] for i in ids)


def _split_range(length: int, split: str) -> tuple[int, int]:
    """train 90 %, val 5 %, test 5 % of the corpus, in that order (contiguous, disjoint)."""
    bounds = {"train": (0.0, 0.9), "val": (0.9, 0.95), "test": (0.95, 1.0)}
    if split not in bounds:
        raise BadInputError(f"unknown split '{split}' ({', '.join(SPLITS)})")
    a, b = bounds[split]
    return int(length * a), int(length * b)


@lru_cache(maxsize=4)
def char_data(vocab_size: int, max_chars: int) -> tuple[tuple[str, ...], np.ndarray]:
    """(vocabulary, encoded corpus); the vocabulary comes from the training split only."""
    text = char_corpus(max_chars)
    a, b = _split_range(len(text), "train")
    vocab = build_vocab(text[a:b], vocab_size)
    return tuple(vocab), encode(text, vocab)


@generator("char_lm")
def char_lm(
    n: int,
    seq_len: int,
    seed: int,
    vocab_size: int = 64,
    max_chars: int = 2_000_000,
    split: str = "train",
) -> tuple[np.ndarray, np.ndarray]:
    """n random windows of the split's text: x [n, T] char ids, y [n, T] the next char ids."""
    _, ids = char_data(vocab_size, max_chars)
    a, b = _split_range(len(ids), split)
    if b - a <= seq_len + 1:
        raise BadInputError(f"the {split} split has fewer than {seq_len + 2} characters")
    starts = np.random.default_rng(seed).integers(a, b - seq_len - 1, size=n)
    windows = np.stack([ids[s : s + seq_len + 1] for s in starts])
    return windows[:, :-1].copy(), windows[:, 1:].copy()


# --- sensor ---------------------------------------------------------------------------------

SENSOR_PERIODS = (24.0, 37.0, 50.0, 16.0, 29.0, 61.0)


def _sensor(
    n: int,
    seq_len: int,
    seed: int,
    channels: int,
    noise: float,
    anomaly_rate: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(x windows with anomalies, clean next step, observed next step, anomaly label)."""
    rng = np.random.default_rng(seed)
    steps = seq_len + 1
    t = np.arange(steps, dtype=np.float64)[None, :, None]
    period = np.asarray(SENSOR_PERIODS[:channels])[None, None, :]
    amp = rng.uniform(0.5, 1.5, size=(n, 1, channels))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 1, channels))
    level = rng.uniform(-0.5, 0.5, size=(n, 1, channels))
    slope = rng.uniform(-0.01, 0.01, size=(n, 1, channels))  # drift
    base = amp * np.sin(2 * np.pi * t / period + phase) + 0.3 * amp * np.sin(
        4 * np.pi * t / period + 2 * phase
    )
    clean = base + level + slope * t + rng.normal(0, noise, size=(n, steps, channels))
    # Anomalies: a spike of 4-10 noise sigmas on one channel, in the window (background, about
    # `anomaly_rate` per window) and at the forecast target (labelled, probability `anomaly_rate`).
    observed = clean.copy()
    background = rng.random((n, seq_len)) < anomaly_rate / seq_len
    for i, j in zip(*np.nonzero(background), strict=True):
        observed[i, j, rng.integers(channels)] += rng.choice([-1, 1]) * rng.uniform(4, 10) * noise
    label = (rng.random(n) < anomaly_rate).astype(np.int32)
    for i in np.nonzero(label)[0]:
        observed[i, -1, rng.integers(channels)] += rng.choice([-1, 1]) * rng.uniform(4, 10) * noise
    x = observed[:, :-1].astype(np.float32)
    return x, clean[:, -1].astype(np.float32), observed[:, -1].astype(np.float32), label


@generator("sensor")
def sensor(
    n: int,
    seq_len: int,
    seed: int,
    channels: int = 3,
    noise: float = 0.1,
    anomaly_rate: float = 0.1,
    split: str = "train",
) -> tuple[np.ndarray, np.ndarray]:
    """Multichannel periodic signals with noise, drift and spikes: x [n, T, C] -> y [n, C], the
    next step without its anomaly (the forecaster learns the normal signal)."""
    x, clean, _, _ = _sensor(n, seq_len, seed, channels, noise, anomaly_rate)
    return x, clean


def sensor_extras(
    n: int,
    seq_len: int,
    seed: int,
    channels: int = 3,
    noise: float = 0.1,
    anomaly_rate: float = 0.1,
    split: str = "train",
) -> dict[str, np.ndarray]:
    """For the same arguments as `sensor`: the observed next step and its anomaly label."""
    _, _, observed, label = _sensor(n, seq_len, seed, channels, noise, anomaly_rate)
    return {"observed": observed, "anomaly": label}


EXTRAS: dict[str, Callable[..., dict[str, np.ndarray]]] = {"sensor": sensor_extras}


def extras(name: str, n: int, seq_len: int, seed: int, **kwargs: object) -> dict[str, np.ndarray]:
    """Arrays beside (x, y) that a recipe's secondary metric needs (empty for most)."""
    fn = EXTRAS.get(name)
    return fn(n, seq_len, seed, **kwargs) if fn else {}
