"""Shell completion of values: run names from the runs directory, and presets (torch-free, and fast: a shell
runs `alm` for every Tab press).

`alm --install-completion` installs Typer's completion script for the current shell; commands and options then
complete by themselves. A parameter completes values by naming one of these functions as its `autocompletion`
(`typer.Argument(autocompletion=complete_run)`). When nothing matches, the shell falls back to file names, so a
run directory or a YAML path still completes.
"""

from __future__ import annotations

from pathlib import Path

import typer

from alm.config import CONFIG_DIR
from alm.rundir import DEFAULT_RUNS_ROOT, RunDir


def complete_run(ctx: typer.Context, incomplete: str) -> list[str]:
    """Run names under `--runs-dir` (given earlier on the line) or runs/, newest first."""
    root = Path(ctx.params.get("runs_dir") or DEFAULT_RUNS_ROOT)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if p.name.startswith(incomplete) and RunDir(p).is_populated()]
    return [p.name for p in sorted(runs, key=_modified, reverse=True)]


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def complete_model_preset(incomplete: str) -> list[str]:
    """Model presets (micro, pico, nano, small)."""
    return _presets("model", incomplete)


def complete_train_preset(incomplete: str) -> list[str]:
    """Train presets (micro, default, sft, dpo)."""
    return _presets("train", incomplete)


def _presets(section: str, incomplete: str) -> list[str]:
    # The preset folders themselves: importing alm.model or alm.train would load torch on every Tab press.
    names = sorted(p.stem for p in (CONFIG_DIR / section).glob("*.yaml"))
    return [name for name in names if name.startswith(incomplete)]


def complete_checkpoint(incomplete: str) -> list[str]:
    """The checkpoint names every run has (step-N is typed out)."""
    return [name for name in ("best", "last") if name.startswith(incomplete)]


__all__ = ["complete_checkpoint", "complete_model_preset", "complete_run", "complete_train_preset"]
