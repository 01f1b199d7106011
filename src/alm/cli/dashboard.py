"""`alm dashboard` (alias `alm tui`): the Textual dashboard over a runs directory."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from alm.cli.common import handle_errors
from alm.cli.complete import complete_run
from alm.cli.help import examples
from alm.dashboard import DEFAULT_THEME
from alm.errors import UsageError

RunArgument = Annotated[
    str | None,
    typer.Argument(
        metavar="RUN", help="Open this run directly (a name under --runs-dir).", autocompletion=complete_run
    ),
]
RunsDirOption = Annotated[Path, typer.Option("--runs-dir", help="Directory holding the runs.")]
ThemeOption = Annotated[
    str | None,
    typer.Option(
        "--theme",
        help=f"Textual theme; default: the one last chosen in the dashboard (ctrl+p), else {DEFAULT_THEME} "
        "(your terminal's own colours).",
    ),
]


@handle_errors
def dashboard(
    run: RunArgument = None, runs_dir: RunsDirOption = Path("runs"), theme: ThemeOption = None
) -> None:
    """Watch, start, stop, resume, restart, compare and delete runs; sample and chat with checkpoints (? helps)."""
    from textual.theme import BUILTIN_THEMES

    if theme is not None and theme not in BUILTIN_THEMES:
        raise UsageError(f"unknown theme {theme!r}", hint=f"one of: {', '.join(sorted(BUILTIN_THEMES))}")
    if run is not None:
        from alm.rundir import resolve_run_dir

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
    app.command(
        "dashboard",
        rich_help_panel="Use",
        epilog=examples(
            "alm dashboard",
            "alm dashboard demo  # opens that run",
            "alm dashboard --runs-dir experiments/runs",
        ),
    )(dashboard)
    app.command(
        "tui",
        rich_help_panel="Use",
        help="Alias of `alm dashboard`.",
        epilog=examples("alm tui", "alm tui demo"),
    )(dashboard)
