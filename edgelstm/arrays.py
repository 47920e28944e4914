"""The user's array files (.npy, .npz): one loader and one set of messages for every command.

A `.npy` file reads as one array named `x`; a `.npz` file as its named arrays, read eagerly (the
archive is closed before returning). Pickled object arrays are refused. Every problem is a
`BadInputError` naming the file: missing, not a file, unreadable, or without the array asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.errors import BadInputError


def load_arrays(path: str | Path, what: str = "data") -> dict[str, np.ndarray]:
    """Every array in `path` by name ({'x': array} for a .npy file)."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: {what} file not found")
    if not path.is_file():
        raise BadInputError(f"{path}: {what} path is not a file")
    try:
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return {"x": loaded}
        with loaded:
            return {name: loaded[name] for name in loaded.files}
    except Exception as exc:  # zip, header, pickle and I/O errors all mean the same to the user
        raise BadInputError(
            f"{path}: not a readable .npy/.npz file ({type(exc).__name__})"
        ) from None


def load_array(
    path: str | Path, what: str = "data", key: str = "x", first_if_missing: bool = False
) -> np.ndarray:
    """The array `key` of `path` (a .npy file's only array); with `first_if_missing`, a .npz
    without `key` gives its first array."""
    arrays = load_arrays(path, what)
    if key in arrays:
        return arrays[key]
    if first_if_missing and arrays:
        return next(iter(arrays.values()))
    names = ", ".join(arrays) or "none"
    raise BadInputError(f"{path}: {what} has no array '{key}' (arrays: {names})")


def load_xy(path: str | Path, what: str = "data") -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y or None): labelled data from a .npz (`x`, optional `y`) or inputs only (.npy)."""
    arrays = load_arrays(path, what)
    if "x" not in arrays:
        names = ", ".join(arrays) or "none"
        raise BadInputError(f"{path}: {what} has no array 'x' (arrays: {names})")
    return arrays["x"], arrays.get("y")


class Named:
    """Several arrays sharing their first axis (samples), one per model input or output, indexed
    and sliced together: the data of a model with several inputs or outputs, where a model with
    one has a plain ndarray. `named[i]` is sample i (an int) or a subset (a slice or indices)."""

    def __init__(self, arrays: dict[str, np.ndarray]) -> None:
        self.arrays = dict(arrays)

    def __len__(self) -> int:
        return len(next(iter(self.arrays.values())))

    def __getitem__(self, idx: object) -> Named:
        return Named({k: v[idx] for k, v in self.arrays.items()})  # type: ignore[index]

    def __iter__(self):  # type: ignore[no-untyped-def]
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return "Named(" + ", ".join(f"{k}={v.shape}" for k, v in self.arrays.items()) + ")"

    @property
    def names(self) -> list[str]:
        return list(self.arrays)

    def map(self, fn: object) -> Named:
        """The same names, each array passed through `fn`."""
        return Named({k: fn(v) for k, v in self.arrays.items()})  # type: ignore[operator]

    @staticmethod
    def concat(parts: list[Named]) -> Named:
        return Named({k: np.concatenate([p.arrays[k] for p in parts]) for k in parts[0].arrays})
