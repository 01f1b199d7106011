"""The root CLI: help, version, doctor, and error handling with exit codes, as a user meets them."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from alm import __version__
from alm.cli.app import app

runner = CliRunner()


def test_version_and_help() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"alm {__version__}"
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "doctor" in result.output


def test_help_does_not_import_torch() -> None:
    code = "import sys; from alm.cli.app import app; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_doctor_reports_the_cpu_policy() -> None:
    result = runner.invoke(app, ["doctor", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "fp32" in result.output
    assert "torch" in result.output


def test_doctor_bad_input_exits_2_without_traceback() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "alm", "doctor", "--device", "tpu?"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown device" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "alm", "no-such-command"], capture_output=True, text=True)
    assert proc.returncode == 2
