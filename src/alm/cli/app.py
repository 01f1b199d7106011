"""Root of the `alm` CLI. Command groups register themselves from their own modules; torch loads lazily."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from alm import __version__
from alm.cli.common import show_notices
from alm.cli.help import AlmGroup

app = typer.Typer(
    name="alm",
    help="alm — train, study and sample small language models on your own machine.",
    cls=AlmGroup,  # placeholders for every value in --help (alm.cli.help)
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=True,  # --install-completion / --show-completion; RUN and presets complete (alm.cli.complete)
)

# One module per command group, in the order they appear in --help.
COMMAND_MODULES = (
    "doctor",
    "model",
    "data",
    "train",
    "finetune",
    "runs",
    "sample",
    "chat",
    "serve",
    "export",
    "dashboard",
    "bench",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"alm {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", "-V", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """alm — train, study and sample small language models on your own machine."""
    show_notices()


def _register_all() -> None:
    for name in COMMAND_MODULES:
        importlib.import_module(f"alm.cli.{name}").register(app)


_register_all()


def main() -> None:
    app(prog_name="alm")  # also under `python -m alm`, so completion's variable is always _ALM_COMPLETE


if __name__ == "__main__":
    main()
