"""edgelstm.arrays: the one loader of the user's .npy/.npz files and its messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgelstm.arrays import load_array, load_arrays, load_xy
from edgelstm.errors import BadInputError


def test_npy_reads_as_x_and_npz_by_name(tmp_path: Path) -> None:
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.save(tmp_path / "a.npy", x)
    np.savez(tmp_path / "b.npz", x=x, y=np.arange(3))
    assert list(load_arrays(tmp_path / "a.npy")) == ["x"]
    np.testing.assert_array_equal(load_array(tmp_path / "a.npy"), x)
    got_x, got_y = load_xy(tmp_path / "b.npz")
    np.testing.assert_array_equal(got_x, x)
    np.testing.assert_array_equal(got_y, np.arange(3))
    assert load_xy(tmp_path / "a.npy")[1] is None


def test_first_array_stands_in_only_when_asked(tmp_path: Path) -> None:
    np.savez(tmp_path / "s.npz", stream=np.ones(5), other=np.zeros(2))
    np.testing.assert_array_equal(load_array(tmp_path / "s.npz", first_if_missing=True), np.ones(5))
    with pytest.raises(
        BadInputError, match=r"s\.npz: cal has no array 'x' \(arrays: stream, other\)"
    ):
        load_array(tmp_path / "s.npz", "cal")


BAD = {
    "missing": "data file not found",
    "directory": "data path is not a file",
    "text": r"not a readable \.npy/\.npz file \(ValueError\)",
    "truncated": r"not a readable \.npy/\.npz file",
    "pickled": r"not a readable \.npy/\.npz file \(ValueError\)",
    "pickled_in_npz": r"not a readable \.npy/\.npz file \(ValueError\)",
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_files_are_one_line_input_errors(tmp_path: Path, case: str) -> None:
    p = tmp_path / "f.npz"
    if case == "directory":
        p.mkdir()
    elif case == "text":
        p.write_text("x,y\n1,2\n")
    elif case == "truncated":
        np.savez(p, x=np.ones((50, 50)))
        p.write_bytes(p.read_bytes()[:200])
    elif case == "pickled":
        np.save(tmp_path / "f.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
        p = tmp_path / "f.npy"
    elif case == "pickled_in_npz":
        np.savez(p, x=np.array([{"a": 1}], dtype=object))
    with pytest.raises(BadInputError, match=BAD[case]) as err:
        load_arrays(p)
    assert "\n" not in str(err.value) and str(p) in str(err.value)
