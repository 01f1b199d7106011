"""`alm runs list` and `alm runs compare`: what is in runs/, and how runs compare."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from alm.cli.common import console, handle_errors

runs_app = typer.Typer(help="List and compare training runs.", no_args_is_help=True)
RootOption = Annotated[Path, typer.Option("--runs-dir", help="Where runs live.")]
STATUS_STYLE = {
    "running": "cyan",
    "finished": "green",
    "interrupted": "yellow",
    "failed": "red",
    "unknown": "dim",
}


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs", rich_help_panel="Train")


def _fmt(value: float | None, spec: str = ".4f") -> str:
    return "-" if value is None else format(value, spec)


def _ago(timestamp: float | None) -> str:
    from alm.train.progress import format_duration

    if timestamp is None:
        return "-"
    return f"{format_duration(time.time() - timestamp)} ago"


@runs_app.command("list")
@handle_errors
def list_(runs_dir: RootOption = Path("runs")) -> None:
    """Runs with their status, progress, tokens and best val loss (newest first)."""
    from alm.runs import list_runs
    from alm.train.progress import format_count

    runs = list_runs(runs_dir)
    if not runs:
        console.print(f"no runs under {runs_dir}/ yet — start one with [bold]alm train[/]")
        return
    table = Table(title=f"runs in {runs_dir}/", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("step", "tokens", "loss", "best val", "updated"):
        table.add_column(column, justify="right", no_wrap=True)
    for r in runs:
        style = STATUS_STYLE.get(r.status, "")
        total = f"/{r.total_steps}" if r.total_steps else ""
        table.add_row(
            r.name,
            f"[{style}]{r.status}[/]",
            f"{r.step}{total}",
            format_count(r.tokens),
            _fmt(r.loss),
            _fmt(r.best_val_loss),
            _ago(r.last_update),
        )
    console.print(table)


@runs_app.command("compare")
@handle_errors
def compare(
    runs: Annotated[list[str], typer.Argument(help="Run names (under --runs-dir) or run directories.")],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write a PNG of the loss curves here.")
    ] = None,
    runs_dir: RootOption = Path("runs"),
) -> None:
    """Compare runs: parameters, tokens, best val loss, bpb, throughput; optionally plot their curves."""
    from alm.runs import compare_runs, plot_runs, resolve_run_dir
    from alm.train.progress import format_count

    dirs = [resolve_run_dir(name, runs_dir).path for name in runs]
    table = Table(title="run comparison", title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("name", no_wrap=True)
    table.add_column("status", no_wrap=True)
    for column in ("params", "tokens", "best val", "bpb", "tok/s"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in compare_runs(dirs):
        table.add_row(
            row.name,
            row.status,
            format_count(row.params),
            format_count(row.tokens),
            _fmt(row.best_val_loss),
            _fmt(row.val_bpb, ".3f"),
            format_count(row.tok_per_s),
        )
    console.print(table)
    if out is not None:
        console.print(f"wrote {plot_runs(dirs, out)}")
