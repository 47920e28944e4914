"""Load a Keras model (Keras 3 .keras, Keras 2 .h5, or a tf_keras SavedModel directory) safely.

Before anything is deserialised, the model's config is scanned: Lambda layers and custom objects
can run arbitrary code, so they are refused (naming the layer) unless the caller passes unsafe=True.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgelstm._tf import import_tf, import_tf_keras
from edgelstm.errors import BadInputError

_KNOWN_MODULE_PREFIXES = ("keras", "tf_keras", "tensorflow")
_ARBITRARY_CODE_LAYERS = ("Lambda", "TFOpLambda", "SlicingOpLambda")


def _walk_layers(config: Any) -> Iterator[dict[str, Any]]:
    """Every layer-like dict in a Keras config tree (nested models and wrappers included)."""
    if isinstance(config, dict):
        if "class_name" in config and isinstance(config.get("config"), dict):
            yield config
        for value in config.values():
            yield from _walk_layers(value)
    elif isinstance(config, list):
        for value in config:
            yield from _walk_layers(value)


def check_config_safe(config: dict[str, Any], source: str) -> None:
    """Refuse Lambda layers and custom objects, naming the first offender."""
    for entry in _walk_layers(config):
        cls = entry["class_name"]
        name = entry["config"].get("name", "?")
        module = entry.get("module") or ""
        if cls in _ARBITRARY_CODE_LAYERS:
            raise BadInputError(
                f"{source}: layer '{name}' is a {cls} layer, which runs arbitrary code when loaded; "
                "rerun with --unsafe if you trust this file"
            )
        registered = entry.get("registered_name") or ""
        custom = (module and not module.startswith(_KNOWN_MODULE_PREFIXES)) or (
            registered and registered != cls and "." not in registered and ">" in registered
        )
        if custom:
            raise BadInputError(
                f"{source}: layer '{name}' uses the custom object '{registered or cls}' "
                f"(module '{module}'); rerun with --unsafe if you trust this file"
            )


def _keras3_config(path: Path) -> dict[str, Any]:
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("config.json"))
    except (zipfile.BadZipFile, KeyError, json.JSONDecodeError, OSError) as exc:
        raise BadInputError(
            f"{path}: not a valid .keras file ({type(exc).__name__}: {exc})"
        ) from None


def _h5_config(path: Path) -> tuple[dict[str, Any], str]:
    """The model config of an .h5 file and the Keras version that wrote it ('' if unknown)."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
            version = f.attrs.get("keras_version", "")
    except OSError as exc:
        raise BadInputError(f"{path}: not a valid HDF5 model file ({exc})") from None
    if raw is None:
        raise BadInputError(f"{path}: HDF5 file has no Keras model config (weights-only file?)")
    version = version.decode() if isinstance(version, bytes) else str(version)
    try:
        return json.loads(raw.decode() if isinstance(raw, bytes) else raw), version
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: the HDF5 model config is not valid JSON ({exc})") from None


def load_keras_model(path: str | Path, *, unsafe: bool = False) -> tuple[Any, str]:
    """Load a model file; returns (model, framework) with framework 'keras3' or 'tf_keras'."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(f"{path}: no such file or directory")
    if path.is_dir():
        return _load_savedmodel(path, unsafe=unsafe), "tf_keras"
    suffix = path.suffix.lower()
    if suffix == ".keras":
        config = _keras3_config(path)
        if not unsafe:
            check_config_safe(config, str(path))
        return _load_keras3(path, unsafe), "keras3"
    if suffix in (".h5", ".hdf5"):
        config, version = _h5_config(path)
        if not unsafe:
            check_config_safe(config, str(path))
        if version.startswith("3."):
            # Keras 3 writes .h5 too (legacy format); tf_keras cannot read its layer configs.
            return _load_keras3(path, unsafe), "keras3"
        keras2 = import_tf_keras()
        try:
            model = keras2.models.load_model(path, compile=False, safe_mode=not unsafe)
        except Exception as exc:
            raise BadInputError(
                f"{path}: could not load the model ({type(exc).__name__}: {_first_line(exc)})"
            ) from None
        return model, "tf_keras"
    if suffix == ".tflite":
        raise BadInputError(
            f"{path}: already a .tflite file; convert takes a Keras model (.keras, .h5, SavedModel dir)"
        )
    raise BadInputError(
        f"{path}: unknown model format '{suffix}' (expected .keras, .h5 or a SavedModel directory)"
    )


def _load_savedmodel(path: Path, *, unsafe: bool) -> Any:
    if not (path / "saved_model.pb").exists():
        raise BadInputError(f"{path}: directory is not a SavedModel (no saved_model.pb)")
    if not (path / "keras_metadata.pb").exists():
        raise BadInputError(
            f"{path}: SavedModel has no Keras metadata, so its layers cannot be recovered; "
            "save it from Keras (model.save) or pass the .keras/.h5 file"
        )
    keras2 = import_tf_keras()
    try:
        model = keras2.models.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:
        raise BadInputError(
            f"{path}: could not load the SavedModel ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
    if not unsafe:
        check_config_safe({"config": model.get_config(), "class_name": "Model"}, str(path))
    return model


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else ""


def _load_keras3(path: Path, unsafe: bool) -> Any:
    """A Keras 3 model file (.keras, or the .h5 Keras 3 writes), any load failure as exit 2."""
    import_tf()
    import keras

    try:
        return keras.saving.load_model(path, compile=False, safe_mode=not unsafe)
    except Exception as exc:
        raise BadInputError(
            f"{path}: could not load the model ({type(exc).__name__}: {_first_line(exc)})"
        ) from None
