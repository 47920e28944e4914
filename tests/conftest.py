"""Shared fixtures: tiny seeded Keras models saved to disk, built once per session."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

T, D = 12, 4

# `make test` installs the ARM toolchain and qemu first, then sets this: a test that would skip
# for want of them fails instead, so a broken install step cannot pass as green.
REQUIRE_TOOLCHAIN = os.environ.get("EDGELSTM_REQUIRE_TOOLCHAIN") == "1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_TOOLCHAIN and rep.skipped:
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) else str(rep.longrepr)
        if "not installed" in reason:
            rep.outcome = "failed"
            rep.longrepr = f"EDGELSTM_REQUIRE_TOOLCHAIN=1, but the test skipped: {reason}"


def _layers(kind: str) -> list:
    import keras

    L = keras.layers
    inp = keras.Input((T,), dtype="int32") if kind == "emb" else keras.Input((T, D))
    body = {
        "lstm": [L.LSTM(16, return_sequences=True), L.LSTM(8), L.Dense(3, activation="softmax")],
        "lstm_seq": [L.LSTM(8, return_sequences=True), L.Dense(2)],
        "gru": [L.GRU(8), L.Dense(3, activation="softmax")],
        "gru_seq": [L.GRU(8, return_sequences=True), L.Dropout(0.2), L.TimeDistributed(L.Dense(2))],
        "rnn": [L.SimpleRNN(8, return_sequences=True), L.Dense(2)],
        "bidi": [L.Bidirectional(L.LSTM(6, return_sequences=True)), L.LSTM(5), L.Dense(2)],
        "conv": [
            L.Conv1D(6, 3, padding="causal", activation="relu"),
            L.LSTM(8, return_sequences=True),
            L.Dense(1),
        ],
        "emb": [L.Embedding(20, 6), L.LSTM(8), L.Dense(20, activation="softmax")],
        "mask": [L.Masking(0.0), L.LSTM(8), L.Dense(2)],
        "back": [L.LSTM(8, go_backwards=True, return_sequences=True), L.Dense(2)],
        "dense_only": [L.Dense(4, activation="relu"), L.Dense(2)],
        "layernorm": [L.LSTM(8, return_sequences=True), L.LayerNormalization(), L.Dense(2)],
        "unsupported": [L.LSTM(8, return_sequences=True), L.UnitNormalization(), L.Dense(2)],
    }[kind]
    return [inp, *body]


@pytest.fixture(scope="session")
def keras_model_file(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Factory: kind -> path of a saved Keras 3 model (.keras), seeded, cached per session."""
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("models")

    def make(kind: str) -> Path:
        if kind not in cache:
            from edgelstm._tf import import_tf

            import_tf()
            import keras

            keras.utils.set_random_seed(1)
            model = keras.Sequential(_layers(kind))
            path = root / f"{kind}.keras"
            model.save(path)
            cache[kind] = path
        return cache[kind]

    return make


@pytest.fixture(scope="session")
def calibration_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cal") / "cal.npz"
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.standard_normal((48, T, D)).astype(np.float32))
    return path


@pytest.fixture
def run_cli() -> Callable[..., tuple[int, str, str]]:
    """Run `edgelstm ARGS` in a subprocess: (exit code, stdout, stderr)."""
    import subprocess

    def run(*args: str, timeout: float = 600) -> tuple[int, str, str]:
        proc = subprocess.run(
            [sys.executable, "-m", "edgelstm", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return proc.returncode, proc.stdout, proc.stderr

    return run


@pytest.fixture(scope="session", autouse=True)
def _every_artifact_has_fc_bias(tmp_path_factory: pytest.TempPathFactory):
    """After the session: every .tflite a manifest.json lists (any test's conversion, any stage)
    has a bias on every FULLY_CONNECTED (tflite-runtime's ARM kernels crash on a missing one) and
    no buffer that nothing refers to (the converter's uninitialised leftovers)."""
    yield
    try:
        from edgelstm.tflite.passes import fc_without_bias, unreferenced_buffers
        from edgelstm.tflite_info import schema

        schema()
    except Exception:  # a venv without the official schema converts nothing either
        return
    import json

    bad = []
    for manifest in Path(tmp_path_factory.getbasetemp()).rglob("manifest.json"):
        try:
            arts = json.loads(manifest.read_text()).get("artifacts", [])
        except (ValueError, OSError, AttributeError):
            continue
        for art in arts if isinstance(arts, list) else []:
            f = manifest.parent / str(art.get("file", "")) if isinstance(art, dict) else None
            if f is not None and f.suffix == ".tflite" and f.is_file():
                data = f.read_bytes()
                missing = fc_without_bias(data)
                if missing:
                    bad.append(f"{f}: FULLY_CONNECTED without bias: {', '.join(missing)}")
                orphans = unreferenced_buffers(data)
                if orphans:  # converter leftovers: not byte-reproducible
                    bad.append(f"{f}: buffers {orphans} hold bytes nothing refers to")
    assert not bad, "\n".join(bad)
