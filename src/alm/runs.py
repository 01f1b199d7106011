"""Reading finished and live runs from their run directories: events, status, summaries and comparisons.

Torch-free (the dashboard and `alm runs` use it without loading torch). The trainer writes the files
(`alm.train`), this module only reads them; see docs/CONTRACTS.md for the run directory and events schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from alm.errors import DataError
from alm.train.rundir import DEFAULT_RUNS_ROOT, RunDir, resolve_run_dir

RunStatus = Literal["running", "finished", "interrupted", "failed", "unknown"]
_STOP_STATUS: dict[str, RunStatus] = {"finished": "finished", "interrupted": "interrupted", "nan": "failed"}

__all__ = [
    "DEFAULT_RUNS_ROOT",
    "RunStatus",
    "RunSummary",
    "compare_runs",
    "ema",
    "list_runs",
    "plot_runs",
    "read_events",
    "resolve_run_dir",
    "run_status",
    "summarize_run",
]


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """All complete events in an events.jsonl, in order.

    A half-written last line (the trainer is mid-write, or was killed) and malformed lines are skipped, and so
    are JSON values that are not event objects; unknown event types are kept for the caller to ignore.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    events = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            event = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            events.append(event)
    return events


def _status_from(run: RunDir, events: Sequence[dict[str, Any]]) -> RunStatus:
    if run.is_live():
        return "running"
    last = next((e for e in reversed(events) if e["type"] in ("start", "stop")), None)
    if last is None:
        return "unknown"
    if last["type"] == "start":  # started and never said it stopped: killed or crashed
        return "failed"
    return _STOP_STATUS.get(str(last.get("reason")), "failed")


def run_status(run_dir: str | Path) -> RunStatus:
    """`running` (live pid), else from the last start/stop event: finished, interrupted or failed."""
    run = RunDir(Path(run_dir))
    return _status_from(run, read_events(run.events_path))


@dataclass
class RunSummary:
    """One row of `alm runs list` / the dashboard's run table."""

    name: str
    path: Path
    status: RunStatus
    step: int = 0
    total_steps: int | None = None
    tokens: int = 0
    loss: float | None = None
    best_val_loss: float | None = None
    val_bpb: float | None = None  # bits per byte at the best val loss
    tok_per_s: float | None = None  # the latest logged throughput (compare_runs: the median)
    params: int | None = None
    started: float | None = None
    last_update: float | None = None
    device: str | None = None
    stop_reason: str | None = None
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def progress(self) -> float | None:
        return self.step / self.total_steps if self.total_steps else None


def summarize_run(run_dir: str | Path, events: Sequence[dict[str, Any]] | None = None) -> RunSummary:
    run = RunDir(Path(run_dir))
    events = read_events(run.events_path) if events is None else events
    summary = RunSummary(name=run.name, path=run.path, status=_status_from(run, events))
    for event in events:
        kind = event["type"]
        if kind == "start":
            summary.started = summary.started or _num(event.get("time"))
            summary.total_steps = _int(event.get("total_steps"))
            summary.params = _int((event.get("params") or {}).get("total"))
            summary.device = (event.get("device") or {}).get("device")
            summary.model = (event.get("config") or {}).get("model") or {}
            summary.stop_reason = None
        elif kind == "step":
            summary.step = _int(event.get("step")) or summary.step
            summary.tokens = _int(event.get("tokens")) or summary.tokens
            summary.loss = _num(event.get("loss"))
            summary.tok_per_s = _num(event.get("tok_per_s"))
        elif kind == "eval":
            summary.step = max(summary.step, _int(event.get("step")) or 0)
            summary.best_val_loss = _num(event.get("best_val_loss"))
            if _num(event.get("val_loss")) == summary.best_val_loss:  # bpb of the best evaluation
                summary.val_bpb = _num(event.get("val_bpb"))
        elif kind == "stop":
            summary.step = max(summary.step, _int(event.get("step")) or 0)
            summary.stop_reason = event.get("reason")
    if events:
        summary.last_update = _num(events[-1].get("time"))
    return summary


def list_runs(root: str | Path = DEFAULT_RUNS_ROOT) -> list[RunSummary]:
    """Every run directory under `root`, most recently updated first (an absent root has no runs)."""
    root = Path(root)
    if not root.is_dir():
        return []
    runs = [summarize_run(p) for p in root.iterdir() if p.is_dir() and RunDir(p).is_populated()]
    return sorted(runs, key=lambda r: (r.last_update or 0.0, r.name), reverse=True)


def compare_runs(run_dirs: Sequence[str | Path]) -> list[RunSummary]:
    """Summaries for a comparison table, with `tok_per_s` as the median over the run's logged steps."""
    rows = []
    for run_dir in run_dirs:
        events = read_events(RunDir(Path(run_dir)).events_path)
        summary = summarize_run(run_dir, events)
        rates = sorted(
            r for e in events if e["type"] == "step" and (r := _num(e.get("tok_per_s"))) is not None
        )
        summary.tok_per_s = rates[len(rates) // 2] if rates else None
        rows.append(summary)
    return rows


def ema(values: Sequence[float | None], alpha: float = 0.1) -> list[float | None]:
    """Exponential moving average that skips missing values (None stays None)."""
    out: list[float | None] = []
    current: float | None = None
    for value in values:
        if value is not None and math.isfinite(value):
            current = value if current is None else (1 - alpha) * current + alpha * value
            out.append(current)
        else:
            out.append(None)
    return out


def plot_runs(run_dirs: Sequence[str | Path], out: str | Path) -> Path:
    """Write a PNG comparing runs: train loss (raw and EMA), val loss, learning rate and grad norm vs tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(12, 8), constrained_layout=True)
    (ax_loss, ax_val), (ax_lr, ax_norm) = axes
    for index, run_dir in enumerate(run_dirs):
        run = RunDir(Path(run_dir))
        events = read_events(run.events_path)
        color = f"C{index % 10}"
        steps, evals = _latest_by_step(events, "step"), _latest_by_step(events, "eval")
        tokens = [e.get("tokens") for e in steps]
        losses = [_num(e.get("loss")) for e in steps]
        marker = "o" if len(steps) == 1 else None  # a lone point is no line
        ax_loss.plot(tokens, losses, color=color, alpha=0.25, linewidth=0.8)
        ax_loss.plot(tokens, ema(losses), color=color, label=run.name, marker=marker)
        val_tokens = [_tokens_at(steps, e.get("step")) for e in evals]
        ax_val.plot(val_tokens, [_num(e.get("val_loss")) for e in evals], "o-", color=color, label=run.name)
        ax_lr.plot(tokens, [_num(e.get("lr")) for e in steps], color=color, label=run.name, marker=marker)
        norms = [_num(e.get("grad_norm")) for e in steps]
        ax_norm.plot(tokens, norms, color=color, label=run.name, marker=marker)
    for ax, title in (
        (ax_loss, "train loss (raw, EMA)"),
        (ax_val, "val loss"),
        (ax_lr, "learning rate"),
        (ax_norm, "grad norm (pre-clip)"),
    ):
        ax.set_title(title)
        ax.set_xlabel("tokens")
        ax.grid(alpha=0.3)
        if ax.has_data():
            ax.legend(fontsize=8)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def _latest_by_step(events: Sequence[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    """Events of `kind` in step order, the latest per step: a run resumed from an older checkpoint (after a
    hard kill) logs some steps twice, and the second time is what the final model went through."""
    latest = {e.get("step"): e for e in events if e["type"] == kind and isinstance(e.get("step"), int)}
    return [latest[step] for step in sorted(latest)]


def _tokens_at(steps: Sequence[dict[str, Any]], step: Any) -> Any:
    """Tokens seen at `step` (from the nearest logged step at or before it), so val and train share an axis."""
    best = None
    for event in steps:
        if event.get("step", 0) <= (step or 0):
            best = event.get("tokens")
    return best if best is not None else 0


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
