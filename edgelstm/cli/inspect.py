"""`edgelstm inspect FILE`: a .tflite (no TensorFlow needed) or a Keras model."""

from __future__ import annotations

from pathlib import Path

import click

from edgelstm.cli._app import App


@click.command("inspect")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--seq-len", type=int, help="For Keras models whose sequence length is None.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_obj
def inspect_cmd(app: App, *, path: Path, seq_len: int | None, as_json: bool) -> None:
    """Show ops, tensors, sizes, MACs, LSTM fusion and state tensors of a model."""
    if path.suffix.lower() == ".tflite":
        from edgelstm.tflite_info import read_tflite

        info = read_tflite(path)
        summary = info.summary()
        if as_json:
            app.out_json(summary)
            return
        app.out(_format_tflite(path, summary))
        return
    from edgelstm.convert.graph import parse_model
    from edgelstm.convert.load import load_keras_model

    model, framework = load_keras_model(path)
    ms = parse_model(model, framework, seq_len or _fixed_len(model))
    summary = ms.summary()
    data = {
        "framework": summary.framework,
        "input_shape": summary.input_shape,
        "output_shape": summary.output_shape,
        "output_kind": summary.output_kind.value,
        "layers": [vars(layer) for layer in summary.layers],
        "recurrent": summary.recurrent,
        "streamable": summary.streamable,
        "stream_blockers": summary.stream_blockers,
        "notes": ms.notes,
        "states": [
            {"layer": spec.name, "role": st.role, "shape": list(st.shape)}
            for _k, spec, sts in ms.state_layout()
            for st in sts
        ],
    }
    if as_json:
        app.out_json(data)
        return
    lines = [
        f"{path} ({framework}): input {summary.input_shape} -> output {summary.output_shape} ({summary.output_kind.value})"
    ]
    for layer in summary.layers:
        lines.append(f"  {layer.name:<24} {layer.kind:<18} {layer.units if layer.units else ''}")
    lines.append(
        "streamable: yes"
        if summary.streamable
        else "streamable: no: " + "; ".join(summary.stream_blockers)
    )
    lines.extend(f"note: {n}" for n in ms.notes)
    app.out("\n".join(lines))


def _fixed_len(model: object) -> int | None:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, tuple) and len(shape) >= 2 and shape[1] is None:
        return 1  # only the structure is shown; any length will do
    return None


def _format_tflite(path: Path, s: dict) -> str:
    lines = [
        f"{path}: {s['size_bytes']:,} bytes, {s['subgraphs']} subgraph(s), {s['params']:,} params, "
        f"{s['macs_per_invoke']:,} MACs per invoke",
        "ops: " + ", ".join(f"{k} x{v}" for k, v in s["op_counts"].items()),
        "fused LSTM: "
        + ("yes" if s["fused_lstm"] else "no")
        + (f"   NOT LOWERED: {', '.join(s['unfused_ops'])}" if s["unfused_ops"] else ""),
    ]
    for kind in ("inputs", "outputs"):
        for t in s[kind]:
            q = f" scale={t['scale']:.6g} zp={t['zero_point']}" if t["scale"] else ""
            lines.append(
                f"{kind[:-1]:<7}{t['index']} {t['name']:<16} {t['dtype']:<8} {t['shape']}{q}"
            )
    for st in s["states"]:
        lines.append(
            f"state  {st['input']} -> {st['output']} {st['dtype']} {st['shape']} reset={st['reset_value']}"
        )
    if s["variable_tensors"]:
        lines.append(
            f"variable tensors: {len(s['variable_tensors'])} (fused LSTM state: reset between sequences)"
        )
    return "\n".join(lines)
