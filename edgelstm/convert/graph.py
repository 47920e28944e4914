"""Read a loaded Keras model into framework-neutral LayerSpecs: a chain, or a branching graph
with one or several inputs and outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from edgelstm.convert.layers import Handler, LayerSpec, StateSpec, handler_for
from edgelstm.convert.layers.configs import BidirectionalConfig, StateOutputConfig
from edgelstm.errors import BadInputError, EdgeLSTMError, UnsupportedLayerError
from edgelstm.types import LayerSummary, ModelSummary, OutputKind


@dataclass
class IOSpec:
    """One model input or output.

    Signature names: `x` / `y` for a model with one input / one output (every single-I/O
    artifact is unchanged), else `x0, x1, ...` / `y0, y1, ...` in the Keras model's
    inputs / outputs order; `keras_name` is the Keras tensor's name."""

    name: str
    keras_name: str
    shape: tuple[int, ...]  # per sample, no batch axis: (T, D) or (T,) tokens, (F,) side features
    sequence: bool  # input: one row per time step (else fed whole, at every step of a stream)
    source: int  # inputs: -1 - k (the spec index layers read it by); outputs: the spec index
    tokens: bool = False

    @property
    def dtype(self) -> str:
        return "int32" if self.tokens else "float32"


def io_names(n: int, stem: str) -> list[str]:
    """`x`/`y` for one tensor, `x0, x1, ...` for several."""
    return [stem] if n == 1 else [f"{stem}{k}" for k in range(n)]


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
    inputs: list[IOSpec] = field(default_factory=list)
    outputs: list[IOSpec] = field(default_factory=list)

    @property
    def multi_io(self) -> bool:
        """Several inputs or several outputs (data travels as Named arrays, not one ndarray)."""
        return len(self.inputs) > 1 or len(self.outputs) > 1

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
                    units=s.units,
                    details={**s.details(), **({"masked": True} if s.masked else {})},
                )
                for s in self.layers
            ],
            recurrent=self.recurrent,
            streamable=self.streamable,
            stream_blockers=self.stream_blockers,
        )


def layer_graph(model: Any) -> list[tuple[Any, list[str]]]:
    """The model's layers in topological order, each with the names of the layers it takes its
    inputs from ("" = the model input): a chain, or a branching functional model (parallel
    branches merged by Concatenate/Add/...), every layer called once. With several inputs, a
    parent is the input's name (see `model_io`); `name#k` is output k of a layer with several."""
    return _layer_graph(model)[0]


def model_io(model: Any) -> tuple[list[str], list[str]]:
    """(input names, output names) of a model, in the Keras model's order: the names parents
    in `layer_graph` use for inputs (just "" with one input), and the output tensors' layer
    names (`name#k` for output k > 0 of a layer with several)."""
    return _layer_graph(model)[1:]


def _layer_graph(model: Any) -> tuple[list[tuple[Any, list[str]]], list[str], list[str]]:
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
        graph = [(layer, [layers[i - 1].name if i else ""]) for i, layer in enumerate(layers)]
        last = layers[-1].name if layers else ""
        n_out = len(_shapes(model.output_shape)) if layers else 1
        return graph, [""], [last] + [f"{last}#{k}" for k in range(1, n_out)]
    config = model.get_config()
    by_name = {layer.name: layer for layer in layers}
    in_order = _tensor_names(config.get("input_layers"))
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
    single = len(in_order) <= 1
    for name, ps in parents.items():
        parents[name] = ["" if single and p in inputs else p for p in ps]
        unknown = [p for p in parents[name] if p and p.split("#")[0] not in parents.keys() | inputs]
        if unknown:
            raise UnsupportedLayerError(f"layer '{name}': input from unknown layer '{unknown[0]}'")
    outs = _tensor_names(config.get("output_layers"))
    in_names = [""] if single else [n.split("#")[0] for n in in_order]
    unused = [n for n in in_names if n and not any(n in ps for ps in parents.values())]
    if unused:
        raise UnsupportedLayerError(f"model input '{unused[0]}' is not used by any layer")
    direct = [n for n in outs if n.split("#")[0] not in parents]
    if direct:
        raise UnsupportedLayerError(f"model output '{direct[0]}' is a model input")
    # Every layer must lead to an output: a dead branch would be converted for nothing.
    live, todo = set(), [n.split("#")[0] for n in outs]
    while todo:
        n = todo.pop()
        if n and n not in live:
            live.add(n)
            todo.extend(p.split("#")[0] for p in parents.get(n, []))
    dead = [n for n in parents if n not in live]
    if dead:
        raise UnsupportedLayerError(f"layer '{dead[0]}' does not lead to the model's output")
    # Topological order, stable in the config's order (Keras lists layers sorted already).
    order: list[str] = []
    done = {""} | inputs
    pending = list(parents)
    while pending:
        ready = next((n for n in pending if all(p.split("#")[0] in done for p in parents[n])), None)
        if ready is None:
            raise UnsupportedLayerError(f"layer '{pending[0]}': the model's graph has a cycle")
        pending.remove(ready)
        order.append(ready)
        done.add(ready)
    if len(outs) == 1 and order[-1] != outs[0]:
        raise UnsupportedLayerError(f"layer '{outs[0]}' is the output but not the last layer")
    return [(by_name[n], parents[n]) for n in order], in_names, outs


def is_chain(graph: list[tuple[Any, list[str]]]) -> bool:
    """Whether each layer takes its one input from the layer before it."""
    prev = ""
    for layer, ps in graph:
        if ps != [prev]:
            return False
        prev = layer.name
    return True


def _tensor_names(spec: Any) -> list[str]:
    """Layer names from a functional config's input_layers / output_layers (Keras 3: [name, 0, 0]
    for one tensor, a list or tuple of those for several; tf_keras: [[name, 0, 0], ...]), with
    `#k` appended for tensor k > 0 of a layer with several outputs."""
    if not spec:
        return []
    if isinstance(spec, (list, tuple)) and spec and isinstance(spec[0], str):
        spec = [spec]
    out = []
    for item in spec:
        while isinstance(item, (list, tuple)) and item and isinstance(item[0], (list, tuple)):
            item = item[0]
        k = int(item[2]) if len(item) > 2 and isinstance(item[2], int) else 0
        out.append(str(item[0]) + (f"#{k}" if k else ""))
    return out


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
                names.append(hist[0] + (f"#{hist[2]}" if len(hist) > 2 and hist[2] else ""))
                return
            for v in obj.values():
                visit(v)
        elif isinstance(obj, (list, tuple)):  # Keras 3's get_config() gives call args as tuples
            # tf_keras: [[layer_name, node_index, tensor_index, kwargs]]
            if len(obj) >= 3 and isinstance(obj[0], str) and isinstance(obj[1], int):
                k = obj[2] if isinstance(obj[2], int) else 0
                names.append(obj[0] + (f"#{k}" if k else ""))
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


def _shapes(shape: Any) -> list[list[int | None]]:
    """A Keras input_shape / output_shape as a list of shapes (one per tensor)."""
    if isinstance(shape, tuple) and shape and isinstance(shape[0], (tuple, list)):
        shape = list(shape)
    if isinstance(shape, dict):
        shape = list(shape.values())
    if isinstance(shape, list) and shape and isinstance(shape[0], (tuple, list)):
        return [list(s) for s in shape]
    return [list(shape)]


def _input_layer_name(model: Any) -> str:
    """The name of a one-input model's InputLayer (Keras 3 names its tensor keras_tensor_N)."""
    for layer in getattr(model, "layers", []):
        if type(layer).__name__ == "InputLayer":
            return str(layer.name)
    try:
        hist = model.inputs[0]._keras_history
        op = getattr(hist, "operation", None) or getattr(hist, "layer", None)
        return str(op.name)
    except (AttributeError, IndexError, TypeError):
        return "x"


def parse_model(model: Any, framework: str, seq_len: int | None = None) -> ModelSpec:
    """Turn a Keras model into a ModelSpec with a fixed sequence length."""
    graph, in_names, out_names = _layer_graph(model)
    in_shapes = _shapes(model.input_shape)
    out_shapes = _shapes(model.output_shape)
    multi = len(in_shapes) > 1
    if len(in_shapes) != len(in_names) or len(out_shapes) != len(out_names):
        raise UnsupportedLayerError(
            f"model has {len(in_shapes)} inputs and {len(out_shapes)} outputs, but its graph "
            f"lists {len(in_names)} and {len(out_names)}"
        )
    in_shape = in_shapes[0]
    out_shape = out_shapes[0]
    if seq_len is not None and seq_len < 1:
        raise BadInputError(f"--seq-len must be at least 1 (got {seq_len})")
    if not graph:
        raise BadInputError("the model has no layers")
    # Each input: a sequence (batch, time, features), token ids (batch, time) into an Embedding,
    # or (with several inputs) side features (batch, features) fed whole.
    kinds: list[str] = []
    for name, shape in zip(in_names, in_shapes, strict=True):
        first = [layer for layer, ps in graph if name in ps]
        embeds = bool(first) and all(type(f).__name__ == "Embedding" for f in first)
        where = f"model input '{name}' shape" if multi else "model input shape"
        if len(shape) == 3:
            kinds.append("sequence")
        elif len(shape) == 2 and embeds:
            kinds.append("tokens")
        elif len(shape) == 2 and multi:
            kinds.append("features")
        elif len(shape) == 2 and not multi:
            raise BadInputError(
                f"{where} {tuple(shape)} has no feature axis and the first layer is not an "
                "Embedding"
            )
        else:
            raise BadInputError(
                f"{where} {tuple(shape)} is not a sequence: expected (batch, time, features) "
                "or (batch, time) tokens"
            )
    if multi and "tokens" in kinds:
        raise UnsupportedLayerError(
            "a model with several inputs takes float inputs only: token-id (Embedding) input "
            f"'{in_names[kinds.index('tokens')]}' is not supported"
        )
    seq_shapes = [sh for sh, k in zip(in_shapes, kinds, strict=True) if k != "features"]
    if not seq_shapes:
        raise BadInputError("none of the model's inputs is a sequence (batch, time, features)")
    lengths = {sh[1] for sh in seq_shapes if sh[1] is not None}
    if len(lengths) > 1:
        raise BadInputError(
            f"the model's sequence inputs have different lengths {sorted(lengths)}; edgelstm "
            "needs one time axis"
        )
    model_len = next(iter(lengths), None)
    if seq_len is not None and model_len is not None and seq_len != model_len:
        raise BadInputError(
            f"--seq-len {seq_len} differs from the model's fixed sequence length {model_len}"
        )
    seq = seq_len or model_len
    if seq is None:
        raise BadInputError(
            "the model's sequence length is None: pass --seq-len T to fix it for deployment"
        )
    token_input = kinds[0] == "tokens"
    in_dim: int | None = None if token_input else int(in_shape[-1])
    specs: list[LayerSpec] = []
    handlers: list[Handler] = []
    # layer name -> the index of its (last) spec; -1 - k: model input k
    index = {name: -1 - k for k, name in enumerate(in_names)}
    dims: dict[int, int | None] = {
        -1 - k: None if kind == "tokens" else int(sh[-1])
        for k, (sh, kind) in enumerate(zip(in_shapes, kinds, strict=True))
    }
    for layer, ps in graph:
        h = handler_for(type(layer).__name__, layer.name)
        missing = [p for p in ps if p not in index]
        if missing:
            src, _, k = missing[0].partition("#")
            raise UnsupportedLayerError(
                f"layer '{layer.name}' reads output {k or 0} of layer '{src}', which has several "
                "outputs; only its first output can feed other layers"
            )
        srcs = [index[p] for p in ps]
        if h.merges:
            pairs = parse_layer(h, layer, [dims[j] for j in srcs])
        elif len(srcs) != 1 and h.recurrent and any("#" in p for p in ps[1:]):
            src = next(p for p in ps[1:] if "#" in p).split("#")[0]
            raise UnsupportedLayerError(
                f"layer '{layer.name}' takes its initial state from layer '{src}' "
                "(return_state); deploy the encoder (its final states as outputs) and the "
                "decoder (a step model: StepRunner.set_state) as two models"
            )
        elif len(srcs) != 1:
            raise UnsupportedLayerError(
                f"layer '{layer.name}' ({type(layer).__name__}) takes {len(srcs)} inputs; "
                "edgelstm supports that for merge layers only"
            )
        else:
            pairs = parse_layer(h, layer, dims[srcs[0]])
        first = srcs
        for hh, spec in pairs:  # an RNN of stacked cells: a chain of several specs
            k = spec.output_index
            # a layer's further outputs: a Bidirectional half reads the layer's input, a final
            # state (return_state) the recurrent spec it belongs to
            spec.inputs = first if k is not None else srcs
            if isinstance(spec.config, StateOutputConfig):
                spec.inputs = [len(specs) - k]
            specs.append(spec)
            handlers.append(hh)
            srcs = [len(specs) - 1]
            dims[srcs[0]] = spec.out_dim
            if k:  # output k of a layer with several (Bidirectional merge_mode=None)
                index[f"{layer.name}#{k}"] = len(specs) - 1
        outs0 = [i for i, (_, sp) in enumerate(pairs) if sp.output_index == 0]
        index[layer.name] = len(specs) - len(pairs) + outs0[0] if outs0 else len(specs) - 1
    inputs = [
        IOSpec(
            name=sig,
            keras_name=name or _input_layer_name(model),
            shape=(int(seq),)
            if kind == "tokens"
            else ((int(seq), int(sh[-1])) if kind == "sequence" else (int(sh[-1]),)),
            sequence=kind != "features",
            source=-1 - k,
            tokens=kind == "tokens",
        )
        for k, (sig, name, sh, kind) in enumerate(
            zip(io_names(len(in_names), "x"), in_names, in_shapes, kinds, strict=True)
        )
    ]
    outputs = []
    for sig, name, sh in zip(io_names(len(out_names), "y"), out_names, out_shapes, strict=True):
        if name not in index:
            src, _, k = name.partition("#")
            raise UnsupportedLayerError(
                f"model output {k} of layer '{src}': only a layer's first output can be a model "
                "output"
            )
        shape = tuple(int(seq) if d is None else int(d) for d in sh[1:])
        outputs.append(IOSpec(sig, name, shape, sequence=len(sh) == 3, source=index[name]))
    # Masks follow the data: a recurrent layer fed by a masked tensor skips masked steps.
    masked: dict[int, bool] = {i.source: False for i in inputs}
    for i, (h, spec) in enumerate(zip(handlers, specs, strict=True)):
        fed = [masked[j] for j in spec.inputs]
        if h.merges and any(fed):
            raise UnsupportedLayerError(
                f"layer '{spec.name}' ({spec.kind}) merges masked sequences; not supported"
            )
        if h.recurrent and fed[0]:
            spec.masked = True
            if isinstance(spec.config, BidirectionalConfig):
                spec.config.forward.masked = spec.config.backward.masked = True
        masked[i] = fed[0] or h.starts_mask(spec)
        if multi and masked[i]:
            raise UnsupportedLayerError(
                f"layer '{spec.name}' ({spec.kind}): masking in a model with several inputs is "
                "not supported"
            )
    output_kind = OutputKind.MANY_TO_MANY if len(out_shape) == 3 else OutputKind.MANY_TO_ONE
    spec_model = ModelSpec(
        framework=framework,
        layers=specs,
        handlers=handlers,
        seq_len=int(seq),
        in_dim=in_dim,
        token_input=token_input,
        out_shape=out_shape,
        output_kind=output_kind,
        inputs=inputs,
        outputs=outputs,
    )
    # A recurrent layer that returns only its last output ends streaming equivalence unless
    # everything after it is per-step (then the step output is "the answer if the sequence ended now").
    after_last = {i.source: False for i in inputs}
    for i, (spec, h) in enumerate(zip(specs, handlers, strict=True)):
        seen_last = any(after_last[j] for j in spec.inputs)
        if seen_last and not h.per_step and not isinstance(spec.config, StateOutputConfig):
            spec.blockers.append(f"{spec.name}: follows a layer with return_sequences=False")
        # (a Bidirectional's config has no return_sequences: it blocks streaming on its own)
        after_last[i] = seen_last or (h.recurrent and not spec.returns_sequences)
    for spec in specs:
        spec_model.notes.extend(spec.notes)
    if not spec_model.recurrent:
        spec_model.notes.append("the model has no recurrent layer (converted anyway)")
    return spec_model
