"""`alm bench speedrun`: how fast a recipe learns on the built-in corpus, end to end (modded-nanogpt's idea).

One real `alm train` (a subprocess, on a runs directory of its own) trains a preset's recipe while this watches
its events.jsonl: the wall time and tokens until the val bits per byte first reach a fixed target, and the best
reached within a wall-time budget (at the budget the trainer gets Ctrl+C and stops after its current step). The
clock starts at the trainer's `start` event, so data preparation (done here, before the run) is not counted;
evaluations and checkpoint saves are, as a user waits for them too. `train_s` is the training time alone.

The figures compare with nanoGPT's character-level runs on tiny Shakespeare, whose val split is the same last
10% of the text (`split: tail`): every eval scores the whole val split (`train.eval_batches` is set to cover
it), and its loss is expressed per byte and per character of the val *text* — the documents with the separator
after each one, which the model predicts as <|eos|> and the original text has as a blank line. So `bpc` is
nanoGPT's val loss / ln 2 (1.47 nats ≈ 2.12 bits per character on a GPU); tiny Shakespeare being ASCII, bits per
byte equal bits per character. (The trainer's own `val_bpb` counts the documents' bytes only: ~1% higher.)
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alm.bench.pack import environment
from alm.errors import AlmError, UsageError
from alm.events import EvalEvent, StartEvent, StepEvent, StopEvent, read_events

RUN_NAME = "speedrun"
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 120.0  # after Ctrl+C at the budget, the trainer finishes its step and saves
DOC_SEPARATOR = "\x1e\n"  # what the clean text writes after each document (alm.data.docfile)


@dataclass(frozen=True)
class SpeedrunSettings:
    model: str = "micro"  # preset name or YAML file, as `alm train --model`
    train: str | None = None  # None: `alm train`'s default train preset
    data: str | None = None  # None: the built-in corpus
    overrides: tuple[str, ...] = ()  # `--set` items, qualified or not, as `alm train --set`
    target_bpb: float = 2.5
    budget_minutes: float = 15.0
    runs_dir: Path | None = None  # None: a temporary directory, removed afterwards

    def check(self) -> None:
        if not self.target_bpb > 0:
            raise UsageError(f"--target-bpb must be positive, got {self.target_bpb}")
        if not self.budget_minutes > 0:
            raise UsageError(f"--budget-minutes must be positive, got {self.budget_minutes}")


@dataclass(frozen=True)
class ValText:
    """The val split as text and as tokens: what the loss is divided by."""

    tokens: int  # in the packed val split, one <|eos|> per document included
    bytes: int  # UTF-8 bytes of the clean val text, one separator per document included
    chars: int  # characters of the same
    documents: int

    @classmethod
    def read(cls, clean_val: Path, tokens: int) -> ValText:
        text = clean_val.read_text(encoding="utf-8")
        return cls(tokens, len(text.encode("utf-8")), len(text), text.count(DOC_SEPARATOR))

    def bits(self, nats_per_token: float, per: int) -> float:
        return nats_per_token * self.tokens / (math.log(2) * per)


@dataclass(frozen=True)
class CurvePoint:
    step: int
    tokens: int
    epochs: float | None
    wall_s: float  # since the trainer's start event: evals and saves included
    train_s: float  # training steps only
    train_loss: float | None  # the EMA at the latest step event
    val_loss: float  # nats per token, over the whole val split
    bpb: float  # bits per byte of the val text
    bpc: float  # bits per character of the val text
    val_bpb: float | None  # the trainer's figure (documents' bytes only)


@dataclass
class SpeedrunResult:
    settings: SpeedrunSettings
    command: list[str]
    val: ValText
    eval_batches: int
    curve: list[CurvePoint]
    stop: str  # the trainer's stop reason, or "budget" when the budget ran out first
    steps: int  # steps trained within the budget
    total_steps: int
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def reached(self) -> CurvePoint | None:
        """The first eval at or below the target."""
        return next((p for p in self.curve if p.bpb <= self.settings.target_bpb), None)

    @property
    def best(self) -> CurvePoint | None:
        return min(self.curve, key=lambda p: p.bpb, default=None)

    def as_dict(self) -> dict[str, Any]:
        settings = {**asdict(self.settings), "runs_dir": str(self.settings.runs_dir or "") or None}
        return {
            "format": "alm-speedrun",
            "version": 1,
            "settings": settings,
            "command": self.command,
            "environment": self.environment,
            "val": asdict(self.val),
            "eval_batches": self.eval_batches,
            "stop": self.stop,
            "steps": self.steps,
            "total_steps": self.total_steps,
            "reached_target": asdict(self.reached) if self.reached else None,
            "best": asdict(self.best) if self.best else None,
            "curve": [asdict(p) for p in self.curve],
        }


def prepare(settings: SpeedrunSettings, console: Any = None) -> tuple[ValText, int]:
    """Build the run's data now (off the clock): the val text and the eval batches that cover the val split."""
    from alm.data.loader import PackedDataset
    from alm.data.pipeline import ensure_dataset
    from alm.train.run_config import load_run_config

    cfg = load_run_config(settings.model, settings.train, settings.data, settings.overrides)
    paths = ensure_dataset(cfg.data, console=console)
    val_tokens = PackedDataset.open(paths.packed_dir, split="val").num_tokens
    seq_len = cfg.train.seq_len or cfg.model.max_seq_len
    windows = max(1, (val_tokens - 1) // seq_len)
    return ValText.read(paths.clean_dir / "val.txt", val_tokens), math.ceil(windows / cfg.train.batch_size)


def train_command(settings: SpeedrunSettings, runs_dir: Path, eval_batches: int) -> list[str]:
    """The `alm train` the speedrun runs: the recipe, evaluated on the whole val split."""
    command = [sys.executable, "-m", "alm", "train", "--model", settings.model]
    command += ["--train", settings.train] if settings.train else []
    command += ["--data", settings.data] if settings.data else []
    command += ["--run", RUN_NAME, "--runs-dir", str(runs_dir), "--progress", "plain"]
    for item in (*settings.overrides, f"train.eval_batches={eval_batches}"):  # the last one wins
        command += ["--set", item]
    return command


def curve(events: list[Any], val: ValText, deadline_s: float) -> list[CurvePoint]:
    """The evals of the latest start that ended within `deadline_s` of it, as speedrun figures."""
    starts = [i for i, e in enumerate(events) if isinstance(e, StartEvent)]
    if not starts:
        return []
    start = events[starts[-1]]
    points: list[CurvePoint] = []
    train_s, logged_step, latest = 0.0, start.resumed_from or 0, StepEvent(time=None)
    for event in events[starts[-1] :]:
        if isinstance(event, StepEvent) and event.step is not None:
            train_s += (event.step_time or 0.0) * (event.step - logged_step)
            logged_step, latest = event.step, event
        elif isinstance(event, EvalEvent) and event.val_loss is not None and math.isfinite(event.val_loss):
            wall = (event.time or 0.0) - (start.time or 0.0)
            if wall > deadline_s or event.step is None:
                continue
            points.append(
                CurvePoint(
                    step=event.step,
                    tokens=latest.tokens or 0,
                    epochs=latest.epochs,
                    wall_s=wall,
                    train_s=train_s,
                    train_loss=latest.loss_ema,
                    val_loss=event.val_loss,
                    bpb=val.bits(event.val_loss, val.bytes),
                    bpc=val.bits(event.val_loss, val.chars),
                    val_bpb=event.val_bpb,
                )
            )
    return points


def run_speedrun(
    settings: SpeedrunSettings,
    log: Callable[[str], None] = lambda _msg: None,
    on_point: Callable[[CurvePoint], None] = lambda _point: None,
) -> SpeedrunResult:
    """Prepare the data, run the recipe until it stops or the budget runs out, and read the figures back."""
    settings.check()
    val, eval_batches = prepare(settings)
    temporary = settings.runs_dir is None
    runs_dir = Path(tempfile.mkdtemp(prefix="alm-speedrun-")) if temporary else Path(settings.runs_dir or ".")
    try:
        command = train_command(settings, runs_dir, eval_batches)
        log(f"$ {' '.join(command[2:])}")
        stop, steps, total = _train(command, runs_dir, val, settings.budget_minutes * 60, on_point)
        events = read_events(runs_dir / RUN_NAME / "events.jsonl")
    finally:
        if temporary:
            shutil.rmtree(runs_dir, ignore_errors=True)
    return SpeedrunResult(
        settings=settings,
        command=["alm", *command[3:]],
        val=val,
        eval_batches=eval_batches,
        curve=curve(events, val, settings.budget_minutes * 60),
        stop=stop,
        steps=steps,
        total_steps=total,
        environment=environment(),
    )


def _train(
    command: list[str], runs_dir: Path, val: ValText, budget_s: float, on_point: Callable[[CurvePoint], None]
) -> tuple[str, int, int]:
    """Run `command`, reporting each eval as it lands; Ctrl+C it at the budget. (stop reason, steps, total)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    events_path = runs_dir / RUN_NAME / "events.jsonl"
    log_path = runs_dir / f"{RUN_NAME}.log"
    with open(log_path, "w", encoding="utf-8") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, text=True)
        interrupted, seen = False, 0
        try:
            while proc.poll() is None:
                time.sleep(POLL_SECONDS)
                events = read_events(events_path)
                start = next((e for e in events if isinstance(e, StartEvent)), None)
                points = curve(events, val, budget_s)
                for point in points[seen:]:
                    on_point(point)
                seen = len(points)
                if start and not interrupted and time.time() - (start.time or 0.0) >= budget_s:
                    proc.send_signal(signal.SIGINT)  # the trainer stops after its current step
                    interrupted = True
            proc.wait(timeout=STOP_GRACE_SECONDS)
        finally:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
    events = read_events(events_path)
    stops = [e for e in events if isinstance(e, StopEvent)]
    start = next((e for e in events if isinstance(e, StartEvent)), None)
    if start is None or not stops:  # a run that stopped by itself (diverged, say) is a result, not a failure
        tail = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-15:]
        raise AlmError(
            f"the speedrun's `alm train` failed (exit {proc.returncode}):\n" + "\n".join(tail),
            hint="run the command above yourself to see the whole output",
        )
    for point in curve(events, val, budget_s)[seen:]:
        on_point(point)
    last_steps = [e.step for e in events if isinstance(e, StepEvent) and e.step is not None]
    reason = "budget" if interrupted else stops[-1].reason
    return reason, max(last_steps, default=0), start.total_steps or 0


__all__ = ["CurvePoint", "SpeedrunResult", "SpeedrunSettings", "ValText", "curve", "prepare", "run_speedrun"]
