"""Read a loaded Keras model into framework-neutral LayerSpecs: a chain, or a branching graph
with one input and one output."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgelstm.convert.layers import Handler, LayerSpec, StateSpec, handler_for
from edgelstm.errors import BadInputError, EdgeLSTMError, UnsupportedLayerError
from edgelstm.types import LayerSummary, ModelSummary, OutputKind


@dataclass
class ModelSpec:
    """The model's layers in topological order (each spec's `inputs` name the specs it reads;
    a chain has inputs [i - 1]) with a fixed-length, batch-1 deploy shape."""

    framework: str
    layers: list[LayerSpec]
    handlers: list[Handler]
    seq_len: int | None
    in_dim: int | None  # None for token (Embedding) input
    token_input: bool
    out_shape: list[int | None]
    output_kind: OutputKind
    notes: list[str] = field(default_factory=list)

    @property
    def is_chain(self) -> bool:
        return all(spec.inputs == [i - 1] for i, spec in enumerate(self.layers))

    @property
    def recurrent(self) -> bool:
        return any(h.recurrent for h in self.handlers)

    @property
    def stream_blockers(self) -> list[str]:
        return [b for spec in self.layers for b in spec.blockers]

    @property
    def streamable(self) -> bool:
        return not self.stream_blockers

    def state_layout(self) -> list[tuple[int, LayerSpec, list[StateSpec]]]:
        """(k, layer, its states) for every layer that carries state, k counting from 0."""
        out = []
        k = 0
        for spec, h in zip(self.layers, self.handlers, strict=True):
            states = h.states(spec)
            if states:
                out.append((k, spec, states))
                k += 1
        return out

    def summary(self) -> ModelSummary:
        shape_in: list[int | None] = [None, self.seq_len] + (
            [] if self.token_input else [self.in_dim]
        )
        return ModelSummary(
            framework=self.framework,
            seq_len=self.seq_len,
            input_shape=shape_in,
            output_shape=self.out_shape,
            output_kind=self.output_kind,
            token_input=self.token_input,
            layers=[
                LayerSummary(
                    name=s.name,
                    kind=s.kind,
                    units=s.config.get("units") if isinstance(s.config.get("units"), int) else None,
                    details={
                        **{
                            k: v
                            for k, v in s.config.items()
                            if isinstance(v, (int, float, str, bool)) and not k.startswith("_")
                        },
                        **({"masked": True} if s.masked else {}),
                    },
                )
                for s in self.layers
            ],
            recurrent=self.recurrent,
            streamable=self.streamable,
            stream_blockers=self.stream_blockers,
        )


def layer_graph(model: Any) -> list[tuple[Any, list[str]]]:
    """The model's layers in topological order, each with the names of the layers it takes its
    inputs from ("" = the model input): a chain, or a branching functional model with one input
    and one output (parallel branches merged by Concatenate/Add/...), every layer called once."""
    layers = [layer for layer in model.layers if type(layer).__name__ != "InputLayer"]
    cls = type(model).__name__
    if cls == "Sequential":
        nested = [
            layer
            for layer in layers
            if hasattr(layer, "layers")
            and type(layer).__name__ in ("Sequential", "Functional", "Model")
        ]
        if nested:
            raise UnsupportedLayerError(
                f"layer '{nested[0].name}': nested models are not supported; flatten the model"
            )
        return [(layer, [layers[i - 1].name if i else ""]) for i, layer in enumerate(layers)]
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise UnsupportedLayerError(
            f"model has {len(model.inputs)} inputs and {len(model.outputs)} outputs; edgelstm deploys "
            "single-input, single-output models"
        )
    config = model.get_config()
    by_name = {layer.name: layer for layer in layers}
    inputs: set[str] = set()
    parents: dict[str, list[str]] = {}
    for entry in config.get("layers", []):
        name = entry.get("name") or entry["config"]["name"]
        if entry["class_name"] == "InputLayer":
            inputs.add(name)
            continue
        nodes = entry.get("inbound_nodes", [])
        if len(nodes) > 1:
            raise UnsupportedLayerError(
                f"layer '{name}' is called {len(nodes)} times; shared layers are not supported"
            )
        if name not in by_name:
            raise UnsupportedLayerError(
                f"layer '{name}': nested models are not supported; flatten the model"
            )
        parents[name] = _inbound_names(nodes)
    for name, ps in parents.items():
        parents[name] = ["" if p in inputs else p for p in ps]
        unknown = [p for p in parents[name] if p and p not in parents]
        if unknown:
            raise UnsupportedLayerError(f"layer '{name}': input from unknown layer '{unknown[0]}'")
    out = _output_name(config.get("output_layers"))
    # Every layer must lead to the output: a dead branch would be converted for nothing.
    live, todo = set(), [out]
    while todo:
        n = todo.pop()
        if n and n not in live:
            live.add(n)
            todo.extend(parents.get(n, []))
    dead = [n for n in parents if n not in live]
    if dead:
        raise UnsupportedLayerError(f"layer '{dead[0]}' does not lead to the model's output")
    # Topological order, stable in the config's order (Keras lists layers sorted already).
    order: list[str] = []
    done = {""}
    pending = list(parents)
    while pending:
        ready = next((n for n in pending if all(p in done for p in parents[n])), None)
        if ready is None:
            raise UnsupportedLayerError(f"layer '{pending[0]}': the model's graph has a cycle")
        pending.remove(ready)
        order.append(ready)
        done.add(ready)
    if order[-1] != out:
        raise UnsupportedLayerError(f"layer '{out}' is the output but not the last layer")
    return [(by_name[n], parents[n]) for n in order]


def is_chain(graph: list[tuple[Any, list[str]]]) -> bool:
    """Whether each layer takes its one input from the layer before it."""
    prev = ""
    for layer, ps in graph:
        if ps != [prev]:
            return False
        prev = layer.name
    return True


def _output_name(spec: Any) -> str:
    """The output layer's name from a functional config's output_layers (Keras 3: [name, 0, 0]
    for one output; tf_keras: [[name, 0, 0]])."""
    while isinstance(spec, (list, tuple)) and spec and isinstance(spec[0], (list, tuple)):
        spec = spec[0]
    return str(spec[0])


def _inbound_names(nodes: Any) -> list[str]:
    names: list[str] = []

    def visit(obj: Any) -> None:
        if isinstance(obj, dict):
            hist = (
                obj.get("config", {}).get("keras_history")
                if obj.get("class_name") == "__keras_tensor__"
                else None
            )
            if hist:
                names.append(hist[0])
                return
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):  # Keras 3's get_config() gives call args as tuples
            # tf_keras: [[layer_name, node_index, tensor_index, kwargs]]
            if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
                names.append(obj[0])
                return
            for v in obj:
                visit(v)

    visit(nodes)
    return names


def parse_layer(h: Handler, layer: Any, dim: int | None) -> list[tuple[Handler, LayerSpec]]:
    """(handler, spec) pairs for one Keras layer (an RNN of stacked cells gives several), with
    anything the handler did not foresee in a user's layer (an odd config value, weights of an
    unexpected shape) reported as that layer's problem."""
    try:
        many = getattr(h, "parse_many", None)
        return many(layer, dim) if many else [(h, h.parse(layer, dim))]
    except EdgeLSTMError:
        raise
    except Exception as exc:
        raise UnsupportedLayerError(
            f"cannot convert layer '{layer.name}' ({type(layer).__name__}): "
            f"{type(exc).__name__}: {_first_line(exc)}"
        ) from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else ""


def parse_model(model: Any, framework: str, seq_len: int | None = None) -> ModelSpec:
    """Turn a Keras model into a ModelSpec with a fixed sequence length."""
    in_shape = (
        list(model.input_shape)
        if not isinstance(model.input_shape, list)
        else list(model.input_shape[0])
    )
    out_shape = (
        list(model.output_shape)
        if not isinstance(model.output_shape, list)
        else list(model.output_shape[0])
    )
    if len(in_shape) not in (2, 3):
        raise BadInputError(
            f"model input shape {tuple(in_shape)} is not a sequence: expected (batch, time, features) "
            "or (batch, time) tokens"
        )
    model_len = in_shape[1]
    if seq_len is not None and seq_len < 1:
        raise BadInputError(f"--seq-len must be at least 1 (got {seq_len})")
    if seq_len is not None and model_len is not None and seq_len != model_len:
        raise BadInputError(
            f"--seq-len {seq_len} differs from the model's fixed sequence length {model_len}"
        )
    seq = seq_len or model_len
    if seq is None:
        raise BadInputError(
            "the model's sequence length is None: pass --seq-len T to fix it for deployment"
        )
    graph = layer_graph(model)
    if not graph:
        raise BadInputError("the model has no layers")
    token_input = len(in_shape) == 2
    if token_input:
        first = [layer for layer, ps in graph if "" in ps]
        if len(first) != 1 or type(first[0]).__name__ != "Embedding":
            raise BadInputError(
                f"model input shape {tuple(in_shape)} has no feature axis and the first layer is "
                "not an Embedding"
            )
    in_dim: int | None = None if token_input else int(in_shape[2])
    specs: list[LayerSpec] = []
    handlers: list[Handler] = []
    index = {"": -1}  # layer name -> the index of its (last) spec; -1: the model input
    dims: dict[int, int | None] = {-1: in_dim}
    for layer, ps in graph:
        h = handler_for(type(layer).__name__, layer.name)
        srcs = [index[p] for p in ps]
        if h.merges:
            pairs = parse_layer(h, layer, [dims[j] for j in srcs])
        elif len(srcs) != 1:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' ({type(layer).__name__}) takes {len(srcs)} inputs; "
                "edgelstm supports that for merge layers only"
            )
        else:
            pairs = parse_layer(h, layer, dims[srcs[0]])
        for hh, spec in pairs:  # an RNN of stacked cells: a chain of several specs
            spec.inputs = srcs
            specs.append(spec)
            handlers.append(hh)
            srcs = [len(specs) - 1]
            dims[srcs[0]] = spec.out_dim
        index[layer.name] = len(specs) - 1
    # Masks follow the data: a recurrent layer fed by a masked tensor skips masked steps.
    masked = {-1: False}
    for i, (h, spec) in enumerate(zip(handlers, specs, strict=True)):
        fed = [masked[j] for j in spec.inputs]
        if h.merges and any(fed):
            raise UnsupportedLayerError(
                f"layer '{spec.name}' ({spec.kind}) merges masked sequences; not supported"
            )
        if h.recurrent and fed[0]:
            spec.masked = True
            for sub in ("forward", "backward"):
                if sub in spec.config:
                    spec.config[sub].masked = True
        masked[i] = fed[0] or h.starts_mask(spec)
    output_kind = OutputKind.MANY_TO_MANY if len(out_shape) == 3 else OutputKind.MANY_TO_ONE
    spec_model = ModelSpec(
        framework=framework,
        layers=specs,
        handlers=handlers,
        seq_len=int(seq),
        in_dim=None if token_input else int(in_shape[2]),
        token_input=token_input,
        out_shape=out_shape,
        output_kind=output_kind,
    )
    # A recurrent layer that returns only its last output ends streaming equivalence unless
    # everything after it is per-step (then the step output is "the answer if the sequence ended now").
    after_last = {-1: False}
    for i, (spec, h) in enumerate(zip(specs, handlers, strict=True)):
        seen_last = any(after_last[j] for j in spec.inputs)
        if seen_last and not h.per_step:
            spec.blockers.append(f"{spec.name}: follows a layer with return_sequences=False")
        # (a Bidirectional's config has no return_sequences: it blocks streaming on its own)
        after_last[i] = seen_last or (h.recurrent and not spec.config.get("return_sequences", True))
    for spec in specs:
        spec_model.notes.extend(spec.notes)
    if not spec_model.recurrent:
        spec_model.notes.append("the model has no recurrent layer (converted anyway)")
    return spec_model
