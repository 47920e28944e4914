"""`edgelstm explain`: what a deployed step model's recurrent units do over time.

The step `.tflite` runs over a real input in LiteRT with every intermediate tensor kept; for each
recurrent layer the hidden state, the cell state and every gate activation are read from the
artifact itself at every step and dequantized. The float step model beside it (same manifest)
runs over the same input, so an int8 artifact is shown next to what float does: heatmaps of
units x time, gate saturation per unit, the quantization error per unit, and for character
models the text coloured by one unit and the units ranked by how well they track simple text
features (the char-rnn pictures, from the artifact a device runs).
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelstm.arrays import load_array, load_xy
from edgelstm.errors import BadInputError
from edgelstm.report import Html, Plot, Report, Table, heatmap, line_plot
from edgelstm.tflite_info import TFLiteInfo
from edgelstm.types import Artifact, Manifest, Quantization, Variant, manifest_from_dict

# Gate names per recurrent kind, in the order the step graph splits its projection (Keras order).
GATES = {"LSTM": ("i", "f", "g", "o"), "GRU": ("z", "r", "g"), "SimpleRNN": ()}
ACTIVATIONS = ("LOGISTIC", "TANH", "RELU", "HARD_SWISH", "RELU6", "ELU", "LEAKY_RELU")
# A gate counts as saturated beyond these fractions of its range (sigmoid near 0/1, tanh near -1/1).
SATURATION = 0.02


@dataclass
class LayerSignals:
    """Where one recurrent layer's signals live in the step graph (tensor indices)."""

    name: str
    kind: str
    units: int
    state: int  # k in state{k}_*
    tensors: dict[str, int] = field(default_factory=dict)  # "i"/"f"/.../"pre" -> tensor index
    outputs: dict[str, str] = field(default_factory=dict)  # "h"/"c" -> state output name


@dataclass
class Trace:
    """One artifact over one input: per layer, per signal, an array [T, units] (real values)."""

    file: str
    quantization: str
    outputs: np.ndarray  # [T, out]
    layers: list[dict[str, np.ndarray]]


@dataclass
class ExplainResult:
    """Traces of the artifact (and of its float sibling) over one input, with the analysis."""

    model: str
    layers: list[LayerSignals]
    inputs: np.ndarray
    trace: Trace
    reference: Trace | None = None
    target: np.ndarray | None = None
    text: str | None = None
    notes: list[str] = field(default_factory=list)

    def saturation(self, trace: Trace) -> list[dict[str, np.ndarray]]:
        """Per layer and gate: the fraction of steps each unit's gate is saturated."""
        out = []
        for spec, sig in zip(self.layers, trace.layers, strict=True):
            d = {}
            for g in GATES.get(spec.kind, ()):
                if g in sig:
                    a = sig[g]
                    lo, hi = (-1.0, 1.0) if g == "g" else (0.0, 1.0)
                    m = SATURATION * (hi - lo)
                    d[g] = np.mean((a <= lo + m) | (a >= hi - m), axis=0)
            out.append(d)
        return out

    def unit_ranking(self, top: int = 5) -> list[dict[str, Any]]:
        """For text input: units whose h (or c) correlates best with simple text features."""
        if self.text is None:
            return []
        feats = text_features(self.text[: len(self.inputs)])
        rows = []
        for li, (spec, sig) in enumerate(zip(self.layers, self.trace.layers, strict=True)):
            for sname in ("c", "h"):
                if sname not in sig:
                    continue
                a = sig[sname]
                for fname, f in feats.items():
                    if np.std(f) == 0:
                        continue
                    for u in range(a.shape[1]):
                        if np.std(a[:, u]) < 1e-9:
                            continue
                        r = float(np.corrcoef(a[:, u], f)[0, 1])
                        rows.append({"layer": spec.name, "layer_index": li, "signal": sname,
                                     "unit": u, "feature": fname, "r": r})  # fmt: skip
        best: dict[str, list[dict[str, Any]]] = {}
        for r in sorted(rows, key=lambda r: -abs(r["r"])):
            lst = best.setdefault(r["feature"], [])
            if len(lst) < top:
                lst.append(r)
        return [r for f in feats for r in best.get(f, [])]

    def to_json(self) -> dict[str, Any]:
        def tr(t: Trace | None) -> Any:
            if t is None:
                return None
            return {
                "file": t.file,
                "quantization": t.quantization,
                "outputs": t.outputs.tolist(),
                "layers": [{k: v.tolist() for k, v in sig.items()} for sig in t.layers],
            }

        return {
            "model": self.model,
            "steps": len(self.inputs),
            "layers": [
                {
                    "name": s.name,
                    "kind": s.kind,
                    "units": s.units,
                    "signals": sorted(s.tensors) + sorted(s.outputs),
                }
                for s in self.layers
            ],
            "trace": tr(self.trace),
            "reference": tr(self.reference),
            "saturation": [
                {k: v.tolist() for k, v in d.items()} for d in self.saturation(self.trace)
            ],
            "unit_ranking": self.unit_ranking(),
            "notes": self.notes,
        }

    def report(self, units: int | None = None) -> Report:
        rep = Report(title=f"explain: {Path(self.model).name}")
        q = self.trace
        rep.intro.append(
            f"{len(self.inputs)} steps of {q.file} ({q.quantization})"
            + (f" beside {self.reference.file} (float)" if self.reference else "")
            + "; every signal is read from the artifact's own tensors and dequantized."
        )
        rep.intro.extend(self.notes)
        stream = self._stream_plot()
        if stream.png:  # no matplotlib: tables only
            rep.sections.append(stream)
        for li, spec in enumerate(self.layers):
            sig = _first_units(q.layers[li], units)
            order = [s for s in ("h", "c", *GATES.get(spec.kind, ()), "pre") if s in sig]
            sig_gates = {g: (0.0, 1.0) for g in GATES.get(spec.kind, ()) if g != "g"}
            png = heatmap({s: sig[s] for s in order}, ranges=sig_gates)
            if png:
                rep.sections.append(
                    Plot(
                        f"{spec.name} ({spec.kind} {spec.units}): units x time, {q.quantization}",
                        png,
                        "Rows: h (hidden state), c (cell state), then the gates "
                        + _gate_legend(spec.kind)
                        + ". h, c, g, pre: blue negative, red positive, each panel its own "
                        "scale; sigmoid gates: 0 (dark) to 1 (yellow).",
                    )
                )
            if self.reference is not None:
                ref = _first_units(self.reference.layers[li], units)
                err = {s: sig[s] - ref[s] for s in order if s in ref}
                png = heatmap(err)
                if png and q.quantization != "float":
                    worst = {s: float(np.max(np.abs(e))) for s, e in err.items()}
                    rep.sections.append(
                        Plot(
                            f"{spec.name}: {q.quantization} minus float, per unit over time",
                            png,
                            "largest |error|: "
                            + ", ".join(f"{s} {v:.3g}" for s, v in worst.items()),
                        )
                    )
            rep.sections.append(self._saturation_table(li, spec))
        if self.text is not None:
            rep.sections.extend(self._text_sections())
        return rep

    def _stream_plot(self) -> Plot:
        series: dict[str, Any] = {}
        x = self.inputs.reshape(len(self.inputs), -1)
        if self.text is None:
            for j in range(min(x.shape[1], 3)):
                series[f"input {j}"] = x[:, j]
        if self.target is not None:
            t = self.target.reshape(len(self.target), -1)
            for j in range(min(t.shape[1], 2)):
                series[f"target {j}"] = t[:, j]
        y = self.trace.outputs
        for j in range(min(y.shape[1], 2)):
            series[f"{self.trace.quantization} output {j}"] = y[:, j]
        if self.reference is not None:
            for j in range(min(self.reference.outputs.shape[1], 2)):
                series[f"float output {j}"] = self.reference.outputs[:, j]
        png = line_plot(series, "time step", "value") or b""
        return Plot("input, target and prediction over time", png)

    def _saturation_table(self, li: int, spec: LayerSignals) -> Table:
        sq = self.saturation(self.trace)[li]
        sf = self.saturation(self.reference)[li] if self.reference else {}
        rows = []
        for g, frac in sq.items():
            ref = sf.get(g)
            rows.append(
                [
                    g,
                    f"{np.mean(frac):.1%}",
                    f"{np.mean(ref):.1%}" if ref is not None else "-",
                    str(int(np.sum(frac >= 0.99))),
                    str(int(np.sum(ref >= 0.99))) if ref is not None else "-",
                    str(int(np.argmax(np.abs(frac - ref)))) if ref is not None else "-",
                ]
            )
        q = self.trace.quantization
        return Table(
            f"{spec.name}: gate saturation ({q} vs float)",
            [
                "gate",
                f"steps saturated ({q})",
                "(float)",
                f"units always saturated ({q})",
                "(float)",
                "unit that differs most",
            ],
            rows,
            f"A gate is saturated when within {SATURATION:.0%} of its range's end (sigmoid 0/1, "
            "tanh -1/1); a unit that is always saturated is a constant switch.",
        )

    def _text_sections(self) -> list[Any]:
        assert self.text is not None
        ranking = self.unit_ranking()
        out: list[Any] = []
        if ranking:
            out.append(
                Table(
                    "units that track text features (Pearson r over the text)",
                    ["feature", "layer", "signal", "unit", "r"],
                    [
                        [r["feature"], r["layer"], r["signal"], str(r["unit"]), f"{r['r']:+.3f}"]
                        for r in ranking
                    ],
                )
            )
            best: dict[str, dict[str, Any]] = {}
            for r in ranking:  # the best unit for each feature
                best.setdefault(r["feature"], r)
            for r in best.values():
                a = self.trace.layers[r["layer_index"]][r["signal"]][:, r["unit"]]
                out.append(
                    Html(
                        f"text coloured by {r['layer']} {r['signal']}[{r['unit']}] "
                        f"(tracks '{r['feature']}', r = {r['r']:+.2f})",
                        colored_text(self.text[: len(a)], a),
                        text=f"unit {r['unit']} of {r['layer']} {r['signal']}",
                    )
                )
        return out


def text_features(text: str) -> dict[str, np.ndarray]:
    """Per character: inside quotes, inside brackets (depth), position in line, after newline."""
    quote, depth, col = False, 0, 0
    feats: dict[str, list[float]] = {
        "inside quotes": [], "bracket depth": [], "position in line": [], "after newline": []
    }  # fmt: skip
    prev = "\n"
    for ch in text:
        if ch in "\"'":
            quote = not quote
        if ch in "([{":
            depth += 1
        feats["inside quotes"].append(float(quote))
        feats["bracket depth"].append(float(depth))
        feats["position in line"].append(float(col))
        feats["after newline"].append(float(prev == "\n"))
        if ch in ")]}":
            depth = max(depth - 1, 0)
        col = 0 if ch == "\n" else col + 1
        if ch == "\n":
            quote = False
        prev = ch
    return {k: np.asarray(v) for k, v in feats.items()}


def colored_text(text: str, act: np.ndarray) -> str:
    """The text as HTML, each character's background red (positive) or blue (negative) by act."""
    lim = float(np.max(np.abs(act))) or 1.0
    spans = []
    for ch, v in zip(text, act, strict=False):
        a = max(-1.0, min(1.0, float(v) / lim))
        rgb = (255, int(255 * (1 - a)), int(255 * (1 - a))) if a >= 0 else (
            int(255 * (1 + a)), int(255 * (1 + a)), 255)  # fmt: skip
        c = "⏎\n" if ch == "\n" else html.escape(ch)
        spans.append(f"<span style='background:rgb{rgb}' title='{v:+.3f}'>{c}</span>")
    return (
        "<pre style='font-family:monospace;line-height:1.35;white-space:pre-wrap;"
        "max-width:100%;overflow-wrap:anywhere'>" + "".join(spans) + "</pre>"
    )


def _gate_legend(kind: str) -> str:
    return {
        "LSTM": "i (input), f (forget), g (candidate), o (output)",
        "GRU": "z (update), r (reset), g (candidate)",
        "SimpleRNN": "pre (pre-activation)",
    }.get(kind, "")


def _first_units(sig: dict[str, np.ndarray], units: int | None) -> dict[str, np.ndarray]:
    return {k: v[:, :units] if units else v for k, v in sig.items()}


# --------------------------------------------------------------------------- graph analysis


def locate(info: TFLiteInfo, layers: list[dict[str, Any]]) -> list[LayerSignals]:
    """Find each recurrent layer's gate tensors in the step graph.

    Layer k's ops are those its `state{k}_h_out` depends on minus layer k-1's. A gate is the
    output of an activation op whose input traces back (through ADD/MUL/quantize ops, never
    through another activation) to output j of a SPLIT: gate j in the kind's Keras order.
    SimpleRNN has no split: its TANH's input is the pre-activation.
    """
    producers = {t: op for op in info.ops for t in op.outputs}
    out_names = {t.name: t.tensor_index for t in info.outputs}
    recurrent = [lyr for lyr in layers if lyr.get("kind") in GATES]

    def closure(tensor: int) -> set[int]:
        seen: set[int] = set()
        todo = [tensor]
        while todo:
            op = producers.get(todo.pop())
            if op is None or op.index in seen:
                continue
            seen.add(op.index)
            todo.extend(op.inputs)
        return seen

    result: list[LayerSignals] = []
    before: set[int] = set()
    for k, lyr in enumerate(recurrent):
        spec = LayerSignals(lyr["name"], lyr["kind"], int(lyr["units"]), k)
        h_name = f"state{k}_h_out"
        if h_name not in out_names:
            raise BadInputError(f"step model has no output '{h_name}' for layer {lyr['name']}")
        spec.outputs["h"] = h_name
        if f"state{k}_c_out" in out_names:
            spec.outputs["c"] = f"state{k}_c_out"
        mine = closure(out_names[h_name])
        if "c" in spec.outputs:
            mine |= closure(out_names[spec.outputs["c"]])
        mine -= before
        gates = GATES[spec.kind]
        for op in sorted((info.ops[i] for i in mine), key=lambda o: o.index):
            if op.name not in ACTIVATIONS:
                continue
            if not gates:
                spec.tensors.setdefault("pre", op.inputs[0])
                continue
            j = _split_position(op.inputs[0], producers)
            if j is not None and j < len(gates):
                spec.tensors.setdefault(gates[j], op.outputs[0])
        missing = [g for g in gates if g not in spec.tensors]
        if missing or (not gates and "pre" not in spec.tensors):
            raise BadInputError(
                f"cannot find the gates {missing or ['pre']} of layer {lyr['name']} "
                f"({spec.kind}) in the step graph"
            )
        result.append(spec)
        before |= mine
    return result


def _split_position(tensor: int, producers: dict[int, Any], depth: int = 6) -> int | None:
    op = producers.get(tensor)
    if op is None or depth == 0 or op.name in ACTIVATIONS:
        return None
    if op.name in ("SPLIT", "SPLIT_V", "UNPACK"):
        return op.outputs.index(tensor)
    if op.name == "STRIDED_SLICE":
        return None
    for t in op.inputs:
        j = _split_position(t, producers, depth - 1)
        if j is not None:
            return j
    return None


# --------------------------------------------------------------------------------- running


def trace(data: bytes, art: Artifact, layers: list[LayerSignals], xs: np.ndarray) -> Trace:
    """Run the step model over `xs` (state carried) and record every located signal."""
    from edgelstm.runtime.litert import preserving_backend
    from edgelstm.runtime.stream import StepRunner

    backend = preserving_backend(data)
    runner = StepRunner(data, backend=backend, artifact=art)
    interp = backend.interp
    details = {d["index"]: d for d in interp.get_tensor_details()}

    def real(idx: int) -> np.ndarray:
        d = details[idx]
        v = interp.get_tensor(idx).astype(np.float64).reshape(-1)
        qp = d["quantization_parameters"]
        if d["dtype"] != np.float32 and len(qp["scales"]) == 1:
            v = (v - qp["zero_points"][0]) * qp["scales"][0]
        return v

    ys: list[np.ndarray] = []
    rec: list[dict[str, list[np.ndarray]]] = [{} for _ in layers]
    for x in xs:
        ys.append(runner.push(x))
        state = runner.get_state()
        for spec, r in zip(layers, rec, strict=True):
            for name, idx in spec.tensors.items():
                r.setdefault(name, []).append(real(idx))
            for name, out in spec.outputs.items():
                r.setdefault(name, []).append(np.asarray(state[out[: -len("_out")]]).reshape(-1))
    return Trace(
        art.file,
        art.quantization.value,
        np.stack(ys),
        [{k: np.stack(v) for k, v in r.items()} for r in rec],
    )


def explain(
    model: Path,
    inputs: np.ndarray,
    *,
    target: np.ndarray | None = None,
    text: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
) -> ExplainResult:
    """Trace a step model (and its float sibling from the manifest beside it) over `inputs`."""
    from edgelstm.runtime.stream import manifest_artifact
    from edgelstm.tflite_info import read_tflite

    model = Path(model)
    if not model.is_file():
        raise BadInputError(f"{model}: no such file")
    read_tflite(model)
    manifest_path = model.parent / "manifest.json"
    if not manifest_path.is_file() or manifest_artifact(model) is None:
        raise BadInputError(
            f"{model}: explain needs the manifest.json that `edgelstm convert` wrote beside it "
            "(it names the layers)"
        )
    manifest = manifest_from_dict(json.loads(manifest_path.read_text()))
    files = {  # the model and its float step sibling, when that is there too
        a.file: (model.parent / a.file).read_bytes()
        for a in manifest.artifacts
        if a.file == model.name
        or (a.variant == Variant.STEP and a.quantization == Quantization.FLOAT
            and (model.parent / a.file).is_file())
    }  # fmt: skip
    return explain_artifact(
        manifest, files, model.name, inputs, target=target, text=text, progress=progress,
        label=str(model),
    )  # fmt: skip


def explain_artifact(
    manifest: Manifest,
    files: Mapping[str, bytes],
    file: str,
    inputs: np.ndarray,
    *,
    target: np.ndarray | None = None,
    text: str | None = None,
    progress: Callable[[str], None] = lambda _m: None,
    label: str | None = None,
) -> ExplainResult:
    """`explain` of the manifest's artifact `file`, its bytes (and its float sibling's, when
    there) in `files`; `label` names the model in the report (default: `file`)."""
    from edgelstm.tflite_info import read_tflite

    art = next(a for a in manifest.artifacts if a.file == file)
    if art.variant != Variant.STEP:
        raise BadInputError(
            f"{label or file}: explain runs step models (this is a {art.variant.value} model)"
        )
    layers = manifest.to_dict()["model"]["layers"]
    specs = locate(read_tflite(files[file]), layers)
    if len(inputs) == 0:
        raise BadInputError("the input has no time steps")
    progress(f"tracing {file} over {len(inputs)} steps")
    res = ExplainResult(label or file, specs, inputs, trace(files[file], art, specs, inputs))
    res.target, res.text = target, text
    sib = next(
        (a for a in manifest.artifacts if a.variant == Variant.STEP
         and a.quantization == Quantization.FLOAT and a.file != file),
        None,
    )  # fmt: skip
    if sib is not None and sib.file in files:
        progress(f"tracing the float sibling {sib.file}")
        fspecs = locate(read_tflite(files[sib.file]), layers)
        res.reference = trace(files[sib.file], sib, fspecs, inputs)
    elif art.quantization != Quantization.FLOAT:
        res.notes.append("no float step model beside it: convert with --quantize float too to "
                         "compare against float")  # fmt: skip
    return res


def load_input(
    path: Path | None, recipe: str | None, steps: int, vocab: list[str] | None = None
) -> tuple[np.ndarray, np.ndarray | None, str | None]:
    """(inputs [T, ...], target or None, text or None) from a file or a zoo recipe's eval data."""
    if path is not None:
        if not path.is_file():
            raise BadInputError(f"{path}: no such file")
        suf = path.suffix.lower()
        if suf == ".npy":
            return load_array(path, "--input")[:steps], None, None
        if suf == ".npz":
            x, y = load_xy(path, "--input")
            if x.ndim == 3 or (x.ndim == 2 and x.dtype.kind in "iu"):  # sequences: the first
                y = y[0] if y is not None and len(y) == len(x) else None
                x = x[0]
            return x[:steps], None if y is None else np.asarray(y)[:steps], None
        if suf == ".csv":
            try:
                x = np.loadtxt(path, delimiter=",", ndmin=2, dtype=np.float64)
            except ValueError as e:
                raise BadInputError(f"{path}: not a numeric CSV ({e})") from None
            return x[:steps], None, None
        text = path.read_text(errors="replace")[:steps]
        if vocab is None:
            raise BadInputError(f"{path}: a text input needs a character model (vocab.json)")
        return encode(text, vocab), None, text
    if recipe is None:
        raise BadInputError("give --input FILE or --recipe NAME")
    from edgelstm.zoo import MODELS_DIR, load_recipe

    load_recipe(recipe)
    ev = MODELS_DIR / recipe / "eval.npz"
    if not ev.is_file():
        raise BadInputError(f"recipe {recipe} has no committed eval.npz")
    x, y = load_xy(ev, "eval")
    if x.dtype.kind in "iu":  # tokens: concatenate windows into a longer text
        flat = x.reshape(-1)[:steps]
        voc = vocab or _recipe_vocab(recipe)
        return flat, None, "".join(voc[int(t)] if 0 <= t < len(voc) else "?" for t in flat)
    if y.ndim == x.ndim:
        return x[0][:steps], y[0][:steps], None
    return x[0][:steps], None, None


def _recipe_vocab(recipe: str) -> list[str]:
    from edgelstm.zoo import MODELS_DIR

    p = MODELS_DIR / recipe / "vocab.json"
    if not p.is_file():
        raise BadInputError(f"recipe {recipe}: token inputs but no vocab.json")
    return _vocab_list(json.loads(p.read_text()))


def _vocab_list(v: Any) -> list[str]:
    if isinstance(v, dict):
        v = v.get("chars", v.get("vocab", v))
    if isinstance(v, dict):
        inv = {int(i): ch for ch, i in v.items()}
        return [inv.get(i, "?") for i in range(max(inv) + 1)]
    return ["?" if c is None else str(c) for c in v]


def encode(text: str, vocab: list[str]) -> np.ndarray:
    index = {c: i for i, c in enumerate(vocab) if c}
    return np.asarray([index.get(c, 0) for c in text], dtype=np.int32)


def save(res: ExplainResult, outdir: Path, units: int | None = None) -> list[Path]:
    """explain.html, one PNG per figure and explain.json in `outdir` (atomically)."""
    from edgelstm.fsutil import write_atomic

    rep = res.report(units)
    written = []
    outdir.mkdir(parents=True, exist_ok=True)
    for i, sec in enumerate(s for s in rep.sections if isinstance(s, Plot) and s.png):
        name = outdir / f"explain_{i + 1}_{re.sub(r'[^a-z0-9]+', '_', sec.title.lower())[:40]}.png"
        write_atomic(name, sec.png)
        written.append(name)
    write_atomic(outdir / "explain.html", rep.to_html())
    write_atomic(outdir / "explain.json", json.dumps(res.to_json()) + "\n")
    return [outdir / "explain.html", outdir / "explain.json", *written]
