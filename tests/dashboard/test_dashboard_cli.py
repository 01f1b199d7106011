"""`alm dashboard` / `alm tui` from the command line: clear refusals instead of a hung terminal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dashboard_helpers import history, make_run
from typer.testing import CliRunner

from alm.cli.app import app


def test_refuses_without_a_terminal(tmp_path: Path) -> None:
    """A real subprocess with stdin/stdout that are not a TTY exits 2 at once with the reason."""
    result = subprocess.run(
        [sys.executable, "-m", "alm", "dashboard", "--runs-dir", str(tmp_path)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "needs an interactive terminal" in result.stderr and "Traceback" not in result.stderr


def test_tui_is_an_alias_and_arguments_are_checked_first(tmp_path: Path) -> None:
    make_run(tmp_path, "alpha", history("alpha", steps=5, stop="finished"))
    runner = CliRunner()
    result = runner.invoke(app, ["tui", "alpah", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "no run 'alpah'" in result.output and "alpha" in result.output  # suggests the close name
    result = runner.invoke(app, ["dashboard", "--theme", "neon", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "unknown theme" in result.output
    result = runner.invoke(app, ["tui", "alpha", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "interactive terminal" in result.output  # the run was found
    assert "Alias of `alm dashboard`" in runner.invoke(app, ["tui", "--help"]).output
