"""Generate text from a char-lm model, one character per step with the state carried.

Two steppers share one sampling loop: a Keras model (rebuilt as a stateful one-step copy with the
same weights) and a converted step `.tflite` (run with `edgelstm.runtime.StepRunner`, no
TensorFlow). The vocabulary file (`vocab.json`, id -> character, id 0 = out of vocabulary) is
looked for beside the model, beside the converted model's source (manifest.json), and in the zoo.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgelstm.errors import BadInputError

VOCAB_FILE = "vocab.json"


class Stepper(Protocol):
    """Feeds one token id, returns the next-token distribution; reset() starts over."""

    vocab_size: int

    def reset(self) -> None: ...

    def push(self, token: int) -> np.ndarray: ...


def load_vocab(path: Path) -> list[str]:
    """The characters of a vocab.json (index = token id)."""
    try:
        data = json.loads(Path(path).read_text())
        chars = data["chars"]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise BadInputError(
            f"{path}: not a vocabulary file ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(chars, list) or not all(isinstance(c, str) and len(c) == 1 for c in chars):
        raise BadInputError(f"{path}: 'chars' must be a list of single characters")
    return chars


def vocab_candidates(model: Path) -> Iterator[Path]:
    """Where a model's vocabulary may be: beside it, beside its source, the zoo's char-lm."""
    from edgelstm.zoo import MODELS_DIR

    yield model.parent / VOCAB_FILE
    manifest = model.parent / "manifest.json"
    if manifest.is_file():
        try:
            source = json.loads(manifest.read_text())["source"]["path"]
            yield Path(source).parent / VOCAB_FILE
        except (json.JSONDecodeError, KeyError, TypeError):
            pass
    yield MODELS_DIR / "char-lm" / VOCAB_FILE


def find_vocab(model: Path, size: int, explicit: Path | None = None) -> list[str]:
    """The vocabulary for a model with `size` output classes (explicit file first)."""
    if explicit is not None:
        vocab = load_vocab(explicit)
        if len(vocab) != size:
            raise BadInputError(f"{explicit}: {len(vocab)} characters, the model predicts {size}")
        return vocab
    for path in vocab_candidates(model):
        if path.is_file():
            vocab = load_vocab(path)
            if len(vocab) == size:
                return vocab
    raise BadInputError(f"{model}: no {VOCAB_FILE} with {size} characters found; pass --vocab FILE")


class TFLiteStepper:
    """A converted step model with token input `x` [1] and output `y` [1, vocab]."""

    def __init__(self, path: Path) -> None:
        from edgelstm.runtime.stream import StepRunner

        self.runner = StepRunner(path)
        if not self.runner.token_input:
            raise BadInputError(f"{path}: not a token-input step model (char-lm takes char ids)")
        self.vocab_size = self.runner.output_size

    def reset(self) -> None:
        self.runner.reset()

    def push(self, token: int) -> np.ndarray:
        return self.runner.push(np.array([token], np.int32))


class KerasStepper:
    """A Keras chain model (Embedding -> recurrent -> Dense) as a stateful one-step copy."""

    def __init__(self, path: Path) -> None:
        from edgelstm._tf import import_tf
        from edgelstm.convert.load import _keras3_config, check_config_safe

        import_tf()
        import keras

        if path.suffix != ".keras":
            raise BadInputError(f"{path}: expected a .keras model or a step .tflite")
        check_config_safe(_keras3_config(path), str(path))
        src = keras.saving.load_model(path, compile=False)
        layers = [layer for layer in src.layers if not isinstance(layer, keras.layers.InputLayer)]
        if not layers or not isinstance(layers[0], keras.layers.Embedding):
            raise BadInputError(f"{path}: not a char-lm model (needs an Embedding front-end)")
        step = [keras.Input(batch_shape=(1, 1), dtype="int32")]
        for layer in layers:
            config = layer.get_config()
            if isinstance(layer, keras.layers.RNN) or "return_sequences" in config:
                config = {**config, "stateful": True, "return_sequences": True}
            step.append(type(layer).from_config(config))
        self.model = keras.Sequential(step)
        for new, old in zip(self.model.layers, layers, strict=True):
            new.set_weights(old.get_weights())
        self.vocab_size = int(self.model.output_shape[-1])

    def reset(self) -> None:
        for layer in self.model.layers:
            if getattr(layer, "stateful", False):
                layer.reset_state()

    def push(self, token: int) -> np.ndarray:
        out = self.model(np.array([[token]], np.int32), training=False)
        return np.asarray(out, np.float64).reshape(-1)


def open_stepper(path: Path) -> Stepper:
    """A stepper for a .keras char-lm or a converted step .tflite."""
    if not path.exists():
        raise BadInputError(f"{path}: no such file")
    if path.suffix == ".tflite":
        return TFLiteStepper(path)
    return KerasStepper(path)


def next_token(probs: np.ndarray, temperature: float, rng: np.random.Generator) -> int:
    """Sample from p^(1/T) (renormalised); temperature 0 is greedy (argmax)."""
    p = np.maximum(np.asarray(probs, np.float64), 0.0)
    if temperature <= 0:
        return int(np.argmax(p))
    logits = np.log(np.maximum(p, 1e-12)) / temperature
    w = np.exp(logits - logits.max())
    return int(rng.choice(len(w), p=w / w.sum()))


def generate(
    stepper: Stepper,
    vocab: list[str],
    *,
    length: int,
    temperature: float = 1.0,
    seed: int = 0,
    prime: str = "\n",
) -> str:
    """`length` sampled characters after feeding `prime` (state carried step to step)."""
    from edgelstm.zoo.data import decode, encode

    if length < 0:
        raise BadInputError(f"length must be >= 0, got {length}")
    if temperature < 0:
        raise BadInputError(f"temperature must be >= 0, got {temperature}")
    rng = np.random.default_rng(seed)
    stepper.reset()
    ids = encode(prime or "\n", vocab)
    probs = np.zeros(len(vocab))
    for t in ids:
        probs = stepper.push(int(t))
    out = []
    for _ in range(length):
        token = next_token(probs, temperature, rng)
        out.append(token)
        probs = stepper.push(token)
    return decode(out, vocab)


def describe(stepper: Any) -> str:
    return "tflite step model" if isinstance(stepper, TFLiteStepper) else "keras model"
