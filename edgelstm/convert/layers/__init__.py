"""The layer registry: one handler per Keras layer kind, one module per layer family.

A handler knows how to read the layer from a Keras 3 or tf_keras model into a framework-neutral
`LayerSpec`, how to rebuild it in tf_keras for the *sequence* model (where the converter fuses
LSTMs), and how to express one time step of it with plain TensorFlow ops for the *step* model
(state as explicit tensors). Adding a layer kind means adding one handler to its family's module
(`recurrent`, `per_step`, `activations`, `inputs`, `temporal`, `merge`); importing this package registers
them all. `python -m edgelstm.convert.layers` prints the README's support table.
"""

from edgelstm.convert.layers import activations, inputs, merge, per_step, recurrent, temporal
from edgelstm.convert.layers.activations import (
    ACTIVATIONS,
    activation_name,
    keras_activation,
    np_activation,
    tf_activation,
)
from edgelstm.convert.layers.base import (
    Handler,
    LayerSpec,
    StateSpec,
    handler_for,
    register,
    support_table,
    supported_layers,
)
from edgelstm.convert.layers.configs import (
    BidirectionalConfig,
    Conv1DConfig,
    LayerConfig,
    RecurrentConfig,
    StateOutputConfig,
)

__all__ = [
    "ACTIVATIONS",
    "BidirectionalConfig",
    "Conv1DConfig",
    "Handler",
    "LayerConfig",
    "LayerSpec",
    "RecurrentConfig",
    "StateOutputConfig",
    "StateSpec",
    "activation_name",
    "activations",
    "handler_for",
    "inputs",
    "keras_activation",
    "merge",
    "np_activation",
    "per_step",
    "recurrent",
    "register",
    "support_table",
    "supported_layers",
    "temporal",
    "tf_activation",
]
