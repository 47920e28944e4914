"""Build the deployable TensorFlow graphs from a ModelSpec.

* sequence: the layers rebuilt in tf_keras, batch 1, fixed length, so the TFLite converter emits
  the fused UNIDIRECTIONAL_SEQUENCE_LSTM op (Keras 3 LSTMs lower to WHILE loops instead).
* step: one time step as a tf.function over plain ops, with every recurrent state an explicit
  input and output (names per edgelstm.types), which converts to FULLY_CONNECTED/LOGISTIC/TANH/...
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgelstm._tf import import_tf, import_tf_keras
from edgelstm.convert.graph import ModelSpec, _first_line
from edgelstm.errors import EdgeLSTMError, UnsupportedLayerError
from edgelstm.types import STEP_INPUT, STEP_OUTPUT, state_input_name, state_output_name


def build_sequence_model(ms: ModelSpec) -> Any:
    """The tf_keras sequence model (batch 1, length ms.seq_len) with the source weights."""
    keras = import_tf_keras()
    keras.backend.clear_session()
    if ms.token_input:
        x = keras.Input(shape=(ms.seq_len,), batch_size=1, dtype="int32", name=STEP_INPUT)
    else:
        x = keras.Input(shape=(ms.seq_len, ms.in_dim), batch_size=1, name=STEP_INPUT)
    vals = {-1: x}  # spec index -> its output tensor (-1: the model input)
    for i, (spec, handler) in enumerate(zip(ms.layers, ms.handlers, strict=True)):
        try:
            vals[i] = handler.sequence(spec, _operand(spec, vals), keras)
        except EdgeLSTMError:
            raise
        except Exception as exc:  # e.g. weights that do not fit the rebuilt layer
            raise UnsupportedLayerError(
                f"cannot convert layer '{spec.name}' ({spec.kind}) to the sequence model: "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from exc
    return keras.Model(x, vals[len(ms.layers) - 1], name="edgelstm_sequence")


def _operand(spec: Any, vals: dict[int, Any]) -> Any:
    """A layer's input: the one tensor it reads, or the list a merge layer takes."""
    ins = [vals[j] for j in spec.inputs]
    return ins[0] if len(ins) == 1 else ins


def step_input_specs(ms: ModelSpec) -> list[tuple[str, tuple[int, ...], str]]:
    """(name, shape, dtype) of the step model's inputs: x first, then the states in order."""
    specs: list[tuple[str, tuple[int, ...], str]] = [
        (STEP_INPUT, (1,), "int32") if ms.token_input else (STEP_INPUT, (1, ms.in_dim), "float32")
    ]
    for k, _spec, states in ms.state_layout():
        for st in states:
            specs.append((state_input_name(k, st.role), (1, *st.shape), "float32"))
    return specs


def _run_step(
    ms: ModelSpec, x: Any, states: list[Any], step_fn: str, tf: Any = None
) -> tuple[Any, list[Any]]:
    """Apply every layer's one-step function, threading the state tensors through."""
    layout = {id(spec): n for _, spec, sts in ms.state_layout() for n in [len(sts)]}
    pos = 0
    new_states: list[Any] = []
    vals: dict[int, Any] = {-1: x}  # spec index -> its output this step (-1: the model input)
    masks: dict[int, Any] = {-1: None}  # the mask each output carries (merges take unmasked only)
    for i, (spec, handler) in enumerate(zip(ms.layers, ms.handlers, strict=True)):
        n = layout.get(id(spec), 0)
        mine = states[pos : pos + n]
        pos += n
        y = _operand(spec, vals)
        mask = masks[spec.inputs[0]]
        starts = handler.step_mask(spec, y, tf if step_fn == "tf" else None)
        mask = starts if starts is not None else mask
        if step_fn == "tf":
            y, nxt = handler.step(spec, y, mine, tf)
        else:
            y, nxt = handler.step_numpy(spec, y, mine)
        if mask is not None and spec.masked and nxt:
            # Keras at a masked step: the state is kept and the output (= h) repeated.
            nxt = [mask * new + (1.0 - mask) * old for new, old in zip(nxt, mine, strict=True)]
            y = nxt[0]
            if not spec.config.get("return_sequences", True):
                mask = None  # the mask ends at a layer that returns only its last output
        new_states.extend(nxt)
        vals[i], masks[i] = y, mask
    return vals[len(ms.layers) - 1], new_states


def build_step_module(ms: ModelSpec) -> Any:
    """A tf.Module whose `serve` runs one time step with explicit state in and out."""
    tf = import_tf()
    specs = step_input_specs(ms)
    names = [n for n, _, _ in specs]
    out_names = [STEP_OUTPUT] + [
        state_output_name(k, st.role) for k, _spec, sts in ms.state_layout() for st in sts
    ]

    def serve(*args: Any) -> dict[str, Any]:
        x, states = args[0], list(args[1:])
        y, nxt = _run_step(ms, x, states, "tf", tf)
        outputs = {STEP_OUTPUT: tf.identity(y, name=STEP_OUTPUT)}
        for name, tensor in zip(out_names[1:], nxt, strict=True):
            outputs[name] = tf.identity(tensor, name=name)
        return outputs

    signature = [
        tf.TensorSpec(shape, getattr(tf, dtype), name=name) for name, shape, dtype in specs
    ]
    module = tf.Module()
    # No autograph: the step math is straight-line TF ops, and tracing it plainly is quicker.
    module.serve = tf.function(serve, input_signature=signature, autograph=False)
    module.input_names = names
    return module


def build_sequence_module(model: Any, ms: ModelSpec) -> Any:
    """Wrap a Keras model (any framework) in a batch-1 signature: input `x`, output `y`."""
    tf = import_tf()
    shape = (1, ms.seq_len) if ms.token_input else (1, ms.seq_len, ms.in_dim)
    dtype = tf.int32 if ms.token_input else tf.float32
    module = tf.Module()
    # Track the weights only: tracking the Keras model itself makes tf.saved_model.save trace and
    # serialise every layer's call functions (Keras metadata the converter never reads), which
    # is most of the sequence graph's build time.
    module.weights = list(model.variables)

    def serve(x: Any) -> dict[str, Any]:
        return {STEP_OUTPUT: model(x, training=False)}

    module.serve = tf.function(
        serve,
        input_signature=[tf.TensorSpec(shape, dtype, name=STEP_INPUT)],
        autograph=False,
    )
    return module


def save_module(module: Any, path: Path) -> None:
    """SavedModel with the `serving_default` signature, for the isolated converter."""
    tf = import_tf()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})


def run_step_numpy(ms: ModelSpec, xs: np.ndarray) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Run the float step math over one sequence in NumPy (float64).

    Returns the per-step outputs [T, ...] and the inputs fed at every step (x and states), which
    are the realistic calibration samples for a quantized step model.
    """
    specs = step_input_specs(ms)
    states = [np.zeros(shape, np.float64) for _, shape, _ in specs[1:]]
    ys = []
    feeds = []
    for t in range(xs.shape[0]):
        x = np.asarray(xs[t : t + 1], np.int64 if ms.token_input else np.float64)
        if ms.token_input:
            x = x.reshape(1)
        feeds.append(
            {specs[0][0]: x.astype(np.int32 if ms.token_input else np.float32)}
            | {
                name: s.astype(np.float32)
                for (name, _, _), s in zip(specs[1:], states, strict=True)
            }
        )
        y, states = _run_step(ms, x, states, "numpy")
        ys.append(np.asarray(y, np.float64)[0])
    return np.stack(ys), feeds


def _layer_states_numpy(spec: Any, handler: Any, ys: np.ndarray, key: str, out: dict) -> np.ndarray:
    """Run one layer over a whole sequence ys [T, ...] in NumPy, recording max |state| under
    `key`_role; returns the layer's output sequence [T', ...]."""
    if spec.kind == "Bidirectional":
        c = spec.config
        parts = []
        for sub, rev in ((c["forward"], False), (c["backward"], True)):
            sh = _sub_handler(sub)
            seq = ys[::-1] if rev else ys
            y = _layer_states_numpy(sub, sh, seq, f"{key}_{'bwd' if rev else 'fwd'}", out)
            if rev and sub.config["return_sequences"]:
                y = y[::-1]
            parts.append(y)
        merge = {
            "concat": lambda a, b: np.concatenate([a, b], axis=-1),
            "sum": lambda a, b: a + b,
            "mul": lambda a, b: a * b,
            "ave": lambda a, b: (a + b) / 2.0,
        }[c["merge_mode"]]
        return merge(*parts)
    if spec.config.get("go_backwards"):
        ys = ys[::-1]
    states = [np.zeros((1, *st.shape), np.float64) for st in handler.states(spec)]
    outs = []
    for t in range(ys.shape[0]):
        y, states = handler.step_numpy(spec, ys[t : t + 1], states)
        for st, v in zip(handler.states(spec), states, strict=True):
            name = f"{key}_{st.role}"
            out[name] = max(out.get(name, 0.0), float(np.max(np.abs(v))))
        outs.append(np.asarray(y, np.float64)[0])
    seq = np.stack(outs)
    if handler.recurrent and not spec.config.get("return_sequences", True):
        seq = seq[-1:]
    return seq


def _sub_handler(spec: Any) -> Any:
    from edgelstm.convert.layers import handler_for

    return handler_for(spec.kind, spec.name)


def state_abs_max(ms: ModelSpec, xs: np.ndarray) -> dict[str, float]:
    """max |v| of every state input (`state{k}_{h,c,win}`) while the float cell runs over the
    sequences `xs`: the ranges quantized states must hold.

    Streamable models run the step math; the others (Bidirectional, go_backwards, pooling, ...)
    run layer by layer over the whole batch: recurrent layers in the NumPy cell (Bidirectional
    halves as `{layer}_fwd_{role}` / `{layer}_bwd_{role}`), every other layer in its tf_keras
    rebuild, so an LSTM behind a layer that mixes time steps still gets its range measured."""
    out: dict[str, float] = {}
    if ms.streamable:
        for seq in xs:
            for feed in run_step_numpy(ms, seq)[1]:
                for name, v in feed.items():
                    if name.startswith("state"):
                        out[name] = max(out.get(name, 0.0), float(np.max(np.abs(v))))
        return out
    ks = {id(spec): k for k, spec, _ in ms.state_layout()}
    # spec index -> its outputs for every sequence [N, ...]; None where a layer could not be run
    # here (no state is gathered past it: the converter's own ranges stand)
    vals: dict[int, Any] = {-1: np.asarray(xs, np.int32 if ms.token_input else np.float32)}
    for i, (spec, handler) in enumerate(zip(ms.layers, ms.handlers, strict=True)):
        ins = [vals[j] for j in spec.inputs]
        vals[i] = None
        if any(v is None for v in ins):
            continue
        if handler.recurrent:
            key = f"state{ks[id(spec)]}" if id(spec) in ks else spec.name
            ys = np.stack([_layer_states_numpy(spec, handler, v, key, out) for v in ins[0]])
            vals[i] = ys if _returns_sequences(spec) else ys[:, -1]
        else:
            vals[i] = _keras_layer_numpy(spec, handler, ins)
    return out


def _returns_sequences(spec: Any) -> bool:
    sub = spec.config.get("forward")  # a Bidirectional: its halves say
    return bool((sub.config if sub is not None else spec.config).get("return_sequences", True))


def _keras_layer_numpy(spec: Any, handler: Any, ins: list[np.ndarray]) -> np.ndarray | None:
    """One non-recurrent layer applied to a batch through its tf_keras rebuild (the layer the
    sequence model converts), or None when it cannot run on its own."""
    keras = import_tf_keras()
    ins = [v.astype(np.float32) if v.dtype.kind == "f" else v for v in ins]
    try:
        tensors = [keras.Input(shape=v.shape[1:], dtype=str(v.dtype)) for v in ins]
        y = handler.sequence(spec, tensors[0] if len(tensors) == 1 else tensors, keras)
        return np.asarray(keras.Model(tensors, y)(ins if len(ins) > 1 else ins[0]), np.float64)
    except Exception:  # a range estimate only: the converter's calibration stands without it
        return None
