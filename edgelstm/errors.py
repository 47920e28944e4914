"""User-facing errors: the CLI turns these into a one-line message and exit code 2."""

from __future__ import annotations


class EdgeLSTMError(Exception):
    """A problem with the user's input or environment, reported without a traceback."""

    exit_code = 2


class BadInputError(EdgeLSTMError):
    """A file, option or data set that cannot be used as given."""


class UnsupportedLayerError(EdgeLSTMError):
    """A Keras layer (or a layer argument) that edgelstm cannot lower."""


class ConversionError(EdgeLSTMError):
    """The TFLite converter failed or crashed on a model."""


class VerificationError(EdgeLSTMError):
    """A converted artifact disagrees with its source beyond the stated bound."""


class MissingDependencyError(EdgeLSTMError):
    """An optional package that this command needs is not installed."""

    def __init__(self, package: str, purpose: str, extra: str | None = None) -> None:
        hint = f"pip install 'edgelstm[{extra}]'" if extra else f"pip install {package}"
        super().__init__(f"{purpose} needs the '{package}' package: {hint}")
        self.package = package


class InterruptedRunError(EdgeLSTMError):
    """The user interrupted a long run that saved its state (exit 130, like Ctrl-C)."""

    exit_code = 130
