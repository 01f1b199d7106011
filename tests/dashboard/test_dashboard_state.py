"""The torch-free core: incremental tailing of events.jsonl and folding events into a RunState."""

from __future__ import annotations

import json
import os
from pathlib import Path

from dashboard_helpers import history, make_run, start_event, step_event, write_events

from alm.dashboard.events import EventTail
from alm.dashboard.state import RunState, downsample
from alm.dashboard.watch import RunBook, RunWatch, discover_runs
from alm.events import StepEvent, decode
from alm.runs import run_status


def fold(name: str, records: list[dict]) -> RunState:
    state = RunState(name)
    state.extend(decode(record) for record in records)
    return state


def test_tail_reads_only_new_complete_lines(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    tail = EventTail(path)
    assert tail.poll() == []  # no file yet: nothing, no error
    write_events(path, [start_event("r"), step_event(1)])
    assert [e.type for e in tail.poll()] == ["start", "step"]
    offset = tail.offset
    assert offset == path.stat().st_size
    assert tail.poll() == []  # nothing new: nothing re-read

    # The trainer is caught mid-write: half a line is not consumed until its newline arrives.
    line = json.dumps(step_event(2))
    with open(path, "a") as fh:
        fh.write(line[:20])
    assert tail.poll() == []
    assert tail.offset == offset
    with open(path, "a") as fh:
        fh.write(line[20:] + "\n")
    assert [e.step for e in tail.poll() if isinstance(e, StepEvent)] == [2]


def test_tail_skips_malformed_lines_and_restarts_on_truncation(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(
        '{"type": "step", "step": 1}\nnot json\n[1, 2]\n{"no_type": 1}\n{"type": "step", "step": 2}\n'
    )
    tail = EventTail(path)
    assert [e.step for e in tail.poll() if isinstance(e, StepEvent)] == [1, 2]
    assert tail.bad_lines == 3
    path.write_text('{"type": "step", "step": 9}\n')  # rewritten shorter (a run started over)
    assert [e.step for e in tail.poll() if isinstance(e, StepEvent)] == [9]
    assert tail.reset


def test_tail_catches_up_over_several_polls_when_the_backlog_is_large(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    write_events(path, [step_event(s) for s in range(1, 501)])
    tail = EventTail(path)
    seen: list[int] = []
    polls = 0
    while chunk := tail.poll(max_bytes=8192):
        seen += [e.step for e in chunk if isinstance(e, StepEvent) and e.step is not None]
        polls += 1
    assert seen == list(range(1, 501))
    assert polls > 5


def test_state_folds_a_run_and_matches_alm_runs_status(tmp_path: Path) -> None:
    events = history("r", steps=150, stop="interrupted")
    run = make_run(tmp_path, "r", events)
    state = fold("r", events)
    assert state.step == 150 and state.total_steps == 200
    assert state.tokens == 150 * 4096
    assert state.progress == 0.75
    assert len(state.loss) == 150 and len(state.val_loss) == 3
    last_eval = [e for e in events if e["type"] == "eval"][-1]
    assert state.best_val_loss == last_eval["best_val_loss"] == state.val_loss.last
    assert state.checkpoints == {"step-50": 50, "step-100": 100, "step-150": 150}
    assert state.samples_total == 3
    kinds = [item.kind for item in state.feed]
    assert kinds[0] == "start" and kinds[-1] == "stop" and "warning" in kinds
    assert state.eta_seconds == 50.0  # 50 steps left at a steady 1.0 s per step
    assert state.status(alive=False) == "interrupted" == run_status(run)


def test_status_rules(tmp_path: Path) -> None:
    cases = {"finished": "finished", "interrupted": "interrupted", "nan": "failed", "error": "failed"}
    for reason, expected in cases.items():
        state = fold("r", history("r", steps=10, stop=reason))
        assert state.status(alive=False) == expected
    crashed = fold("r", history("r", steps=10, stop=None))
    assert crashed.status(alive=True) == "running"
    assert crashed.status(alive=False) == "failed"  # vanished without a stop event
    assert RunState("r").status(alive=False) == "unknown"
    # A resume appends a new start: the run is live again, the old stop no longer counts.
    resumed = fold("r", [*history("r", steps=10, stop="interrupted"), start_event("r", resumed_from=10)])
    assert resumed.stop is None and resumed.status(alive=True) == "running"
    assert resumed.feed[-1].text.startswith("resumed from step 10")


def test_state_ignores_unknown_and_partial_events() -> None:
    state = fold(
        "r", [{"type": "future-thing", "x": 1}, {"type": "step"}, {"type": "step", "step": 3, "loss": None}]
    )
    assert state.step == 3 and len(state.loss) == 0
    assert state.events_seen == 3


def test_router_stats_are_summarised() -> None:
    from alm.dashboard.widgets.stats import _router_rows

    state = fold("r", [step_event(1, router={"frac_large": [0.25, 0.75], "overflow": [0.0, 0.1]})])
    rows = dict(_router_rows(state.router))
    assert rows["router frac_large"] == "0.500 [0.25–0.75]"
    assert rows["router overflow"].startswith("0.050")


def test_downsample_keeps_shape_and_last_point() -> None:
    xs = [float(i) for i in range(10_000)]
    ys = [float(i % 7) for i in range(10_000)]
    dx, dy = downsample(xs, ys, 200)
    assert len(dx) <= 200
    assert dx[-1] == xs[-1] and dy[-1] == ys[-1]
    assert dx == sorted(dx)
    assert all(0 <= y <= 6 for y in dy)
    assert downsample([1.0, 2.0], [3.0, 4.0], 200) == ([1.0, 2.0], [3.0, 4.0])


def test_watch_polls_incrementally_and_tracks_liveness(tmp_path: Path) -> None:
    run = make_run(tmp_path, "live", [start_event("live")], live_pid=os.getpid())
    watch = RunWatch(run)
    assert watch.poll() and watch.status == "running"
    assert not watch.poll()  # nothing changed
    write_events(run / "events.jsonl", [step_event(1), step_event(2)], mode="a")
    assert watch.poll() and watch.state.step == 2
    (run / "train.pid").unlink()
    assert watch.poll() and watch.status == "failed"  # gone without a stop event


def test_runbook_discovers_runs_and_orders_by_activity(runs_dir: Path) -> None:
    (runs_dir / "not-a-run").mkdir()
    assert [r.name for r in discover_runs(runs_dir)] == ["finished-run", "live-run", "nan-run", "stopped-run"]
    book = RunBook(runs_dir)
    assert book.refresh()
    assert [w.name for w in book.ordered()] == ["finished-run", "stopped-run", "live-run", "nan-run"]
    assert {w.name: w.status for w in book.ordered()} == {
        "finished-run": "finished",
        "stopped-run": "interrupted",
        "live-run": "running",
        "nan-run": "failed",
    }
    assert not book.refresh()
    assert RunBook(runs_dir / "missing").refresh() is False
