"""Shared CLI pieces: error handling with exit codes, consoles and common options."""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from alm.capacity import expected_failure
from alm.cli.complete import complete_model_preset, complete_train_preset
from alm.errors import AlmError, Interrupted

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

F = TypeVar("F", bound=Callable[..., Any])


class NoticeHandler(logging.Handler):
    """alm's library notices on stderr, by rank 0 only: one-time work that would otherwise look like a hang (a
    kernel build, a compile) dimmed, warnings as warnings, errors with their traceback (a bug to report)."""

    def emit(self, record: logging.LogRecord) -> None:
        from alm.train.dist import is_main_process

        if not is_main_process():
            return
        if record.levelno >= logging.ERROR:
            err_console.print(self.format(record), markup=False, soft_wrap=True)
        elif record.levelno >= logging.WARNING:
            err_console.print(f"[yellow]warning:[/] {escape(record.getMessage())}", soft_wrap=True)
        else:
            err_console.print(f"[dim]{escape(record.getMessage())}[/]", soft_wrap=True)


def show_notices() -> None:
    """Let alm's library code (logger `alm`) speak to the terminal at INFO and above; idempotent."""
    logger = logging.getLogger("alm")
    logger.setLevel(logging.INFO)
    if not any(isinstance(handler, NoticeHandler) for handler in logger.handlers):
        logger.addHandler(NoticeHandler())


def set_option(example: str) -> Any:
    """The `--set` option of a command whose help shows `example`, a key that command reads."""
    return typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help=f"Override a config value, e.g. --set {example} (repeatable; defaults from the ALM_SET variable).",
    )


def model_option(help: str = "Model preset (micro, pico, nano, small) or YAML file.") -> Any:
    """`--model/-m PRESET|FILE`, completing the model presets."""
    return typer.Option(
        "--model", "-m", metavar="PRESET|FILE", help=help, autocompletion=complete_model_preset
    )


def train_option(help: str = "Train preset (micro, default, sft, dpo) or YAML file.") -> Any:
    """`--train/-t PRESET|FILE`, completing the train presets."""
    return typer.Option(
        "--train", "-t", metavar="PRESET|FILE", help=help, autocompletion=complete_train_preset
    )


SetOption = Annotated[
    list[str] | None, set_option("train.lr=1e-3")
]  # commands that read a run's whole config
ModelSetOption = Annotated[list[str] | None, set_option("model.d_model=128")]
DataSetOption = Annotated[list[str] | None, set_option("data.tokenizer.vocab_size=8192")]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (mps > cuda > cpu), cpu, cuda, cuda:N or mps.")
]


def report_error(exc: AlmError) -> None:
    # Messages quote paths and other programs' errors, whose brackets are not Rich markup.
    err_console.print(
        f"[bold red]error:[/] {escape(exc.message)}", markup=True, soft_wrap=True, highlight=False
    )
    if exc.hint:
        err_console.print(f"  [dim]hint:[/] {escape(exc.hint)}", soft_wrap=True)


def handle_errors(fn: F) -> F:
    """Turn expected failures into a message and an exit code: 2 usage/config, 1 runtime, 130 stopped; the
    machine's own failures (a full disk, no memory, no permission) read as one line too (`alm.capacity`)."""

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
        except (OSError, MemoryError, RuntimeError) as exc:
            failure = expected_failure(exc)  # a full disk, no memory: the machine's failure, not a bug
            if failure is None:
                raise
            report_error(failure)
            raise typer.Exit(failure.exit_code) from None

    return wrapper  # type: ignore[return-value]


def read_stdin_text(what: str = "standard input") -> str:
    """All of stdin as UTF-8 text; bytes that are not UTF-8 are a UsageError (exit 2) naming the first one."""
    from alm.errors import UsageError

    data = sys.stdin.buffer.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            hint="pass UTF-8 text (convert with e.g. `iconv -f latin1 -t utf-8`)",
        ) from None


def overrides(values: list[str] | None) -> list[str]:
    return list(values or [])


@contextlib.contextmanager
def progress_bar(label: str) -> Iterator[Callable[[int, int], object] | None]:
    """A transient bar on a terminal's stderr, moved by the `update(done, total)` it yields; None when stderr is
    not a terminal (logs and pipes stay clean, and the work skips the counting). stdout is never touched, so
    `--json` output stays one object."""
    if not err_console.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as bar:
        job = bar.add_task(label, total=None)
        yield lambda done, total: bar.update(job, completed=done, total=total)
