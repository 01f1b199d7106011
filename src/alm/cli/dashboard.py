"""`alm dashboard` (alias `alm tui`): the Textual dashboard over a runs directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alm.cli.common import handle_errors
from alm.dashboard import DEFAULT_THEME
from alm.errors import UsageError

RunArgument = Annotated[str | None, typer.Argument(help="Open this run directly (a name under --runs-dir).")]
RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help="Directory holding the runs.")]
ThemeOption = Annotated[
    str, typer.Option("--theme", help="Textual theme; the default uses your terminal's own colours.")
]


@handle_errors
def dashboard(
    run: RunArgument = None, runs_dir: RunsDirOption = Path("runs"), theme: ThemeOption = DEFAULT_THEME
) -> None:
    """Watch runs live, start/stop/resume training and sample checkpoints (q quits, ? helps)."""
    open_dashboard(run, runs_dir, theme)


@handle_errors
def tui(
    run: RunArgument = None, runs_dir: RunsDirOption = Path("runs"), theme: ThemeOption = DEFAULT_THEME
) -> None:
    """Alias of `alm dashboard`."""
    open_dashboard(run, runs_dir, theme)


def open_dashboard(run: str | None, runs_dir: Path, theme: str) -> None:
    from textual.theme import BUILTIN_THEMES

    if theme not in BUILTIN_THEMES:
        raise UsageError(f"unknown theme {theme!r}", hint=f"one of: {', '.join(sorted(BUILTIN_THEMES))}")
    if run is not None:
        from alm.train.rundir import resolve_run_dir

        # A name under --runs-dir, or a run directory anywhere: then its parent holds the runs shown.
        run_dir = resolve_run_dir(run, runs_dir).path
        runs_dir, run = run_dir.parent, run_dir.name
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        # Textual needs a terminal on both ends; without one it would block writing escape codes.
        raise UsageError(
            "the dashboard needs an interactive terminal (stdin and stdout must be a TTY)",
            hint="run it directly in a terminal; for scripts use `alm runs list` or read runs/NAME/events.jsonl",
        )
    from alm.dashboard.app import DashboardApp

    DashboardApp(runs_dir, run=run, theme=theme).run()


def register(app: typer.Typer) -> None:
    app.command("dashboard", rich_help_panel="Use")(dashboard)
    app.command("tui", rich_help_panel="Use")(tui)
