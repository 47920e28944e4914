"""The convert stage: Keras recurrent model -> verified sequence and step .tflite artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgelstm.convert.orchestrate import convert_model


def __getattr__(name: str) -> Any:
    # Lazy: importing edgelstm.convert must stay cheap (no TensorFlow) for the CLI.
    if name == "convert_model":
        from edgelstm.convert.orchestrate import convert_model

        return convert_model
    if name == "ConvertConfig":
        from edgelstm.types import ConvertConfig

        return ConvertConfig
    raise AttributeError(name)


__all__ = ["ConvertConfig", "convert_model"]
