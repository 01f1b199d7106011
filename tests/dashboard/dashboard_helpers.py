"""Helpers for dashboard tests: events in the real events.jsonl schema with fixed times, run directories, a
stand-in trainer script, and reading what a running app shows."""

from __future__ import annotations

import html
import json
import math
import re
import textwrap
import time
from collections import defaultdict
from pathlib import Path

from textual.app import App

from alm.dashboard.app import DashboardApp

T0 = 1_700_000_000.0  # fixed event times: nothing in a snapshot depends on the wall clock


def fixed_clock() -> float:
    return T0 + 400.0


def start_event(name: str, *, total_steps: int = 200, t: float = T0, resumed_from: int | None = None) -> dict:
    return {
        "schema": 1,
        "type": "start",
        "time": t,
        "run": name,
        "pid": 4242,
        "config": {"model": {"d_model": 64, "n_layers": 2}, "train": {"steps": total_steps}, "data": {}},
        "device": {"device": "cpu", "type": "cpu", "name": "cpu", "precision": "fp32"},
        "params": {"total": 123_456, "non_embedding": 100_000},
        "total_steps": total_steps,
        "resumed_from": resumed_from,
        "command": ["alm", "train"],
    }


def step_event(step: int, *, t: float | None = None, router: dict | None = None) -> dict:
    ema = 5.0 * math.exp(-step / 60) + 1.5
    return {
        "schema": 1,
        "type": "step",
        "time": T0 + step if t is None else t,
        "step": step,
        "tokens": step * 4096,
        "loss": ema + 0.1 * math.sin(step),
        "loss_ema": ema,
        "lr": 1e-3 * min(1.0, step / 20),
        "grad_norm": 1.0 / (1 + step / 50),
        "tok_per_s": 4000.0 + 10 * step,
        "step_time": 1.0,
        "router": router,
        "memory": {"allocated": 10_000_000, "reserved": 12_000_000, "peak": 12_345_678},
    }


def history(
    name: str, *, steps: int = 150, total_steps: int = 200, stop: str | None = "interrupted"
) -> list[dict]:
    """A plausible run: steps with a falling loss, an eval + checkpoint + sample every 50 steps, then a stop."""
    events = [start_event(name, total_steps=total_steps)]
    for s in range(1, steps + 1):
        events.append(step_event(s))
        if s % 50 == 0:
            val = 5.0 * math.exp(-s / 60) + 1.7
            t = T0 + s
            events += [
                {
                    "schema": 1,
                    "type": "eval",
                    "time": t,
                    "step": s,
                    "val_loss": val,
                    "val_ppl": math.exp(val),
                    "val_bpb": val / math.log(2) / 3.5,
                    "best_val_loss": val,
                },
                {
                    "schema": 1,
                    "type": "checkpoint",
                    "time": t,
                    "step": s,
                    "kind": "step",
                    "path": f"runs/{name}/checkpoints/step-{s:06d}.pt",
                },
                {
                    "schema": 1,
                    "type": "sample",
                    "time": t,
                    "step": s,
                    "prompt": "ROMEO:",
                    "text": " what light through yonder window breaks",
                },
            ]
    if steps >= 120:
        events.append(
            {
                "schema": 1,
                "type": "warning",
                "time": T0 + 120,
                "step": 120,
                "message": "loss was not finite at step 120; update skipped",
            }
        )
    if stop is not None:
        resume = f"alm resume {name}" if stop == "interrupted" else None
        events.append(
            {
                "schema": 1,
                "type": "stop",
                "time": T0 + steps + 1,
                "step": steps,
                "reason": stop,
                "resume_command": resume,
            }
        )
    return events


def write_events(path: Path, events: list[dict], mode: str = "w") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode, encoding="utf-8") as fh:
        for event in events:
            fh.write(json.dumps(event) + "\n")


def make_run(runs_dir: Path, name: str, events: list[dict], *, live_pid: int | None = None) -> Path:
    run = runs_dir / name
    write_events(run / "events.jsonl", events)
    (run / "config.yaml").write_text("model: {}\ntrain: {}\ndata: {}\n")
    if live_pid is not None:
        (run / "train.pid").write_text(str(live_pid))
    return run


# A stand-in trainer for the process-control tests: a real subprocess that writes the real event schema with the
# training engineer's EventWriter, a pid file, and reacts to SIGINT like `alm train` (stop event, exit 130).
# The real `alm train` is exercised end to end in test_e2e_tmux.py.
SCRIPTED_TRAINER = textwrap.dedent(
    """
    import os, signal, sys, time
    from pathlib import Path
    from alm.events import CheckpointEvent, EventWriter, StartEvent, StepEvent, StopEvent

    run = Path(sys.argv[1]); mode = sys.argv[2]
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.yaml").write_text("model: {}\\n")
    (run / "train.pid").write_text(str(os.getpid()))
    stop = []
    signal.signal(signal.SIGINT, lambda *a: stop.append(1))
    ev = EventWriter(run / "events.jsonl")
    ev.write(StartEvent(run=run.name, pid=os.getpid(), config={}, device={"type": "cpu", "device": "cpu"},
             params={"total": 1000, "non_embedding": 900}, total_steps=100000, command=sys.argv))
    print("training", flush=True)
    step = 0
    while True:
        step += 1
        ev.write(StepEvent(step=step, tokens=step * 64, loss=3.0, loss_ema=3.0, lr=1e-3, grad_norm=1.0,
                 tok_per_s=1000.0, step_time=0.02))
        if mode == "crash" and step == 5:
            raise RuntimeError("CUDA out of memory (simulated crash)")
        if stop:
            ev.write(CheckpointEvent(step=step, path=str(run / "checkpoints" / "last.pt"), kind="last"))
            ev.write(StopEvent(step=step, reason="interrupted", resume_command=f"alm resume {run.name}"))
            os.unlink(run / "train.pid")
            print("stopped", flush=True)
            sys.exit(130)
        time.sleep(0.02)
    """
)


_TEXT = re.compile(r'<text class="[^"]*" [^>]*?x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', re.S)


def screen_lines(app: App) -> list[str]:
    rows: dict[float, list[tuple[float, str]]] = defaultdict(list)
    svg = app.export_screenshot()
    body = svg[svg.index("clip-path=") :]  # skip the window title
    for x, y, content in _TEXT.findall(body):
        rows[float(y)].append((float(x), html.unescape(content).replace("\xa0", " ")))
    return ["".join(text for _, text in sorted(spans)) for _, spans in sorted(rows.items())]


def screen_text(app: App) -> str:
    return "\n".join(screen_lines(app))


class RecordingApp(DashboardApp):
    """The real app, keeping the notifications it shows so tests can read them."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("clock", fixed_clock)
        kwargs.setdefault("tick", 0.1)
        super().__init__(*args, **kwargs)
        self.notes: list[str] = []

    def notify(self, message, *args, **kwargs):
        self.notes.append(str(message))
        return super().notify(message, *args, **kwargs)


async def until(pilot, predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


async def form_checked(pilot) -> None:
    """Let the new-run form check its fields: it does so once typing pauses."""
    await pilot.pause(0.05)  # the Changed events of what the test just set arrive first
    await until(pilot, lambda: not getattr(pilot.app.screen, "checking", False))
    await pilot.pause()
