"""Streaming inference with a step model: push one sample, get one output; state carried for you."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgelstm.errors import BadInputError
from edgelstm.runtime.litert import LiteRTRunner
from edgelstm.tflite_info import read_tflite
from edgelstm.types import STEP_INPUT, STEP_OUTPUT


class StepRunner:
    """A step model with its recurrent state, for embedding in an application.

    >>> runner = StepRunner("model_step_int8.tflite")
    >>> y = runner.push([0.0])          # one time step
    >>> saved = runner.get_state(); runner.reset(); runner.set_state(saved)
    """

    def __init__(self, model: str | Path | bytes) -> None:
        data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
        self.info = read_tflite(model if isinstance(model, (str, Path)) else data)
        names = {t.name for t in self.info.inputs}
        self.states = self.info.states()
        if STEP_INPUT not in names or not self.states:
            raise BadInputError(
                "not a step model (needs input 'x' and state{k}_* inputs); sequence models run whole sequences"
            )
        self.x_info = next(t for t in self.info.inputs if t.name == STEP_INPUT)
        self._runner = LiteRTRunner(data, self.info)
        self.reset()

    @property
    def token_input(self) -> bool:
        return self.x_info.dtype.startswith("int32")

    def reset(self) -> None:
        """Back to the start of a stream (every state at its reset value)."""
        self._state = {s.input: np.full(s.shape, s.reset_value, np.float64) for s in self.states}

    def get_state(self) -> dict[str, np.ndarray]:
        return {k: v.copy() for k, v in self._state.items()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        for s in self.states:
            if s.input not in state or np.shape(state[s.input]) != tuple(s.shape):
                raise BadInputError(f"state '{s.input}' missing or not shaped {s.shape}")
        self._state = {s.input: np.asarray(state[s.input], np.float64) for s in self.states}

    def push(self, sample: np.ndarray | list[float] | int) -> np.ndarray:
        """Run one time step; returns the output (float) for this step."""
        x = np.asarray(sample)
        want = int(np.prod(self.x_info.shape))
        if x.size != want:
            raise BadInputError(f"a sample needs {want} value(s), got {x.size}")
        out = self._runner.invoke({STEP_INPUT: x.reshape(self.x_info.shape), **self._state})
        for s in self.states:
            self._state[s.input] = out[s.output]
        return out[STEP_OUTPUT].reshape(-1)
