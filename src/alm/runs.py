"""Runs on disk for `alm runs` and the dashboard: one row per run, comparisons (table and curves), plots, a run's
config, restarting from it, and deleting a run.

Torch-free. The trainer writes run directories (`alm.train`); this module reads them through the torch-free
layout (`alm.rundir`), events (`alm.events`) and the one fold from events to a summary (`alm.summary`) that the
dashboard and the terminal progress share. `comparison()` feeds both `alm runs compare` (table and PNG) and the
dashboard's compare view, so the two cannot disagree.
"""

from __future__ import annotations

import math
import shutil
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from alm import locks
from alm.config import RUN_SECTIONS, read_yaml
from alm.errors import UsageError
from alm.events import EvalEvent, Event, StepEvent, read_events
from alm.fileio import atomic_write_text
from alm.format import count, duration, number
from alm.rundir import DEFAULT_RUNS_ROOT, LOCK_FILE, RUN_FILES, RunDir, resolve_run_dir
from alm.summary import RunStatus, RunSummary

Axis = Literal["step", "tokens", "time"]
AXES: tuple[Axis, ...] = ("step", "tokens", "time")
AXIS_TITLES: dict[Axis, str] = {"step": "step", "tokens": "tokens", "time": "training time"}
RESTART_DIR = "restart"  # the sections a restarted run started from (`write_restart_configs`)
SAMPLES_DIR = "samples"  # samples saved from the dashboard
# Everything alm writes in a run directory; `delete_run` refuses a directory holding anything else.
OWN_ENTRIES = frozenset({*RUN_FILES, LOCK_FILE, "train.log", "checkpoints", RESTART_DIR, SAMPLES_DIR})

__all__ = [
    "AXES",
    "COMPARE_COLUMNS",
    "DEFAULT_RUNS_ROOT",
    "Axis",
    "Comparison",
    "Curve",
    "RunCurves",
    "RunRow",
    "axis_label",
    "compare_cells",
    "compare_figure",
    "compare_runs",
    "comparison",
    "delete_run",
    "ema",
    "list_runs",
    "plot_runs",
    "resolve_run_dir",
    "run_config_text",
    "run_status",
    "summarize_run",
    "write_restart_configs",
]


@dataclass
class RunRow:
    """One row of `alm runs list` / `alm runs compare`."""

    path: Path
    status: RunStatus
    summary: RunSummary
    tok_per_s: float | None  # the latest logged throughput (a comparison: the median over the run)

    @property
    def name(self) -> str:
        return self.path.name


def summarize_run(run_dir: str | Path, events: Sequence[Event] | None = None) -> RunRow:
    run = RunDir(Path(run_dir))
    events = read_events(run.events_path) if events is None else events
    summary = RunSummary(run.name)
    summary.extend(events)
    latest = summary.last_step.tok_per_s if summary.last_step else None
    return RunRow(run.path, summary.status(run.is_live()), summary, latest)


def run_status(run_dir: str | Path) -> RunStatus:
    """`running` (live pid), else from the last start/stop event: finished, interrupted or failed."""
    return summarize_run(run_dir).status


def list_runs(root: str | Path = DEFAULT_RUNS_ROOT) -> list[RunRow]:
    """Every run directory under `root`, most recently updated first (an absent root has no runs)."""
    root = Path(root)
    if not root.is_dir():
        return []
    rows = [summarize_run(p) for p in root.iterdir() if p.is_dir() and RunDir(p).is_populated()]
    return sorted(rows, key=lambda r: (r.summary.last_time or 0.0, r.name), reverse=True)


# --- comparison -----------------------------------------------------------------------------------------------
@dataclass
class Curve:
    """One metric of one run, against step, tokens and training time (parallel lists, in step order)."""

    step: list[float] = field(default_factory=list)
    tokens: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def x(self, axis: Axis) -> list[float]:
        return {"step": self.step, "tokens": self.tokens, "time": self.seconds}[axis]

    def __len__(self) -> int:
        return len(self.values)


class _Points:
    """Collects (step, tokens, seconds, value) keeping the latest record per step: a run resumed from an older
    checkpoint (after a hard kill) logs some steps twice, and the second time is what the final model went through."""

    def __init__(self) -> None:
        self.by_step: dict[int, tuple[float, float, float]] = {}

    def add(self, step: int, tokens: float, seconds: float, value: Any) -> None:
        if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            self.by_step[step] = (tokens, seconds, float(value))

    def curve(self) -> Curve:
        out = Curve()
        for step in sorted(self.by_step):
            tokens, seconds, value = self.by_step[step]
            out.step.append(float(step))
            out.tokens.append(tokens)
            out.seconds.append(seconds)
            out.values.append(value)
        return out


@dataclass
class RunCurves:
    """A run in a comparison: its table row and its curves."""

    row: RunRow
    loss: Curve  # raw training loss
    loss_ema: Curve  # the trainer's own EMA of it (what the run's progress showed)
    val_bpb: Curve  # held-out bits per byte: comparable across tokenizers, unlike nats per token
    lr: Curve
    grad_norm: Curve

    @property
    def name(self) -> str:
        return self.row.name


@dataclass
class Comparison:
    runs: list[RunCurves]

    @property
    def rows(self) -> list[RunRow]:
        return [run.row for run in self.runs]


def _run_curves(run_dir: str | Path) -> RunCurves:
    run = RunDir(Path(run_dir))
    events = read_events(run.events_path)
    summary = RunSummary(run.name)
    points = {name: _Points() for name in ("loss", "loss_ema", "val_bpb", "lr", "grad_norm")}
    rates: list[float] = []
    for event in events:
        summary.apply(event)
        seconds = summary.elapsed() or 0.0
        if isinstance(event, StepEvent) and event.step is not None:
            tokens = float(event.tokens or 0)
            for name in ("loss", "loss_ema", "lr", "grad_norm"):
                points[name].add(event.step, tokens, seconds, getattr(event, name))
            if event.tok_per_s is not None:
                rates.append(event.tok_per_s)
        elif isinstance(event, EvalEvent):
            step = event.step if event.step is not None else summary.step
            points["val_bpb"].add(step, float(summary.tokens), seconds, event.val_bpb)
    rate = statistics.median_high(rates) if rates else None
    row = RunRow(run.path, summary.status(run.is_live()), summary, rate)
    curves = {name: p.curve() for name, p in points.items()}
    return RunCurves(row, **curves)


def comparison(run_dirs: Iterable[str | Path]) -> Comparison:
    """The runs side by side: a row each (throughput: the median over the run) and their curves."""
    return Comparison([_run_curves(run_dir) for run_dir in run_dirs])


def compare_runs(run_dirs: Sequence[str | Path]) -> list[RunRow]:
    """Rows for a comparison table, with `tok_per_s` as the median over the run's logged steps."""
    return comparison(run_dirs).rows


COMPARE_COLUMNS = ("run", "model", "params", "tokens", "best val", "bpb", "tok/s", "duration", "status")


def compare_cells(row: RunRow) -> tuple[str, ...]:
    """A comparison row as text, one cell per COMPARE_COLUMNS entry (the CLI and the dashboard both show these)."""
    s = row.summary
    return (
        row.name,
        s.model_name or "—",
        count(s.params),
        count(s.tokens) if s.tokens else "—",
        number(s.best_val_loss),
        number(s.best_val_bpb, 3),
        count(row.tok_per_s),
        duration(s.elapsed()),
        row.status,
    )


def axis_label(axis: Axis) -> Callable[[float], str]:
    """How a value on `axis` reads: steps and tokens as counts (1.2M), time as a duration (4m05s)."""
    if axis == "time":
        return duration
    return lambda value: count(value, digits=2) if abs(value) >= 1000 else f"{value:.0f}"


def ema(values: Sequence[float | None], alpha: float = 0.1) -> list[float | None]:
    """Exponential moving average that skips missing values (None stays None); the dashboard's smoothing."""
    out: list[float | None] = []
    current: float | None = None
    for value in values:
        if value is not None and math.isfinite(value):
            current = value if current is None else (1 - alpha) * current + alpha * value
            out.append(current)
        else:
            out.append(None)
    return out


def plot_runs(
    run_dirs: Sequence[str | Path] | Comparison,
    out: str | Path,
    *,
    x: Axis = "tokens",
    log_y: bool = False,
) -> Path:
    """Write a PNG comparing runs (see `compare_figure`)."""
    import matplotlib.pyplot as plt

    compared = run_dirs if isinstance(run_dirs, Comparison) else comparison(run_dirs)
    fig = compare_figure(compared, x=x, log_y=log_y)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def compare_figure(compared: Comparison, *, x: Axis = "tokens", log_y: bool = False):
    """A matplotlib figure of runs side by side: train loss (the trainer's EMA over the faint raw loss), val bits
    per byte, learning rate and grad norm, against `x` (step, tokens or training time)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    (ax_loss, ax_val), (ax_lr, ax_norm) = axes
    styles = ("-", "--", "-.", ":")  # overlapping runs stay visible: each has its own dash pattern
    for index, run in enumerate(compared.runs):
        color, style = f"C{index % 10}", styles[index % len(styles)]
        line = {"color": color, "linestyle": style, "linewidth": 1.2}
        ax_loss.plot(run.loss.x(x), run.loss.values, color=color, alpha=0.2, linewidth=0.6)
        panels = ((ax_loss, run.loss_ema), (ax_val, run.val_bpb), (ax_lr, run.lr), (ax_norm, run.grad_norm))
        for ax, curve in panels:
            # Small markers on the sparse evals only (large ones hide other runs); a lone point is a visible dot.
            sparse = ax is ax_val or len(curve) == 1
            marker = {"marker": "o", "markersize": 5 if len(curve) == 1 else 2.5} if sparse else {}
            ax.plot(curve.x(x), curve.values, label=run.name, **line, **marker)
    label = axis_label(x)
    for ax, title in (
        (ax_loss, "train loss (EMA; raw faint), nats/token"),
        (ax_val, "val bits per byte"),
        (ax_lr, "learning rate"),
        (ax_norm, "grad norm (pre-clip)"),
    ):
        ax.set_title(title)
        ax.set_xlabel(AXIS_TITLES[x])
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: label(value)))
        ax.grid(alpha=0.3)
        if log_y and ax is not ax_lr and ax.has_data():
            ax.set_yscale("log")
        if ax.has_data():
            ax.legend(fontsize=8)
    return fig


# --- a run's config, restart, delete ------------------------------------------------------------------------
def run_config_text(run_dir: str | Path) -> str:
    """The run's resolved config (config.yaml) as YAML text; a UsageError when the run has none yet."""
    run = RunDir(Path(run_dir))
    try:
        return run.config_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(
            f"run {run.name} has no config.yaml yet", hint="the trainer writes it when training starts"
        ) from None


def write_restart_configs(source: str | Path, target: str | Path) -> dict[str, Path]:
    """Write the resolved model, train and data sections of run `source` as three YAML files under
    `target/restart/`, the `--model`, `--train` and `--data` of a new run that starts over from them."""
    run = RunDir(Path(source))
    saved = read_yaml(run.config_path)
    if "finetune" in saved:
        raise UsageError(
            f"run {run.name} is a fine-tuning run: a restart would pretrain from scratch",
            hint="start a new fine-tuning run with `alm sft` / `alm dpo` instead",
        )
    directory = Path(target) / RESTART_DIR
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for section in RUN_SECTIONS:
        path = directory / f"{section}.yaml"
        atomic_write_text(path, yaml.safe_dump(saved.get(section) or {}, sort_keys=False))
        paths[section] = path
    return paths


def delete_run(run_dir: str | Path) -> Path:
    """Remove a run directory and everything in it. Refused while the run trains (or anything else writes it),
    and for a directory holding files alm did not write there."""
    run = RunDir(Path(run_dir))
    if not run.path.is_dir():
        raise UsageError(f"no run directory {run.path}", hint="`alm runs list` shows the runs")
    stop_first = "stop it first (ctrl+c in the dashboard, or Ctrl+C where it runs), then delete it"
    if run.is_live():
        writer = run.writer()
        who = writer.describe() if writer else f"pid {run.read_pid()}"
        raise UsageError(f"run {run.name} is training ({who})", hint=stop_first)
    foreign = sorted(p.name for p in run.path.iterdir() if p.name not in OWN_ENTRIES)
    if foreign:
        raise UsageError(
            f"{run.path} holds files alm did not write ({', '.join(foreign[:5])}): not deleting it",
            hint="move those files out first",
        )
    # Held while deleting, so a trainer cannot start writing into the directory being removed.
    with locks.acquire(run.lock_path, f"run {run.name}", hint=stop_first):
        shutil.rmtree(run.path)
    return run.path
