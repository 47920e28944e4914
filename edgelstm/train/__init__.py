"""Train a zoo recipe (Keras 3). GPU when present; tf.distribute.MirroredStrategy over >1 device.

Recipes whose `train` settings say `"tbptt": true` train with truncated backpropagation through
time: long streams are cut into chunks, laid out so each batch row continues the same stream
(`zoo.data.tbptt_layout`), and a stateful copy of the model carries the state from chunk to chunk.
The saved model is the ordinary (stateless, fixed-length) architecture with the trained weights.
"""

from __future__ import annotations

from dataclasses import asdict

from edgelstm.train.device import cudnn_warnings
from edgelstm.train.fit import train_and_save, train_recipe
from edgelstm.train.metrics import evaluate
from edgelstm.train.model import build_model, init_remember_bias
from edgelstm.train.save import TrainResult, save_training, vocab_json

__all__ = [
    "TrainResult",
    "asdict",
    "build_model",
    "cudnn_warnings",
    "evaluate",
    "init_remember_bias",
    "save_training",
    "train_and_save",
    "train_recipe",
    "vocab_json",
]
