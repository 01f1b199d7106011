"""Shared CLI pieces: error handling with exit codes, consoles and common options."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from alm.errors import AlmError, Interrupted

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config value as dotted.key=value, e.g. model.d_model=128, train.lr=1e-3 (repeatable).",
    ),
]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (mps > cuda > cpu), cpu, cuda, cuda:N or mps.")
]


def report_error(exc: AlmError) -> None:
    err_console.print(f"[bold red]error:[/] {exc.message}", markup=True, soft_wrap=True, highlight=False)
    if exc.hint:
        err_console.print(f"  [dim]hint:[/] {exc.hint}", soft_wrap=True)


def handle_errors(fn: F) -> F:
    """Turn expected failures into a message and an exit code: 2 usage/config, 1 runtime, 130 stopped."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except AlmError as exc:
            if not isinstance(exc, Interrupted) or str(exc):
                report_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]stopped.[/]")
            raise typer.Exit(130) from None
        except BrokenPipeError:  # `alm ... | head`: the reader went away, which is not our failure
            sys.stderr.close()
            raise typer.Exit(0) from None

    return wrapper  # type: ignore[return-value]


def overrides(values: list[str] | None) -> list[str]:
    return list(values or [])
