"""Run converted models from an application: `StepRunner` (alias `Stream`) and `SequenceRunner`.

Step models (one invoke = one time step) carry their recurrent state explicitly: each
``state{k}_{role}`` input has a ``state{k}_{role}_out`` output, and the caller copies the output
back in before the next step. `StepRunner` does that for you, so a Raspberry Pi app is just::

    from edgelstm.runtime import StepRunner
    runner = StepRunner("model_step_int8.tflite")       # best installed runtime
    for sample in sensor():                              # sample: D floats (or one token id)
        y = runner.push(sample)                          # float output of this step
    saved = runner.get_state(); runner.reset(); runner.set_state(saved)

Int8 step models tie each state output's scale/zero point to its input's, so the runner copies the
raw int8 state bytes (exactly what firmware does) instead of dequantizing and requantizing.

Sequence models with a fused UNIDIRECTIONAL_SEQUENCE_LSTM keep h and c in *variable tensors*
inside the interpreter: they are not reset between invokes, so without a reset the same input
gives a different output (the second sequence starts from the first one's final state).
`SequenceRunner.run` therefore resets before every sequence unless told not to.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.errors import BadInputError
from edgelstm.runtime.backends import Backend, Runtime, dequantize, load_backend, quantize
from edgelstm.tflite_info import TFLiteInfo, read_tflite
from edgelstm.types import (
    STEP_INPUT,
    STEP_OUTPUT,
    Artifact,
    StateTensor,
    Variant,
    manifest_from_dict,
)

ModelSource = str | Path | bytes


def _load(model: ModelSource) -> tuple[bytes, TFLiteInfo, Path | None]:
    if isinstance(model, (str, Path)):
        path = Path(model)
        info = read_tflite(path)  # clear BadInputError for missing / not-tflite / truncated
        return path.read_bytes(), info, path
    data = bytes(model)
    return data, read_tflite(data), None


def manifest_artifact(model_path: Path | None) -> Artifact | None:
    """The artifact entry for `model_path` in manifest.json beside it, if there is one."""
    if model_path is None:
        return None
    mpath = model_path.parent / "manifest.json"
    if not mpath.is_file():
        return None
    try:
        manifest = manifest_from_dict(json.loads(mpath.read_text()))
    except (ValueError, KeyError, TypeError):
        return None  # an unrelated or older manifest: fall back to the naming convention
    return next((a for a in manifest.artifacts if a.file == model_path.name), None)


def embedding_rows(info: TFLiteInfo) -> int | None:
    """Rows of the first GATHER's table (an Embedding's vocabulary), if any."""
    for op in info.ops:
        if op.name == "GATHER" and op.inputs:
            shape = info.tensor(op.inputs[0]).shape
            if shape:
                return int(shape[0])
    return None


def model_variant(info: TFLiteInfo) -> Variant:
    """STEP when the model has an `x` (or x0, x1, ...) input and at least one state pair, else
    SEQUENCE."""
    return Variant.STEP if io_names(info)[0] and info.states() else Variant.SEQUENCE


def io_names(info: TFLiteInfo) -> tuple[list[str], list[str]]:
    """(data inputs, data outputs) of a model: every signature tensor but the states, in
    signature-name order: ["x"], ["y"] for a one-input, one-output model, else x0, x1, ... /
    y0, y1, ..."""
    states = info.states()
    s_in, s_out = {s.input for s in states}, {s.output for s in states}
    ins = sorted(t.name for t in info.inputs if t.name not in s_in)
    outs = sorted(t.name for t in info.outputs if t.name not in s_out)
    return _by_index(ins), _by_index(outs)


def _by_index(names: list[str]) -> list[str]:
    """x, or x0, x1, ..., x10 in numeric order."""
    return sorted(names, key=lambda n: (len(n), n))


def _states(info: TFLiteInfo, art: Artifact | None) -> list[StateTensor]:
    found = {s.input: s for s in info.states()}
    if art is not None and art.states and all(s.input in found for s in art.states):
        # The manifest knows the owning Keras layer and the reset value; the file's own
        # tensors stay authoritative for shape/dtype/quantization.
        return [
            StateTensor(**{**vars(found[s.input]), "layer": s.layer, "reset_value": s.reset_value})
            for s in art.states
        ]
    return list(found.values())


class StepRunner:
    """A step model with its recurrent state, for embedding in an application.

    push(sample) -> output runs one time step (float in, float out); reset() starts a new
    stream; get_state()/set_state() save and restore the state (real values, by input name).

    A model with several inputs (x0, x1, ...) takes a dict {name: sample} at each step, a side
    input (features fed whole) included at every step; with several outputs (y0, y1, ...) each
    step returns a dict {name: output}. `input_names` / `output_names` list them.
    """

    def __init__(
        self,
        model: ModelSource,
        runtime: Runtime | str | None = None,
        *,
        threads: int | None = None,
        xnnpack: bool | None = None,
        backend: Backend | None = None,
        artifact: Artifact | None = None,
        **options: Any,
    ) -> None:
        """`artifact`: the model's manifest entry (state layers and reset values; default: the
        manifest.json beside a model path). `options` go to the backend (native:
        build_options=BuildOptions(...), cache_dir=...)."""
        data, self.info, path = _load(model)
        self.artifact = artifact if artifact is not None else manifest_artifact(path)
        self.states = _states(self.info, self.artifact)
        self.input_names, self.output_names = io_names(self.info)
        if not self.input_names or not self.output_names or not self.states:
            raise BadInputError(
                f"{path or 'model'}: not a step model (needs input 'x', output 'y' and "
                "state{k}_* inputs); sequence models run whole sequences"
            )
        self.multi_io = self.input_names != [STEP_INPUT] or self.output_names != [STEP_OUTPUT]
        self.backend = backend or load_backend(
            data, runtime, threads=threads, xnnpack=xnnpack, info=self.info, **options
        )
        self.x_info = self.backend.input_info(self.input_names[0])
        self.y_info = self.backend.output_info(self.output_names[0])
        # native: the state stays in the engine's struct between steps (no copies per step)
        self._in_backend = bool(getattr(self.backend, "holds_state", False))
        # Raw copy is exact when out and in share dtype, scale and zero point (edgelstm's int8
        # step models and every float model); otherwise go through real values.
        self._raw_copy = {}
        for s in self.states:
            o = self.backend.output_info(s.output)
            i = self.backend.input_info(s.input)
            self._raw_copy[s.input] = (o.dtype, o.scale, o.zero_point) == (
                i.dtype,
                i.scale,
                i.zero_point,
            )
        self.steps = 0
        self.last_invoke_ns = 0
        self.reset()

    @property
    def runtime(self) -> Runtime:
        return self.backend.runtime

    @property
    def token_input(self) -> bool:
        return self.x_info.dtype.startswith("int") and not self.x_info.scale

    @property
    def vocab(self) -> int | None:
        """Token-id range of an Embedding front-end (rows of its GATHER table), else None."""
        return embedding_rows(self.info) if self.token_input else None

    @property
    def input_size(self) -> int:
        return int(np.prod(self.x_info.shape)) if self.x_info.shape else 1

    @property
    def output_size(self) -> int:
        return int(np.prod(self.y_info.shape)) if self.y_info.shape else 1

    def reset(self) -> None:
        """Back to the start of a stream (every state at its reset value)."""
        self._raw = {
            s.input: quantize(np.full(s.shape, s.reset_value), s.dtype, s.scale, s.zero_point)
            for s in self.states
        }
        if self._in_backend:
            for s in self.states:
                self.backend.set_raw(s.input, self._raw[s.input])
        self.steps = 0

    def get_state(self) -> dict[str, np.ndarray]:
        """The current state as real values, keyed by the state input names."""
        if self._in_backend:
            self._raw = {s.input: self.backend.get_raw(s.input) for s in self.states}
        return {s.input: dequantize(self._raw[s.input], s.scale, s.zero_point) for s in self.states}

    def set_state(self, state: dict[str, Any]) -> None:
        """Restore a state saved by get_state() (real values, keyed by state input name)."""
        raw = {}
        for s in self.states:
            if s.input not in state or np.size(state[s.input]) != int(np.prod(s.shape)):
                raise BadInputError(f"state '{s.input}' missing or not shaped {s.shape}")
            value = np.asarray(state[s.input], np.float64).reshape(s.shape)
            raw[s.input] = quantize(value, s.dtype, s.scale, s.zero_point)
        self._raw = raw
        if self._in_backend:
            for s in self.states:
                self.backend.set_raw(s.input, raw[s.input])

    def check_samples(self, xs: np.ndarray) -> np.ndarray:
        """`xs` ([..., D]) checked as samples of this model: integer token ids in range."""
        if self.token_input:
            if not np.all(np.equal(np.mod(xs, 1), 0)):
                raise BadInputError(f"this model takes integer token ids, got {xs.reshape(-1)[:4]}")
            if self.vocab and xs.size and (xs.min() < 0 or xs.max() >= self.vocab):
                bad = xs.reshape(-1)[(xs.reshape(-1) < 0) | (xs.reshape(-1) >= self.vocab)][0]
                raise BadInputError(f"token id {bad} outside [0, {self.vocab})")
        return xs

    def push_many(self, samples: Any) -> np.ndarray:
        """Run len(samples) steps from the current state; outputs stacked [T, out] (float64).

        On the native runtime this is ONE C call for all T steps (Python overhead paid once per
        chunk); elsewhere it is a loop of push(). Several inputs: a dict of [T, ...] arrays (a
        side input [F] is fed at every step); several outputs: a dict of [T, out] arrays.
        """
        if self.multi_io:
            return self._run_named(samples)
        xs = np.asarray(samples)
        steps = xs.reshape(len(xs), -1) if xs.ndim > 1 else xs.reshape(len(xs), 1)
        if steps.shape[1] != self.input_size:
            raise BadInputError(f"a sample needs {self.input_size} value(s), got {steps.shape[1]}")
        if not len(steps):
            return np.empty((0, self.output_size))
        run_chunk = getattr(self.backend, "run_chunk", None)
        if run_chunk is None:
            return np.stack([self.push(step) for step in steps])
        self.check_samples(steps)
        xi, yi = self.x_info, self.y_info
        raw = quantize(steps, xi.dtype, xi.scale, xi.zero_point)
        t0 = time.perf_counter_ns()
        ys = run_chunk(raw)
        self.last_invoke_ns = time.perf_counter_ns() - t0  # the whole chunk
        self.steps += len(steps)
        return dequantize(ys, yi.scale, yi.zero_point).reshape(len(steps), -1)

    def _named_inputs(self, sample: Any) -> dict[str, np.ndarray]:
        if len(self.input_names) == 1 and not isinstance(sample, dict):
            return {self.input_names[0]: np.asarray(sample)}
        if not isinstance(sample, dict):
            raise BadInputError(
                f"this model has {len(self.input_names)} inputs: pass a dict with "
                + ", ".join(self.input_names)
            )
        missing = [n for n in self.input_names if n not in sample]
        if missing:
            raise BadInputError(
                f"input '{missing[0]}' missing (inputs: {', '.join(self.input_names)})"
            )
        return {n: np.asarray(sample[n]) for n in self.input_names}

    def _run_named(self, samples: Any) -> Any:
        xs = self._named_inputs(samples)
        steps = max((len(v) for n, v in xs.items() if self._is_step_input(n, v)), default=0)
        outs = []
        for t in range(steps):
            outs.append(
                self._push_named(
                    {n: (v[t] if self._is_step_input(n, v) else v) for n, v in xs.items()}
                )
            )
        if len(self.output_names) == 1:
            return np.stack(outs) if outs else np.empty((0, self.output_size))
        return {
            n: np.stack([o[n] for o in outs]) if outs else np.empty((0,)) for n in self.output_names
        }

    def _is_step_input(self, name: str, v: np.ndarray) -> bool:
        """Whether `v` holds one row per step (one axis more than a sample), else it is one
        sample, fed at every step (a side input)."""
        return v.ndim == len(self.backend.input_info(name).shape)

    def push(self, sample: Any) -> Any:
        """Run one time step; returns this step's output as a flat float64 array (several
        outputs: a dict of them; several inputs: `sample` is a dict by input name)."""
        if self.multi_io:
            return self._push_named(self._named_inputs(sample))
        x = np.asarray(sample)
        if x.size != self.input_size:
            raise BadInputError(f"a sample needs {self.input_size} value(s), got {x.size}")
        if self.token_input:
            if not np.all(np.equal(np.mod(x, 1), 0)):
                raise BadInputError(f"this model takes integer token ids, got {x.reshape(-1)[:4]}")
            if self.vocab and (x.min() < 0 or x.max() >= self.vocab):
                raise BadInputError(f"token id {x.reshape(-1)[0]} outside [0, {self.vocab})")
        b = self.backend
        b.set_input(STEP_INPUT, x.reshape(self.x_info.shape))
        if self._in_backend:
            t0 = time.perf_counter_ns()
            b.invoke()
            self.last_invoke_ns = time.perf_counter_ns() - t0
            self.steps += 1
            return b.get_output(STEP_OUTPUT).reshape(-1)
        self._invoke_carrying_state()
        return b.get_output(STEP_OUTPUT).reshape(-1)

    def _invoke_carrying_state(self) -> None:
        """One invoke with the carried state fed in and the new state kept (inputs already set)."""
        b = self.backend
        for s in self.states:
            b.set_raw(s.input, self._raw[s.input])
        t0 = time.perf_counter_ns()
        b.invoke()
        self.last_invoke_ns = time.perf_counter_ns() - t0  # read by `edgelstm profile`
        for s in self.states:
            out = b.get_raw(s.output)
            if not self._raw_copy[s.input]:
                # different quantization on the two sides: requantize through real values
                o = b.output_info(s.output)
                out = quantize(
                    dequantize(out, o.scale, o.zero_point), s.dtype, s.scale, s.zero_point
                )
            self._raw[s.input] = np.asarray(out).reshape(s.shape)
        self.steps += 1

    def _push_named(self, feeds: dict[str, np.ndarray]) -> Any:
        b = self.backend
        for n, v in feeds.items():
            info = b.input_info(n)
            if v.size != int(np.prod(info.shape)):
                raise BadInputError(
                    f"input '{n}': a sample needs {int(np.prod(info.shape))} value(s), got {v.size}"
                )
            b.set_input(n, v.reshape(info.shape))
        self._invoke_carrying_state()
        ys = {n: b.get_output(n).reshape(-1) for n in self.output_names}
        return ys[self.output_names[0]] if len(ys) == 1 else ys

    def run(self, xs: Any, reset: bool = True) -> Any:
        """Push every step of one sequence ([T, D], or [T] tokens); outputs stacked [T, out]
        (several inputs / outputs: dicts, as push_many)."""
        if self.multi_io:
            if reset:
                self.reset()
            return self._run_named(xs)
        xs = np.asarray(xs)
        if reset:
            self.reset()
        steps = xs.reshape(len(xs), -1) if xs.ndim > 1 else xs.reshape(len(xs), 1)
        return np.stack([self.push(step) for step in steps]) if len(steps) else np.empty((0,))


Stream = StepRunner


class SequenceRunner:
    """A sequence model: run(x [T, D]) -> y, resetting fused-LSTM variable state first."""

    def __init__(
        self,
        model: ModelSource,
        runtime: Runtime | str | None = None,
        *,
        threads: int | None = None,
        xnnpack: bool | None = None,
        backend: Backend | None = None,
    ) -> None:
        data, self.info, _path = _load(model)
        self.input_names, self.output_names = io_names(self.info)
        self.backend = backend or load_backend(
            data, runtime, threads=threads, xnnpack=xnnpack, info=self.info
        )
        self.x_info = next(t for t in self.info.inputs if t.name == self.input_names[0])
        self.y_info = next(t for t in self.info.outputs if t.name == self.output_names[0])

    @property
    def seq_len(self) -> int:
        return self.x_info.shape[1] if len(self.x_info.shape) > 1 else 1

    def run(self, x: Any, reset: bool = True) -> np.ndarray:
        """One sequence (without the batch axis); returns the output without batch axis.

        Several inputs: `x` is a dict by input name (x0, x1, ...); several outputs: a dict by
        output name (y0, y1, ...) is returned. reset=False keeps the fused LSTM's state from the
        previous call (almost never wanted).
        """
        if reset:
            self.backend.reset()
        b = self.backend
        if len(self.input_names) > 1 or isinstance(x, dict):
            if not isinstance(x, dict) or any(n not in x for n in self.input_names):
                raise BadInputError(
                    "this model's inputs are " + ", ".join(self.input_names) + ": pass a dict"
                )
            for n in self.input_names:
                info = next(t for t in self.info.inputs if t.name == n)
                b.set_input(n, np.asarray(x[n]).reshape(info.shape))
        else:
            b.set_input(self.x_info.name, np.asarray(x))
        b.invoke()
        ys = {}
        for n in self.output_names:
            y = b.get_output(n)
            ys[n] = y.reshape(y.shape[1:]) if y.ndim > 1 and y.shape[0] == 1 else y
        return ys[self.output_names[0]] if len(ys) == 1 else ys
