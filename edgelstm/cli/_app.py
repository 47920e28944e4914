"""Output and exits for every command: data to stdout, status to stderr, errors as one line."""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any

import click

from edgelstm.errors import EdgeLSTMError


@dataclass
class App:
    """Per-invocation settings shared by the commands (passed as click's ctx.obj)."""

    debug: bool = False
    quiet: bool = False

    def __post_init__(self) -> None:
        if not self.debug:
            from edgelstm._tf import quiet_env

            quiet_env()
        else:
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
            os.environ["EDGELSTM_DEBUG"] = "1"

    def info(self, text: str) -> None:
        """Status for a human, on stderr; silent under --quiet."""
        if not self.quiet:
            click.echo(text, err=True)

    def warn(self, text: str) -> None:
        click.echo(f"warning: {text}", err=True)

    def out(self, text: str) -> None:
        """Data, on stdout."""
        click.echo(text)

    def out_json(self, data: Any) -> None:
        click.echo(json.dumps(data, indent=2, sort_keys=False, default=_json_default))


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def run_cli(group: click.Group, argv: list[str] | None) -> int:
    """Run the click group; user errors become `error: ...` and exit code 2."""
    debug = os.environ.get("EDGELSTM_DEBUG") == "1" or "--debug" in (argv or sys.argv[1:])
    try:
        group.main(args=argv, prog_name="edgelstm", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except EdgeLSTMError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:  # a bug, not bad input: still one line unless --debug
        if debug:
            raise
        click.echo(
            f"error: internal error: {type(exc).__name__}: {exc} (rerun with --debug)", err=True
        )
        return 1
    return 0


def comma_list(choices: list[str]) -> Any:
    """A click callback for a repeatable option that also takes comma-separated values
    (`--quantize int8 --quantize float16` == `--quantize int8,float16`), checked against
    `choices`; duplicates dropped, order kept."""

    def callback(_ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple:
        names = [v.strip() for arg in value or () for v in arg.split(",") if v.strip()]
        bad = [n for n in names if n not in choices]
        if bad:
            raise click.BadParameter(
                f"'{bad[0]}' is not one of {', '.join(choices)}", param_hint=f"--{param.name}"
            )
        return tuple(dict.fromkeys(names))

    return callback
