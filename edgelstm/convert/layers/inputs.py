"""Input-side layers: Embedding (token ids) and Masking."""

from __future__ import annotations

from typing import Any

import numpy as np

from edgelstm.convert.layers.base import Handler, LayerSpec, _cfg, register


@register("Embedding")
class EmbeddingHandler(Handler):
    args = "input_dim, output_dim, mask_zero (the step model masks as Keras does)"
    kind = "Embedding"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        table = np.asarray(layer.get_weights()[0], np.float32)
        spec = LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={
                "input_dim": int(cfg["input_dim"]),
                "output_dim": int(cfg["output_dim"]),
                "mask_zero": bool(cfg.get("mask_zero", False)),
            },
            weights=[table],
            out_dim=int(cfg["output_dim"]),
        )
        if spec.config["mask_zero"]:
            spec.notes.append(
                f"{layer.name}: mask_zero=True: the step model treats token 0 as Keras does "
                "(the recurrent state is kept and the last output repeated)"
            )
        return spec

    def sequence(self, spec, x, keras):
        layer = keras.layers.Embedding(
            spec.config["input_dim"],
            spec.config["output_dim"],
            mask_zero=spec.config["mask_zero"],
            name=spec.name,
        )
        y = layer(x)
        layer.set_weights(spec.weights)
        return y

    def step(self, spec, x, states, tf):
        return tf.gather(tf.constant(spec.weights[0]), x), []

    def step_numpy(self, spec, x, states):
        return spec.weights[0][np.asarray(x, np.int64)], []

    def starts_mask(self, spec: LayerSpec) -> bool:
        return bool(spec.config["mask_zero"])

    def step_mask(self, spec, x, tf):
        if not spec.config["mask_zero"]:
            return None
        # A second GATHER from a 0/1 table (not a NOT_EQUAL + CAST): it quantizes exactly and
        # every runtime, the C engine included, has GATHER.
        table = (np.arange(spec.config["input_dim"]) != 0).astype(np.float32)[:, None]
        if tf is None:
            return table[np.asarray(x, np.int64)]
        return tf.gather(tf.constant(table), x)


@register("Masking")
class MaskingHandler(Handler):
    args = "mask_value (the step model masks as Keras does)"
    kind = "Masking"

    def parse(self, layer: Any, in_dim: int | None) -> LayerSpec:
        cfg = _cfg(layer)
        spec = LayerSpec(
            kind=self.kind,
            name=layer.name,
            config={"mask_value": float(cfg.get("mask_value", 0.0))},
            weights=[],
            out_dim=in_dim,
        )
        spec.notes.append(
            f"{layer.name}: Masking: the recurrent layers behind it are unrolled in the sequence model "
            "(a masked LSTM cannot use the fused op); the step model computes the mask itself "
            "(a masked step keeps the state and repeats the last output, as Keras does)"
        )
        spec.config["in_dim"] = in_dim
        return spec

    def sequence(self, spec, x, keras):
        return keras.layers.Masking(mask_value=spec.config["mask_value"], name=spec.name)(x)

    def step(self, spec, x, states, tf):
        return x, []

    def step_numpy(self, spec, x, states):
        return x, []

    def starts_mask(self, spec: LayerSpec) -> bool:
        return True

    def step_mask(self, spec, x, tf):
        # 1 unless every feature equals mask_value, exactly as Keras tests it (NOT_EQUAL + ANY +
        # CAST; a steep arithmetic ramp instead would need scales int8 kernels refuse).
        v = spec.config["mask_value"]
        if tf is None:
            return np.any(x != v, axis=-1, keepdims=True).astype(np.float64)
        return tf.cast(tf.reduce_any(tf.not_equal(x, v), axis=-1, keepdims=True), tf.float32)
