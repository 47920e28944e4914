"""Timed runners: LiteRT (.tflite), ONNX Runtime (via tf2onnx) and Keras/TensorFlow.

Each runner returns `raw` (the runtime's bare invoke, inputs set once) and `python` (what a Python
caller pays per step or sequence: set inputs, invoke, read outputs, carry state) as Stats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import Budget, Stats, measure
from edgelstm.tflite_info import TFLiteInfo, read_tflite
from edgelstm.types import TensorInfo


@dataclass
class Timing:
    raw: Stats | None
    python: Stats | None
    notes: list[str] = field(default_factory=list)


def _quant(x: np.ndarray, t: TensorInfo) -> np.ndarray:
    if not t.scale or t.dtype.startswith("float"):
        return x.astype(t.dtype).reshape(t.shape)
    lim = np.iinfo(t.dtype)
    q = np.clip(np.round(x / t.scale) + t.zero_point, lim.min, lim.max)
    return q.astype(t.dtype).reshape(t.shape)


def _named(tensors: list[TensorInfo], name: str) -> TensorInfo:
    """The tensor called `name`, else the first one (plain-converter models name theirs freely)."""
    return next((t for t in tensors if t.name == name), tensors[0])


def litert_interpreter(path: Path, xnnpack: bool, threads: int = 1) -> Any:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    from edgelstm._tf import stderr_silenced

    kind = OpResolverType.AUTO if xnnpack else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    with stderr_silenced():
        interp = Interpreter(
            model_path=str(path), num_threads=threads, experimental_op_resolver_type=kind
        )
        interp.allocate_tensors()
    return interp


def litert_step(path: Path, xs: np.ndarray, budget: Budget, xnnpack: bool = True) -> Timing:
    """A step model (state as explicit I/O) or a T=1 sequence model (state in variables).

    xs: [T, D] float inputs cycled one per step in the Python-level loop.
    """
    info = read_tflite(path)
    interp = litert_interpreter(path, xnnpack)
    x_t = _named(info.inputs, "x")
    y_t = _named(info.outputs, "y")
    qx = [_quant(x, x_t) for x in xs]
    pairs = [
        (info.inputs[s.input_index].tensor_index, info.outputs[s.output_index].tensor_index)
        for s in info.states()
    ]
    for s in info.states():
        interp.set_tensor(
            info.inputs[s.input_index].tensor_index,
            np.full(s.shape, s.reset_raw, dtype=s.dtype),
        )
    interp.set_tensor(x_t.tensor_index, qx[0])
    raw = measure(interp.invoke, budget)

    pos = [0]
    set_t, get_t, invoke = interp.set_tensor, interp.get_tensor, interp.invoke

    def step() -> np.ndarray:
        set_t(x_t.tensor_index, qx[pos[0] % len(qx)])
        pos[0] += 1
        invoke()
        for i_idx, o_idx in pairs:
            set_t(i_idx, get_t(o_idx))
        return get_t(y_t.tensor_index)

    return Timing(raw, measure(step, budget))


def litert_step_loop(path: Path, xs: np.ndarray, budget: Budget, xnnpack: bool = True) -> Timing:
    """A whole sequence through a step model: T invokes (raw) or the full Python loop."""
    info = read_tflite(path)
    interp = litert_interpreter(path, xnnpack)
    x_t = _named(info.inputs, "x")
    qx = [_quant(x, x_t) for x in xs]
    states = info.states()
    pairs = [
        (info.inputs[s.input_index].tensor_index, info.outputs[s.output_index].tensor_index)
        for s in states
    ]
    resets = [
        (info.inputs[s.input_index].tensor_index, np.full(s.shape, s.reset_raw, dtype=s.dtype))
        for s in states
    ]
    y_idx = _named(info.outputs, "y").tensor_index
    set_t, get_t, invoke = interp.set_tensor, interp.get_tensor, interp.invoke
    for idx, value in resets:
        set_t(idx, value)
    set_t(x_t.tensor_index, qx[0])
    steps = len(qx)

    def raw_seq() -> None:
        for _ in range(steps):
            invoke()

    def py_seq() -> np.ndarray:
        for idx, value in resets:
            set_t(idx, value)
        y = None
        for q in qx:
            set_t(x_t.tensor_index, q)
            invoke()
            for i_idx, o_idx in pairs:
                set_t(i_idx, get_t(o_idx))
            y = get_t(y_idx)
        return y

    return Timing(measure(raw_seq, budget), measure(py_seq, budget))


def litert_sequence(path: Path, x: np.ndarray, budget: Budget, xnnpack: bool = True) -> Timing:
    """A whole-sequence model: one invoke (raw), or reset + set + invoke + get (Python)."""
    info = read_tflite(path)
    interp = litert_interpreter(path, xnnpack)
    x_t, y_t = info.inputs[0], info.outputs[0]
    qx = _quant(x, x_t)
    interp.set_tensor(x_t.tensor_index, qx)
    raw = measure(interp.invoke, budget)
    reset = interp.reset_all_variables if info.variable_tensors else (lambda: None)

    def py_seq() -> np.ndarray:
        reset()
        interp.set_tensor(x_t.tensor_index, qx)
        interp.invoke()
        return interp.get_tensor(y_t.tensor_index)

    return Timing(raw, measure(py_seq, budget))


def info_of(path: Path) -> TFLiteInfo:
    return read_tflite(path)


# ---------------------------------------------------------------- ONNX Runtime


def ort_session(model: bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])


def onnx_from_function(
    fn: Any, specs: list[tuple[str, tuple[int, ...], str]]
) -> tuple[bytes, list[str]]:
    """tf2onnx of a tf.function with the given (name, shape, dtype) inputs: (model, op types)."""
    import tf2onnx

    from edgelstm._tf import import_tf, stderr_silenced

    tf = import_tf()
    sig = [tf.TensorSpec(shape, getattr(tf, dtype), name=name) for name, shape, dtype in specs]
    with stderr_silenced():
        proto, _ = tf2onnx.convert.from_function(fn, input_signature=sig, opset=17)
    return proto.SerializeToString(), sorted({n.op_type for n in proto.graph.node})


def ort_step(model: bytes, feeds: dict[str, np.ndarray], xs: np.ndarray, budget: Budget) -> Timing:
    """Raw: run_with_iobinding with inputs bound once. Python: run() with state carried."""
    sess = ort_session(model)
    binding = sess.io_binding()
    for name, value in feeds.items():
        binding.bind_cpu_input(name, value)
    out_names = [o.name for o in sess.get_outputs()]
    for name in out_names:
        binding.bind_output(name)
    raw = measure(lambda: sess.run_with_iobinding(binding), budget)

    state_map = {n: n[: -len("_out")] for n in out_names if n.endswith("_out")}
    cur = dict(feeds)
    pos = [0]

    def step() -> np.ndarray:
        cur["x"] = xs[pos[0] % len(xs)].reshape(feeds["x"].shape)
        pos[0] += 1
        res = sess.run(out_names, cur)
        for name, value in zip(out_names, res, strict=True):
            if name in state_map:
                cur[state_map[name]] = value
        return res[out_names.index("y")]

    return Timing(raw, measure(step, budget))


def ort_sequence(model: bytes, x: np.ndarray, budget: Budget) -> Timing:
    sess = ort_session(model)
    name = sess.get_inputs()[0].name
    binding = sess.io_binding()
    binding.bind_cpu_input(name, x)
    for o in sess.get_outputs():
        binding.bind_output(o.name)
    raw = measure(lambda: sess.run_with_iobinding(binding), budget)
    return Timing(raw, measure(lambda: sess.run(None, {name: x}), budget))


# ---------------------------------------------------------------- Keras / TensorFlow


def keras_call(model: Any, x: np.ndarray, budget: Budget) -> Timing:
    """model(x) in eager mode (what a notebook does); only a Python-level figure exists."""
    from edgelstm._tf import import_tf

    tf = import_tf()
    xt = tf.constant(x)
    return Timing(None, measure(lambda: model(xt, training=False), budget))


def tf_function(fn: Any, args: list[Any], budget: Budget) -> Timing:
    """A traced tf.function called with fixed tensors (traced during warm-up)."""
    from edgelstm._tf import import_tf

    tf = import_tf()
    targs = [tf.constant(a) for a in args]
    return Timing(None, measure(lambda: fn(*targs), budget))
