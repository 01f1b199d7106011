"""`alm runs list` and `alm runs compare`: what is in runs/, and how runs compare."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich import box
from rich.table import Table

from alm.cli.common import console, err_console, handle_errors
from alm.cli.complete import complete_run
from alm.cli.help import examples

if TYPE_CHECKING:
    from alm.runs import RunRow

runs_app = typer.Typer(help="List and compare training runs.", no_args_is_help=True)
RootOption = Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
RunsArgument = Annotated[
    list[str],
    typer.Argument(
        metavar="RUN", help="Run names (under --runs-dir) or run directories.", autocompletion=complete_run
    ),
]
STATUS_STYLE = {
    "running": "cyan",
    "finished": "green",
    "interrupted": "yellow",
    "failed": "red",
    "unknown": "dim",
}


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs", rich_help_panel="Train")


@runs_app.command(
    "list",
    epilog=examples(
        "alm runs list",
        "alm runs list --runs-dir experiments/runs",
        "alm runs list --json  # one object per run, for scripts",
    ),
)
@handle_errors
def list_(runs_dir: RootOption = Path("runs"), as_json: JsonOption = False) -> None:
    """Runs with their status, progress, tokens and best val loss (newest first)."""
    from alm.format import MISSING, count, duration, number
    from alm.runs import list_runs

    runs = list_runs(runs_dir)
    if as_json:
        typer.echo(json.dumps([run_record(r) for r in runs], indent=2))
        return
    if not runs:
        console.print(f"no runs under {runs_dir}/ yet — start one with [bold]alm train[/]")
        return
    now = time.time()
    rows = []
    for r in runs:
        s = r.summary  # step, tokens and loss of one step event: never a later stop's step with older figures
        total = f"/{s.total_steps}" if s.total_steps else ""
        rows.append(
            (
                r.name,
                r.status,
                f"{s.step}{total}",
                count(s.tokens),
                number(s.last_step.loss if s.last_step else None),
                number(s.best_val_loss),
                duration(now - s.last_time) if s.last_time is not None else MISSING,
            )
        )
    # 80 columns hold alm's own run names (time-preset): the figures never shrink, a longer name folds; "ago" is
    # the time since the run's latest event.
    table = Table(
        title=f"runs in {runs_dir}/",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
        collapse_padding=True,
        show_edge=False,
    )
    table.add_column("name", overflow="fold")
    for i, column in enumerate(("status", "step", "tokens", "loss", "best val", "ago"), start=1):
        width = max(len(column), *(len(row[i]) for row in rows))
        table.add_column(column, justify="left" if i == 1 else "right", no_wrap=True, min_width=width)
    for row in rows:
        style = STATUS_STYLE.get(row[1], "")
        table.add_row(row[0], f"[{style}]{row[1]}[/]", *row[2:])
    console.print(table)


def run_record(row: RunRow) -> dict[str, Any]:
    """A run as `--json` prints it: its status and the figures of its summary (numbers unformatted)."""
    s = row.summary
    last = s.last_step
    return {
        "name": row.name,
        "path": str(row.path),
        "status": row.status,
        "model": s.model_name,
        "params": s.params,
        "step": s.step,
        "total_steps": s.total_steps,
        "tokens": s.tokens,
        "epochs": s.epochs,
        "loss": last.loss if last else None,
        "loss_ema": last.loss_ema if last else None,
        "best_val_loss": s.best_val_loss,
        "best_val_bpb": s.best_val_bpb,
        "best_val_step": s.best_val_step,
        "tok_per_s": row.tok_per_s,
        "elapsed_seconds": s.elapsed(),
        "updated": s.last_time,
        "stop_reason": s.stop.reason if s.stop else None,
    }


@runs_app.command(
    "compare",
    epilog=examples(
        "alm runs compare alibi nope --out curves.png",
        "alm runs compare alibi nope --x step --log --out curves.png",
        "alm runs compare alibi nope --json",
    ),
)
@handle_errors
def compare(
    runs: RunsArgument,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write a PNG of the runs' curves here.")
    ] = None,
    x: Annotated[
        str, typer.Option("--x", help="The PNG's x axis: step, tokens or time (training time).")
    ] = "tokens",
    log: Annotated[bool, typer.Option("--log", help="Log-scale the PNG's loss and grad-norm axes.")] = False,
    runs_dir: RootOption = Path("runs"),
    as_json: JsonOption = False,
) -> None:
    """Compare runs: model, parameters, tokens, best val loss, bpb, throughput, duration; optionally plot them.

    The dashboard's compare view shows the same table and curves (both come from `alm.runs.comparison`)."""
    from alm.errors import UsageError
    from alm.runs import AXES, COMPARE_COLUMNS, compare_cells, comparison, plot_runs, resolve_run_dir

    if x not in AXES:
        raise UsageError(f"--x {x}: unknown axis", hint=f"use one of {', '.join(AXES)}")
    dirs = [resolve_run_dir(name, runs_dir).path for name in runs]
    compared = comparison(dirs)
    if as_json:  # the table's figures, unformatted; throughput is the median over each run
        typer.echo(json.dumps([run_record(row) for row in compared.rows], indent=2))
    else:
        table = Table(title="run comparison", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
        for column in COMPARE_COLUMNS:
            if column in ("run", "model"):  # names fold at 80 columns, so the figures always show
                table.add_column(column, overflow="fold", min_width=4)
            else:
                right = column != "status"
                table.add_column(column, justify="right" if right else "left", no_wrap=True)
        for row in compared.rows:
            cells = list(compare_cells(row))
            cells[-1] = f"[{STATUS_STYLE.get(row.status, '')}]{row.status}[/]"
            table.add_row(*cells)
        console.print(table)
    if out is not None:
        written = plot_runs(compared, out, x=x, log_y=log)  # type: ignore[arg-type]
        (err_console if as_json else console).print(f"wrote {written}")


@runs_app.command(
    "config",
    epilog=examples(
        "alm runs config demo",
        "alm runs config runs/demo > demo.yaml  # a starting point for --model/--train files",
    ),
)
@handle_errors
def config(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="Run name (under --runs-dir) or run directory.", autocompletion=complete_run
        ),
    ],
    runs_dir: RootOption = Path("runs"),
) -> None:
    """Print a run's resolved config (config.yaml: every model, train and data value it trained with)."""
    from alm.runs import resolve_run_dir, run_config_text

    print(run_config_text(resolve_run_dir(run, runs_dir).path), end="")


@runs_app.command(
    "delete",
    epilog=examples(
        "alm runs delete alibi nope",
        "alm runs delete old-run --yes",
    ),
)
@handle_errors
def delete(
    runs: RunsArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Delete without asking.")] = False,
    runs_dir: RootOption = Path("runs"),
) -> None:
    """Delete runs with their checkpoints (refused while a run trains). Asks first unless --yes."""
    import sys

    from alm.errors import UsageError
    from alm.runs import delete_run, resolve_run_dir

    targets = [resolve_run_dir(name, runs_dir).path for name in runs]
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError("deleting runs asks for confirmation on a terminal", hint="pass --yes to delete")
        listed = ", ".join(str(path) for path in targets)
        if not typer.confirm(f"delete {listed} and all its checkpoints?", default=False):
            console.print("nothing deleted")
            raise typer.Exit(1)
    for path in targets:
        console.print(f"deleted {delete_run(path)}")
