"""Pilot tests of each view, driven by events.jsonl files in the real schema and real subprocesses."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from dashboard_helpers import (
    T0,
    RecordingApp,
    history,
    make_run,
    screen_text,
    start_event,
    step_event,
    until,
    write_events,
)
from textual.widgets import Input, Select

from alm.dashboard.request import TrainRequest
from alm.dashboard.sample_command import parse_sample_line
from alm.dashboard.screens.help import HelpScreen
from alm.dashboard.screens.quit import QuitScreen
from alm.dashboard.screens.run import RunScreen
from alm.dashboard.screens.runs import RunsScreen
from alm.dashboard.screens.start import StartRunScreen
from alm.dashboard.widgets.feed import EventFeed, TrainingSamples
from alm.dashboard.widgets.runs_table import RunsTable
from alm.dashboard.widgets.sample_pane import SamplePane

SIZE = (120, 40)


async def test_runs_view_lists_every_run_with_its_status(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunsTable)
        assert table.row_count == 4
        text = screen_text(app)
        for name, status in [
            ("finished-run", "finished"),
            ("stopped-run", "interrupted"),
            ("live-run", "running"),
            ("nan-run", "failed"),
        ]:
            line = next(line for line in text.splitlines() if name in line)
            assert status in line, line
        assert "200/200" in text and "150/200" in text
        # A run that appears later is picked up by the periodic refresh.
        make_run(runs_dir, "late-run", history("late-run", steps=10, stop="finished"))
        await until(pilot, lambda: table.row_count == 5)


async def test_empty_runs_dir_says_what_to_do(tmp_path: Path) -> None:
    app = RecordingApp(tmp_path / "nothing-here")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert "No runs under" in screen_text(app) and "Press n to start one" in screen_text(app)


async def test_run_view_replays_a_finished_run(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir, run="stopped-run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        assert isinstance(app.screen, RunScreen)
        text = screen_text(app)
        assert "interrupted" in text and "step 150 / 200" in text and "75.0%" in text
        assert "resume: alm resume stopped-run" in text
        feed = app.screen.query_one(EventFeed)
        assert (
            feed.shown == app.screen.run_watch.state.feed_total == 9
        )  # start, 3×(eval, ckpt), warning, stop
        assert app.screen.query_one(TrainingSamples).shown == 3
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


async def test_run_view_tails_a_live_run_incrementally(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = make_run(runs, "live", [start_event("live", total_steps=1000), step_event(1)], live_pid=os.getpid())
    events = run / "events.jsonl"
    app = RecordingApp(runs, run="live")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.1)
        watch = app.screen.run_watch
        assert watch.status == "running" and watch.state.step == 1
        for step in range(2, 40):
            write_events(events, [step_event(step)], mode="a")
        write_events(events, [{"schema": 1, "type": "eval", "time": T0 + 40, "step": 39, "val_loss": 2.5,
                               "val_ppl": 12.2, "val_bpb": 1.1, "best_val_loss": 2.5}], mode="a")  # fmt: skip
        await until(pilot, lambda: watch.state.step == 39 and watch.state.best_val_loss == 2.5)
        assert watch.tail.offset == events.stat().st_size
        assert watch.state.events_seen == 41  # every event folded exactly once: nothing was re-read
        await pilot.pause(0.6)  # the chart throttle lets a redraw through
        text = screen_text(app)
        assert "step 39 / 1,000" in text and "running" in text and "ETA" in text
        (run / "train.pid").unlink()  # the trainer vanished without a stop event
        await until(pilot, lambda: watch.status == "failed")


async def test_ctrl_c_stops_the_trainer_safely_and_the_ui_shows_it(tmp_path: Path, scripted_trainer) -> None:
    runs = tmp_path / "runs"
    app = RecordingApp(runs)
    async with app.run_test(size=SIZE) as pilot:
        trainer = app.start_trainer("job", scripted_trainer(runs / "job"))
        assert trainer is not None and isinstance(app.screen, RunScreen)
        try:
            watch = app.screen.run_watch
            await until(pilot, lambda: watch.state.step >= 3)
            assert watch.status == "running"
            await pilot.press("ctrl+c")
            assert trainer.interrupts_sent == 1
            await until(pilot, lambda: trainer.returncode is not None and watch.status == "interrupted")
            assert trainer.returncode == 130
            assert "stopped safely" in app.exit_notes["job"]
            await pilot.pause(0.1)
            assert "stopped safely (exit 130)" in screen_text(app)
            assert app.is_running  # ctrl+c never quits the dashboard
        finally:
            if trainer.poll() is None:
                os.killpg(trainer.pid, signal.SIGKILL)


async def test_a_crashing_trainer_is_shown_and_the_dashboard_survives(
    tmp_path: Path, scripted_trainer
) -> None:
    runs = tmp_path / "runs"
    app = RecordingApp(runs)
    async with app.run_test(size=SIZE) as pilot:
        trainer = app.start_trainer("boom", scripted_trainer(runs / "boom", "crash"))
        await until(pilot, lambda: trainer.returncode is not None)
        await until(pilot, lambda: "boom" in app.exit_notes)
        assert trainer.returncode == 1
        assert "trainer failed (exit 1)" in app.exit_notes["boom"]
        assert any("training failed (exit 1)" in note and "out of memory" in note for note in app.notes)
        watch = app.screen.run_watch
        await until(pilot, lambda: watch.status == "failed")
        await pilot.press("l")  # the Log tab shows the traceback
        await pilot.pause(0.2)
        assert "RuntimeError: CUDA out of memory (simulated crash)" in screen_text(app)
        assert app.is_running


async def test_ctrl_c_with_nothing_training_explains_and_does_not_quit(runs_dir: Path) -> None:
    (runs_dir / "live-run" / "train.pid").unlink()
    app = RecordingApp(runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+c")
        assert app.is_running
        assert any("Nothing to stop" in note for note in app.notes)


async def test_quit_with_a_live_trainer_asks_stop_detach_or_cancel(tmp_path: Path, scripted_trainer) -> None:
    runs = tmp_path / "runs"
    app = RecordingApp(runs)
    trainer = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            trainer = app.start_trainer("job", scripted_trainer(runs / "job"))
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitScreen))
            await pilot.press("escape")  # cancel
            assert isinstance(app.screen, RunScreen) and app.is_running
            await pilot.press("ctrl+q")
            await until(pilot, lambda: isinstance(app.screen, QuitScreen))
            await pilot.click("#detach")
        assert trainer is not None and trainer.alive  # detached: training goes on without the dashboard
        trainer.interrupt()
        assert trainer.process.wait(timeout=20) == 130

        app = RecordingApp(runs)
        async with app.run_test(size=SIZE) as pilot:
            trainer = app.start_trainer("job2", scripted_trainer(runs / "job2"))
            await until(pilot, lambda: (runs / "job2" / "train.pid").exists())
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitScreen))
            await pilot.press("s")  # stop and quit
        assert trainer.process.wait(timeout=20) == 130  # stopped safely on the way out
    finally:
        if trainer is not None and trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)


async def test_start_form_validates_and_returns_a_request(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir)
    results: list[TrainRequest | None] = []
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        assert isinstance(app.screen, StartRunScreen)
        assert app.screen.query_one("#start-name", Input).value.endswith("-micro")
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)

        app.push_screen(StartRunScreen(runs_dir, "finished-run"), results.append)
        await pilot.pause()
        await pilot.click("#start-ok")
        assert "already exists" in screen_text(app)
        screen = app.screen
        screen.query_one("#start-name", Input).value = "fresh"
        screen.query_one("#start-steps", Input).value = "100"  # at least the preset's 50 warmup steps
        screen.query_one("#start-model", Input).value = "pico"
        screen.query_one("#start-device", Select).value = "cpu"
        screen.query_one("#start-steps", Input).focus()
        await pilot.press("enter")  # Enter in any field submits the form
        await until(pilot, lambda: bool(results))
    assert results == [TrainRequest(run="fresh", model="pico", steps=100, device="cpu")]


async def test_help_screen_and_command_palette_actions(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert "stop training safely" in screen_text(app)
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)
        titles = [command.title for command in app.get_system_commands(app.screen)]
        for title in ("New run", "Stop training", "Resume run", "Runs", "Help", "Open run stopped-run"):
            assert title in titles
        open_run = next(c for c in app.get_system_commands(app.screen) if c.title == "Open run nan-run")
        open_run.callback()
        await pilot.pause()
        assert isinstance(app.screen, RunScreen) and app.screen.run_name == "nan-run"


async def test_resume_refuses_a_live_run(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir, run="live-run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert any("already training" in note for note in app.notes)
        assert app.trainers == {}


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_sampling_pane_streams_from_a_real_checkpoint(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        pane = app.screen.query_one(SamplePane)
        await until(pilot, lambda: pane.query_one("#sample-checkpoint", Select).value == "last")
        choices = pane.knobs._choices
        assert choices == ["last", "step-20", "step-10"]

        pane.query_one("#sample-max-tokens", Input).value = "12"
        prompt = pane.query_one("#sample-prompt", Input)
        assert not prompt.has_focus  # letters stay keys in the Sample tab until p puts the cursor there
        await pilot.press("p")
        await until(pilot, lambda: prompt.has_focus)
        prompt.value = "ROMEO:"
        await pilot.press("enter")
        await until(pilot, lambda: not pane.running, timeout=60)
        [result] = pane.history
        assert result.request.prompt == "ROMEO:" and result.request.checkpoint == "last"
        assert result.request.options["max_new_tokens"] == 12 and result.text
        first = screen_text(app)
        assert "ROMEO:" in first and "step 20" in first and "seed" in first

        # A command line with the CLI's options; greedy is deterministic, so twice gives the same text.
        outputs = []
        for _ in range(2):
            prompt.value = 'alm sample --prompt "To be" --greedy -n 8 --checkpoint step-10'
            await pilot.press("enter")
            await until(pilot, lambda: not pane.running, timeout=60)
            outputs.append(pane.history[-1].text)
        assert outputs[0] == outputs[1] and outputs[0]
        assert pane.history[-1].request.checkpoint == "step-10" and "step 10" in pane.history[-1].note

        # One job at a time, and Esc cancels it between tokens (staying on the run).
        pane.start(
            parse_sample_line("alm sample --prompt x -n 100000 --seed 0", run_dir=sampled_run / "tiny")
        )
        assert pane.running
        pane.generate()  # a second job while one runs is refused, not started
        assert any("already being generated" in note for note in app.notes)
        app.screen.action_back()  # what Esc does
        await until(pilot, lambda: not pane.running, timeout=30)
        assert isinstance(app.screen, RunScreen)
        assert "stop: cancelled" in pane.history[-1].note and len(pane.history) == 4

        prompt.value = "alm sample --prompt x --top-p 7"
        await pilot.press("enter")
        await pilot.pause()
        assert "--top-p" in screen_text(app) and not pane.running


async def test_sampling_warns_when_the_run_trains_on_the_gpu(tmp_path: Path) -> None:
    start = start_event("gpu")
    start["device"] = {"device": "mps", "type": "mps", "name": "Apple M3"}
    make_run(tmp_path, "gpu", [start], live_pid=os.getpid())
    app = RecordingApp(tmp_path, run="gpu")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await pilot.pause(0.2)
        assert "shares the GPU" in screen_text(app)
        app.screen.query_one("#sample-device", Select).value = "cpu"
        await pilot.pause(0.1)
        assert "shares the GPU" not in screen_text(app)


def test_the_app_module_does_not_import_torch() -> None:
    """The dashboard starts fast: torch loads only when a sample is drawn."""
    import subprocess
    import sys

    code = "import sys, alm.dashboard.app; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
