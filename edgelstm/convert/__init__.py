"""The convert stage: Keras recurrent model -> verified sequence and step .tflite artifacts."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgelstm.convert.orchestrate import convert
    from edgelstm.convert.result import ConversionResult, convert_model


def __getattr__(name: str) -> Any:
    # Lazy: importing edgelstm.convert must stay cheap (no TensorFlow) for the CLI.
    if name == "convert_model":
        from edgelstm.convert.result import convert_model

        return convert_model
    if name == "convert":
        from edgelstm.convert.orchestrate import convert

        return convert
    if name == "ConversionResult":
        from edgelstm.convert.result import ConversionResult

        return ConversionResult
    if name == "ConvertConfig":
        from edgelstm.types import ConvertConfig

        return ConvertConfig
    raise AttributeError(name)


__all__ = ["ConversionResult", "ConvertConfig", "convert", "convert_model"]
