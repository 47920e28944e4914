"""Typed settings of the layer specs: the recurrent ones (LSTM, GRU, SimpleRNN, RNN(cell),
Bidirectional) and Conv1D.

Other layer families still carry a plain dict (`LayerSpec.config`); `LayerSpec` reads either
through its typed accessors (`returns_sequences`, `stateful`, ...). `details()` yields the plain
items the manifest lists for a layer, in the order the dict form had them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgelstm.convert.layers.base import LayerSpec


@dataclass(frozen=True)
class RecurrentConfig:
    """An LSTM, GRU or SimpleRNN layer (or one cell of an RNN(cell) wrapper).

    `output` is 0 when the layer returns its final states too (return_state=True: the states are
    outputs 1, 2, ... of their own `StateOutputConfig` specs). `state_tensors` is filled while the
    sequence model is built: the layer's final-state tensors those specs read.
    """

    units: int
    activation: str
    recurrent_activation: str
    use_bias: bool
    return_sequences: bool
    go_backwards: bool
    stateful: bool
    reset_after: bool
    in_dim: int | None
    return_state: bool = False
    output: int | None = None
    state_tensors: list[Any] = field(default_factory=list, compare=False, repr=False)

    def details(self) -> Iterator[tuple[str, Any]]:
        """The manifest's plain settings, in order (in_dim when known, return_state when set)."""
        yield from (
            ("units", self.units),
            ("activation", self.activation),
            ("recurrent_activation", self.recurrent_activation),
            ("use_bias", self.use_bias),
            ("return_sequences", self.return_sequences),
            ("go_backwards", self.go_backwards),
            ("stateful", self.stateful),
            ("reset_after", self.reset_after),
        )
        if self.in_dim is not None:
            yield "in_dim", self.in_dim
        if self.return_state:
            yield "return_state", True

    @property
    def fusable_activations(self) -> bool:
        """The fused UNIDIRECTIONAL_SEQUENCE_LSTM op computes tanh cells and sigmoid gates only."""
        return self.activation == "tanh" and self.recurrent_activation == "sigmoid"


@dataclass(frozen=True)
class StateOutputConfig:
    """Final state `output` (1, 2, ...: h, then c for an LSTM) of the recurrent spec `of`."""

    of: LayerSpec
    output: int
    role: str
    units: int

    def details(self) -> Iterator[tuple[str, Any]]:
        yield from (("role", self.role), ("units", self.units))


@dataclass(frozen=True)
class BidirectionalConfig:
    """A Bidirectional layer: its two halves and how they merge.

    merge_mode=None in Keras becomes two specs, with merge_mode "forward" (output 0) and
    "backward" (output 1): each is one half of the layer alone.
    """

    merge_mode: str  # concat, sum, mul, ave; forward / backward: one half (Keras merge_mode=None)
    forward: LayerSpec
    backward: LayerSpec
    units: int
    output: int | None = None

    def details(self) -> Iterator[tuple[str, Any]]:
        yield from (("merge_mode", self.merge_mode), ("units", self.units))

    @property
    def halves(self) -> tuple[LayerSpec, ...]:
        """The recurrent specs this spec runs (one for a merge_mode=None half)."""
        if self.merge_mode == "forward":
            return (self.forward,)
        if self.merge_mode == "backward":
            return (self.backward,)
        return (self.forward, self.backward)


@dataclass(frozen=True)
class Conv1DConfig:
    """A Conv1D layer (kernel_size, strides, dilation_rate as plain ints)."""

    filters: int
    kernel_size: int
    strides: int
    dilation_rate: int
    padding: str
    activation: str
    in_dim: int | None

    def details(self) -> Iterator[tuple[str, Any]]:
        yield from (
            ("filters", self.filters),
            ("kernel_size", self.kernel_size),
            ("strides", self.strides),
            ("dilation_rate", self.dilation_rate),
            ("padding", self.padding),
            ("activation", self.activation),
        )
        if self.in_dim is not None:
            yield "in_dim", self.in_dim

    @property
    def window(self) -> int:
        """The past inputs a step needs besides its own: (kernel_size - 1) * dilation_rate."""
        return (self.kernel_size - 1) * self.dilation_rate


LayerConfig = RecurrentConfig | StateOutputConfig | BidirectionalConfig | Conv1DConfig
