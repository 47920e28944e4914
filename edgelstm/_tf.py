"""Lazy, quiet TensorFlow import. Only modules that convert or train call this."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from types import ModuleType

_QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TF_ENABLE_ONEDNN_OPTS": "0",  # oneDNN reorders float sums: results would vary by machine
    "TF_USE_LEGACY_KERAS": "0",  # keras stays Keras 3; tf_keras is imported by name
    "ABSL_MIN_LOG_LEVEL": "3",
    "GRPC_VERBOSITY": "ERROR",
}


def quiet_env() -> None:
    """Set the environment variables that silence TensorFlow's start-up logging."""
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def stderr_silenced() -> Iterator[None]:
    """Send fd 2 to /dev/null: TensorFlow's C++ start-up lines ignore TF_CPP_MIN_LOG_LEVEL."""
    if os.environ.get("EDGELSTM_DEBUG") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def import_tf() -> ModuleType:
    """Import TensorFlow with its logging silenced, or explain how to install it."""
    quiet_env()
    try:
        with stderr_silenced():
            import tensorflow as tf
    except ImportError as exc:  # pragma: no cover - exercised in the runtime-only venv
        from edgelstm.errors import MissingDependencyError

        raise MissingDependencyError("tensorflow", "this command", extra="convert") from exc
    tf.get_logger().setLevel("ERROR")
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    return tf


def import_tf_keras() -> ModuleType:
    """Import tf_keras (Keras 2), whose LSTM converts to the fused TFLite op."""
    import_tf()
    try:
        import tf_keras
    except ImportError as exc:  # pragma: no cover
        from edgelstm.errors import MissingDependencyError

        raise MissingDependencyError("tf-keras", "conversion", extra="convert") from exc
    return tf_keras
