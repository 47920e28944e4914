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
    """List the recipes."""
    from dataclasses import asdict

    from edgelstm.zoo import list_recipes

    recipes = list_recipes()
    if as_json:
        app.out_json([asdict(r) for r in recipes])
        return
    for r in recipes:
        layers = " -> ".join(f"{spec['kind']}({spec.get('units', '')})" for spec in r.layers)
        trained = "trained" if (r.dir / "model.keras").exists() else "untrained"
        app.out(f"{r.name:<16} T={r.seq_len:<4} {layers:<32} {r.metric} >= {r.target} ({trained})")
