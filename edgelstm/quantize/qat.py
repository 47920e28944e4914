"""Quantization-aware fine-tuning for LSTM, GRU and SimpleRNN models (tfmot refuses them).

The trained Keras model's weights are copied into a training-time twin written with plain TF ops
that mirrors the int8 *step* graph the converter builds (`edgelstm.convert.layers`): weight
matrices are fake-quantized per output channel (int8 symmetric, narrow range, as the converter
does), and every tensor the int8 graph requantizes — the layer input, x·K + b, h·R, the gate
pre-activations, the gate outputs (fixed ranges, like int8 LOGISTIC/TANH), the products, c and h —
goes through fake quantization with a range tracked by an exponential moving average. Gradients
pass straight through inside the range. After fine-tuning the weights go back into the plain Keras
architecture, so conversion takes the normal post-training int8 path (calibration included).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgelstm._tf import import_tf
from edgelstm.convert.layers import cells as cell_defs
from edgelstm.convert.layers.base import REGISTRY
from edgelstm.errors import BadInputError, UnsupportedLayerError

SUPPORTED = ("InputLayer", "Embedding", "LSTM", "GRU", "SimpleRNN", "Dense", "Dropout")


@dataclass
class QATResult:
    """What fine-tuning did: loss per epoch, steps, weight change and the tracked ranges."""

    epochs: int
    steps: int
    batch_size: int
    learning_rate: float
    loss_before: float
    loss_history: list[float]
    weight_change: float  # max |w_after - w_before| over all weights
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _no_split(_v: Any, _n: int) -> Any:
    raise AssertionError("the input projection does not split")


def _weights_fq(tf: Any, w: Any) -> Any:
    """Per-output-channel (last axis) symmetric int8, narrow range [-127, 127] like the converter."""
    m = tf.maximum(tf.reduce_max(tf.abs(w), axis=list(range(w.shape.rank - 1))), 1e-8)
    return tf.quantization.fake_quant_with_min_max_vars_per_channel(
        w, -m, m, num_bits=8, narrow_range=True
    )


class _Net:
    """The fake-quant twin of a Sequential-style chain of supported layers."""

    def __init__(self, model: Any, ema: float) -> None:
        import keras

        self.tf = tf = import_tf()
        self.ema = ema
        self.layers: list[tuple[str, Any, dict[str, Any], list[Any]]] = []
        self.ranges: dict[str, tuple[Any, Any]] = {}
        self.regs: list[tuple[Any, Any]] = []
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            raise UnsupportedLayerError("QAT needs a single-input, single-output model")
        from edgelstm.convert.graph import is_chain, layer_graph

        if not is_chain(layer_graph(model)):
            raise UnsupportedLayerError(
                "QAT needs a chain of layers; this model has parallel branches (quantize it "
                "without --qat)"
            )
        self.tokens = "int" in str(model.inputs[0].dtype)
        for layer in model.layers:
            kind = type(layer).__name__
            if kind not in SUPPORTED:
                raise UnsupportedLayerError(
                    f"layer '{layer.name}' ({kind}): QAT supports {', '.join(SUPPORTED[1:])}"
                )
            if kind in ("InputLayer", "Dropout"):
                continue
            cfg = layer.get_config()
            if cfg.get("mask_zero"):
                raise UnsupportedLayerError(f"layer '{layer.name}': QAT does not support masking")
            vars_ = [tf.Variable(w, dtype=tf.float32) for w in layer.get_weights()]
            self.layers.append((kind, layer, cfg, vars_))
            src = getattr(layer, "cell", layer)
            for attr, i in (("kernel_regularizer", 0), ("recurrent_regularizer", 1)):
                reg = getattr(src, attr, None)
                if reg is not None and i < len(vars_):
                    self.regs.append((reg, vars_[i]))
        if not any(k in ("LSTM", "GRU", "SimpleRNN") for k, *_ in self.layers):
            raise BadInputError("--qat needs a model with an LSTM, GRU or SimpleRNN layer")
        self.keras = keras

    @property
    def variables(self) -> list[Any]:
        return [v for *_, vs in self.layers for v in vs]

    # --- fake quantization of activations ----------------------------------------------------

    def _range(self, name: str) -> tuple[Any, Any]:
        if name not in self.ranges:
            tf = self.tf
            self.ranges[name] = (
                tf.Variable(0.0, trainable=False, name=f"{name}_min"),
                tf.Variable(0.0, trainable=False, name=f"{name}_max"),
            )
        return self.ranges[name]

    def forward(self, x: Any, quant: bool) -> tuple[Any, dict[str, Any], list[Any]]:
        """Output, the observed tensors per range name, and each LSTM's final cell state."""
        tf = self.tf
        seen: dict[str, Any] = {}
        cells: list[Any] = []

        def fq(name: str, t: Any, rng: dict[str, tuple[Any, Any]]) -> Any:
            seen.setdefault(name, t)
            if not quant:
                return t
            lo, hi = rng[name]
            return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)

        def fixed(t: Any, lo: float, hi: float) -> Any:
            # int8 LOGISTIC / TANH outputs have fixed scales (1/256, 1/128): no range to track
            return (
                tf.quantization.fake_quant_with_min_max_args(t, lo, hi, num_bits=8) if quant else t
            )

        y = x
        first = True
        for kind, layer, cfg, vs in self.layers:
            name = layer.name
            if kind == "Embedding":
                table = vs[0]
                if quant:  # one symmetric scale for the whole table
                    m = tf.maximum(tf.reduce_max(tf.abs(table)), 1e-8)
                    table = tf.quantization.fake_quant_with_min_max_vars(
                        table, -m, m, num_bits=8, narrow_range=True
                    )
                y = tf.gather(table, tf.cast(y, tf.int32))
                first = False
                continue
            if first and not self.tokens:
                y = fq("input", y, self.ranges)
            first = False
            if kind == "Dense":
                w = _weights_fq(tf, vs[0]) if quant else vs[0]
                z = tf.tensordot(y, w, 1) + (vs[1] if len(vs) > 1 else 0.0)
                act = self.keras.activations.get(cfg.get("activation"))
                # softmax/sigmoid outputs have fixed int8 ranges; track the pre-activation
                y = act(fq(f"{name}/z", z, self.ranges))
                continue
            y = self._recurrent(kind, cfg, vs, y, quant, fixed, name, seen, cells)
        return y, seen, cells

    def _recurrent(
        self,
        kind: str,
        cfg: dict[str, Any],
        vs: list[Any],
        x: Any,
        quant: bool,
        fixed: Callable[[Any, float, float], Any],
        name: str,
        seen: dict[str, Any],
        cells: list[Any],
    ) -> Any:
        """One recurrent layer over the sequence (tf.scan), mirroring the int8 step graph."""
        tf = self.tf
        units = int(cfg["units"])
        act = self.keras.activations.get(cfg.get("activation", "tanh"))
        ract = self.keras.activations.get(cfg.get("recurrent_activation", "sigmoid"))
        kernel, rec = vs[0], vs[1]
        bias = vs[2] if len(vs) > 2 else None
        if quant:
            kernel = _weights_fq(tf, kernel)
            rec = _weights_fq(tf, rec)
        if cfg.get("go_backwards"):
            x = tf.reverse(x, axis=[1])
        xs = tf.transpose(x, [1, 0, 2])  # time-major for scan
        batch = tf.shape(x)[0]
        rng = {k: (v[0].read_value(), v[1].read_value()) for k, v in self.ranges.items()}
        # The tensors observed inside the loop come out of the scan; min/max are taken over time.
        inner: dict[str, Any] = {}

        def q(point: str, t: Any) -> Any:
            key = f"{name}/{point}"
            inner[key] = t
            if not quant:
                return t
            lo, hi = rng[key]
            return tf.quantization.fake_quant_with_min_max_vars(t, lo, hi, num_bits=8)

        zero = tf.zeros([batch, units])
        reset_after = bool(cfg.get("reset_after", True))
        handler = REGISTRY[kind]
        if bias is None:
            bias = tf.zeros(list(handler.bias_shape(units, reset_after)))
        weights = (kernel, rec, bias)
        # the input projection for the whole sequence at once; the cell runs per step in tf.scan
        seq_ops = cell_defs.CellOps(lambda a, b: tf.tensordot(a, b, 1), lambda v: v, _no_split)
        xk_all = cell_defs.input_projection(kind, seq_ops, weights, xs, reset_after)
        ops = cell_defs.CellOps(
            tf.matmul, lambda v: v, lambda v, n: tf.split(v, n, axis=1), q=q, fixed=fixed
        )
        cell = cell_defs.CELLS[kind]

        def step(carry: Any, xk: Any) -> Any:
            _, states = cell(ops, weights, xk, list(carry), act, ract, reset_after)
            return tuple(states), dict(inner)

        init = tuple(zero for _ in handler.state_roles)

        def scan_fn(acc: Any, xk: Any) -> Any:
            return step(acc[0], xk)

        # one probe call fixes the structure (and shapes) of the per-step observations
        _, probe = step(init, xk_all[0])
        init_obs = {k: tf.zeros_like(v) for k, v in probe.items()}
        _, obs = tf.scan(scan_fn, xk_all, initializer=(init, init_obs))
        hs = obs[f"{name}/h"]  # [T, B, H]
        for k, v in obs.items():
            seen[k] = v
        if "c" in handler.state_roles:
            cells.append(obs[f"{name}/c"][-1])
        if cfg.get("return_sequences"):
            y = tf.transpose(hs, [1, 0, 2])
            return tf.reverse(y, axis=[1]) if cfg.get("go_backwards") else y
        return hs[-1]

    def init_ranges(self, x: np.ndarray) -> None:
        """Create the range variables and set them to min/max of a float pass over `x`."""
        tf = self.tf
        _, seen, _ = self.forward(tf.constant(x), quant=False)
        for k, t in seen.items():
            lo, hi = self._range(k)
            lo.assign(min(float(tf.reduce_min(t)), 0.0))
            hi.assign(max(float(tf.reduce_max(t)), 0.0))

    def update_ranges(self, seen: dict[str, Any]) -> None:
        """EMA of the batch min/max (zero always inside, as int8 zero points require)."""
        tf = self.tf
        for k, t in seen.items():
            lo, hi = self.ranges[k]
            lo.assign(self.ema * lo + (1 - self.ema) * tf.minimum(tf.reduce_min(t), 0.0))
            hi.assign(self.ema * hi + (1 - self.ema) * tf.maximum(tf.reduce_max(t), 0.0))

    def reg_loss(self) -> Any:
        tf = self.tf
        return tf.add_n([tf.cast(r(v), tf.float32) for r, v in self.regs]) if self.regs else 0.0


def qat_finetune(
    model: Any,
    x: np.ndarray,
    y: np.ndarray,
    *,
    loss: str,
    sample_weight: np.ndarray | None = None,
    epochs: int = 2,
    batch_size: int = 64,
    learning_rate: float = 1e-4,
    seed: int = 0,
    ema: float = 0.99,
    cell_limit: float | None = None,
    cell_penalty: float = 0.1,
    max_steps: int | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> QATResult:
    """Fine-tune `model` (a trained Keras model, changed in place) with fake quantization.

    cell_limit keeps LSTM cell states inside ±limit (the recipe's training penalty); max_steps
    caps the optimizer steps (tests). Deterministic for a seed.
    """
    import keras

    tf = import_tf()
    if epochs < 1:
        raise BadInputError("--epochs must be at least 1")
    if batch_size < 1 or learning_rate <= 0:
        raise BadInputError("QAT batch size and learning rate must be positive")
    if len(x) < 1 or len(x) != len(y):
        raise BadInputError(f"QAT data: {len(x)} inputs for {len(y)} targets")
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    net = _Net(model, ema)
    before = [v.numpy().copy() for v in net.variables]
    net.init_ranges(x[: min(len(x), 256)])
    loss_fn = keras.losses.get(loss)
    opt = keras.optimizers.Adam(learning_rate, clipnorm=1.0)
    variables = net.variables

    def batch_loss(xb: Any, yb: Any, wb: Any, quant: bool) -> tuple[Any, dict[str, Any]]:
        pred, seen, cells = net.forward(xb, quant)
        per = loss_fn(yb, pred)
        # per-sample weights [B] or per-step [B, T], broadcast over what the loss kept
        wb = tf.reshape(
            wb, tf.concat([tf.shape(wb), tf.ones([tf.rank(per) - tf.rank(wb)], tf.int32)], 0)
        )
        wb = wb * tf.ones_like(per)
        total = tf.reduce_sum(per * wb) / tf.maximum(tf.reduce_sum(wb), 1e-9)
        if cell_limit is not None and cells:
            for c in cells:
                total += cell_penalty * tf.reduce_mean(
                    tf.square(tf.nn.relu(tf.abs(c) - cell_limit))
                )
        return total + net.reg_loss(), seen

    @tf.function(reduce_retracing=True)
    def train_step(xb: Any, yb: Any, wb: Any) -> Any:
        with tf.GradientTape() as tape:
            value, seen = batch_loss(xb, yb, wb, True)
        grads = tape.gradient(value, variables)
        opt.apply_gradients(zip(grads, variables, strict=True))
        net.update_ranges(seen)
        return value

    @tf.function(reduce_retracing=True)
    def eval_step(xb: Any, yb: Any, wb: Any) -> Any:
        return batch_loss(xb, yb, wb, True)[0]

    y = np.asarray(y, np.float32)
    w = np.ones(len(y), np.float32) if sample_weight is None else np.asarray(sample_weight)
    w = w.astype(np.float32)
    xdt = np.int32 if net.tokens else np.float32
    x = np.asarray(x, xdt)
    rng = np.random.default_rng(seed)
    n_batches = max(len(x) // batch_size, 1)
    probe = slice(0, min(len(x), batch_size))
    loss_before = float(eval_step(x[probe], y[probe], w[probe]))
    history: list[float] = []
    steps = 0
    for epoch in range(epochs):
        order = rng.permutation(len(x))
        total = 0.0
        done = 0
        for b in range(n_batches):
            if max_steps is not None and steps >= max_steps:
                break
            idx = np.sort(order[b * batch_size : (b + 1) * batch_size])
            value = float(train_step(x[idx], y[idx], w[idx]))
            if not np.isfinite(value):
                raise BadInputError(f"QAT loss became {value} at step {steps}; lower --lr")
            total += value
            done += 1
            steps += 1
        history.append(total / max(done, 1))
        progress(f"QAT epoch {epoch + 1}/{epochs}: loss {history[-1]:.4f} ({steps} steps)")
    # weights back into the plain architecture: the normal converter path takes it from here
    it = iter(variables)
    for _kind, layer, _cfg, vs in net.layers:
        layer.set_weights([next(it).numpy() for _ in vs])
    change = max(float(np.abs(v.numpy() - b).max()) for v, b in zip(variables, before, strict=True))
    ranges = {
        k: (float(lo.numpy()), float(hi.numpy())) for k, (lo, hi) in sorted(net.ranges.items())
    }
    return QATResult(epochs, steps, batch_size, learning_rate, loss_before, history, change, ranges)
