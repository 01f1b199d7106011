"""Root of the `alm` CLI. Command groups register themselves from their own modules; torch loads lazily."""

from __future__ import annotations

import importlib
from typing import Annotated

import typer

from alm import __version__

app = typer.Typer(
    name="alm",
    help="alm — train, study and sample small language models on your own machine.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    add_completion=False,
)

# One module per command group, in the order they appear in --help.
COMMAND_MODULES = ("doctor", "model", "data", "train", "runs", "sample", "dashboard", "bench")


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


def _register_all() -> None:
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"alm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"alm.cli.{name}":  # that group is not built yet: it does not appear in --help
                continue
            raise
        module.register(app)


_register_all()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
