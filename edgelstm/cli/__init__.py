"""The `edgelstm` command: a thin click group whose subcommands load on demand.

Each subcommand lives in its own module under `edgelstm.cli` and imports heavy packages
(TensorFlow above all) inside the command body, so `edgelstm --help` stays instant and the
runtime side never imports TensorFlow.
"""

from __future__ import annotations

import importlib
import importlib.util  # find_spec; not implied by `import importlib` in a clean install
import sys

import click

from edgelstm import __version__

# name -> (module, attribute, one-line help). Adding a command is one line here plus its module.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "convert": (
        "edgelstm.cli.convert",
        "convert",
        "Convert a Keras recurrent model to verified TFLite.",
    ),
    "inspect": (
        "edgelstm.cli.inspect",
        "inspect_cmd",
        "Show ops, tensors, sizes, MACs and state of a model.",
    ),
    "train": ("edgelstm.cli.train", "train", "Train a zoo recipe."),
    "zoo": ("edgelstm.cli.zoo", "zoo", "List the model zoo's recipes."),
    "sample": ("edgelstm.cli.sample", "sample", "Generate text from a char-lm model."),
    "pipeline": (
        "edgelstm.cli.pipeline",
        "pipeline",
        "Train/convert/verify/profile/export a recipe end to end.",
    ),
    "profile": (
        "edgelstm.cli.profile",
        "profile",
        "Measure latency, memory and accuracy of .tflite models.",
    ),
    "stream": ("edgelstm.cli.stream", "stream", "Run a step model over a stream of samples."),
    "export": (
        "edgelstm.cli.export",
        "export",
        "Export a .tflite for microcontrollers (TFLite Micro or plain C).",
    ),
    "quantize": ("edgelstm.cli.quantize", "quantize", "QAT, pruning and quantization reports."),
    "search": (
        "edgelstm.cli.search",
        "search",
        "Find the best model for a device budget (Ray Tune, measured costs).",
    ),
    "explain": (
        "edgelstm.cli.explain",
        "explain",
        "Show a step model's states and gates over time (heatmaps, saturation, text units).",
    ),
}


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module only when it runs."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [name for name, (mod, _, _) in COMMANDS.items() if _module_exists(mod)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        spec = COMMANDS.get(cmd_name)
        if spec is None or not _module_exists(spec[0]):
            return None
        module = importlib.import_module(spec[0])
        return getattr(module, spec[1])

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


def _module_exists(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgelstm")
@click.option(
    "--debug",
    is_flag=True,
    envvar="EDGELSTM_DEBUG",
    help="Show tracebacks and TensorFlow logs (env: EDGELSTM_DEBUG).",
)
@click.option("-q", "--quiet", is_flag=True, help="Only print results and errors.")
@click.pass_context
def cli(ctx: click.Context, debug: bool, quiet: bool) -> None:
    """edgelstm: Keras LSTM/GRU/SimpleRNN models to verified TFLite, TFLite Micro and C."""
    from edgelstm.cli._app import App

    ctx.obj = App(debug=debug, quiet=quiet)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning EdgeLSTMError into a one-line message and exit code 2."""
    from edgelstm.cli._app import run_cli

    sys.exit(run_cli(cli, argv))
