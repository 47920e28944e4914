"""`edgelstm zoo list`."""

from __future__ import annotations

import click

from edgelstm.cli._app import App


@click.group()
def zoo() -> None:
    """The model zoo (recipes under models/)."""


@zoo.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_obj
def list_cmd(app: App, *, as_json: bool) -> None:
    """List the recipes, with the committed model's measured test metric where there is one."""
    import json
    from dataclasses import asdict

    from edgelstm.zoo import list_recipes

    rows = []
    for r in list_recipes():
        metrics_file = r.dir / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else None
        trained = (r.dir / "model.keras").exists()
        rows.append((r, trained, metrics))
    if as_json:
        app.out_json(
            [
                {
                    **asdict(r),
                    "dir": str(r.dir),
                    "trained": trained,
                    "test_metric": metrics.get("test_metric") if metrics else None,
                }
                for r, trained, metrics in rows
            ]
        )
        return
    for r, trained, metrics in rows:
        layers = " -> ".join(
            f"{spec['kind']}({spec.get('units', spec.get('output_dim', ''))})" for spec in r.layers
        )
        op = ">=" if r.higher_is_better else "<="
        state = (
            f"trained, test {metrics['test_metric']:.4f}" if trained and metrics else "untrained"
        )
        app.out(f"{r.name:<19} T={r.seq_len:<4} {layers:<36} {r.metric} {op} {r.target} ({state})")
