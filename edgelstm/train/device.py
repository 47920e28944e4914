"""Where training runs: cuDNN compatibility of the recurrent settings, the distribution strategy."""

from __future__ import annotations

from typing import Any

from edgelstm.zoo import Recipe


def cudnn_warnings(recipe: Recipe) -> list[str]:
    """Recurrent settings that leave the fast cuDNN kernels (default: none)."""
    out = []
    for spec in recipe.layers:
        if spec["kind"] in ("LSTM", "GRU"):
            for key, ok in (("activation", "tanh"), ("recurrent_activation", "sigmoid")):
                if spec.get(key, ok) != ok:
                    out.append(f"{spec['kind']} {key}={spec[key]} is not cuDNN-compatible")
            if spec.get("recurrent_dropout"):
                out.append(f"{spec['kind']} recurrent_dropout disables cuDNN")
            if spec.get("unroll"):
                out.append(f"{spec['kind']} unroll=True disables cuDNN")
            if spec["kind"] == "GRU" and spec.get("reset_after") is False:
                out.append("GRU reset_after=False is not cuDNN-compatible")
            if spec.get("use_bias") is False:
                out.append(f"{spec['kind']} use_bias=False is not cuDNN-compatible")
        elif spec["kind"] == "SimpleRNN":
            out.append("SimpleRNN has no cuDNN kernel")
    return out


def _strategy(tf: Any, single: bool = False) -> tuple[Any, str]:
    gpus = tf.config.list_logical_devices("GPU")
    devices = gpus or tf.config.list_logical_devices("CPU")
    kind = devices[0].device_type if devices else "CPU"
    if len(devices) > 1 and not single:
        return tf.distribute.MirroredStrategy([d.name for d in devices]), f"{len(devices)}x{kind}"
    return tf.distribute.get_strategy(), kind
