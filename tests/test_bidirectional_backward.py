"""Bidirectional with an explicit backward_layer and a go_backwards forward layer: each half keeps
its own direction (float parity with Keras, not a tolerance failure)."""

from __future__ import annotations

from pathlib import Path

from edgelstm.convert import convert_model
from edgelstm.types import ConvertConfig, Variant


def test_reversed_forward_half_lowers_correctly(tmp_path: Path) -> None:
    import keras

    from edgelstm._tf import import_tf

    import_tf()
    keras.utils.set_random_seed(4)
    L = keras.layers
    model = keras.Sequential(
        [
            keras.Input((9, 3)),
            L.Bidirectional(
                L.LSTM(5, return_sequences=True, go_backwards=True),
                backward_layer=L.LSTM(5, return_sequences=True),
            ),
            L.Dense(2),
        ]
    )
    path = tmp_path / "bidi_rev.keras"
    model.save(path)
    manifest = convert_model(
        path, tmp_path / "out", ConvertConfig(variants=[Variant.SEQUENCE], verify_samples=4)
    )
    (art,) = manifest.artifacts
    assert art.parity is not None and art.parity.max_abs < 1e-4, art.parity
