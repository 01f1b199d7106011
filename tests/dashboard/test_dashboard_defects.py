"""One Pilot test per defect of issue 13 (charts and the theme are in test_dashboard_charts.py), each on real
run directories, real checkpoints and real subprocesses."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from dashboard_helpers import (
    T0,
    RecordingApp,
    form_checked,
    history,
    make_run,
    screen_text,
    start_event,
    step_event,
    until,
    write_events,
)
from textual.widgets import Button, Input, Select, Static

from alm.dashboard.request import TrainRequest
from alm.dashboard.screens.quit import QuitScreen
from alm.dashboard.screens.run import RunScreen
from alm.dashboard.screens.runs import RunsScreen
from alm.dashboard.screens.start import StartRunScreen
from alm.dashboard.state import FeedItem, RunState
from alm.dashboard.trainer import explain_exit, failure_cause
from alm.dashboard.widgets.charts import MetricChart
from alm.dashboard.widgets.feed import format_item
from alm.dashboard.widgets.runs_table import RunsTable
from alm.dashboard.widgets.sample_pane import SamplePane
from alm.events import decode
from alm.sample.options import SamplingConfig

SIZE = (120, 40)


def _text(widget: Static) -> str:
    return str(widget.render())


# --- 2. the start form --------------------------------------------------------------------------------------
async def test_start_form_shows_problems_inline_and_never_launches_unseen_defaults(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir)
    results: list[TrainRequest | None] = []
    async with app.run_test(size=(100, 36)) as pilot:
        app.push_screen(StartRunScreen(runs_dir, "fresh", devices=("auto", "cpu")), results.append)
        await form_checked(pilot)
        screen = app.screen
        steps = screen.query_one("#start-steps", Input)
        steps.focus()
        await pilot.press("a", "b", "c")
        await form_checked(pilot)
        assert steps.value == "abc"  # typed letters are shown, never silently dropped
        error = screen.query_one("#error-steps", Static)
        assert error.display and "'abc' is not a whole number" in _text(error)
        assert screen.query_one("#start-ok", Button).disabled
        await pilot.press("enter")  # Enter in a field with a problem does not launch anything
        await form_checked(pilot)
        assert results == [] and isinstance(app.screen, StartRunScreen) and app.focused is steps
        steps.value = "250"
        await form_checked(pilot)
        assert not error.display and _text(error) == ""  # the fixed field's old error is gone
        assert not screen.query_one("#start-ok", Button).disabled

        # Empty fields say what they mean; the plan spells out the defaults that will run.
        for field in ("train", "data", "overrides"):
            assert "empty:" in screen.query_one(f"#start-{field}", Input).placeholder
        steps.value = ""
        await form_checked(pilot)
        assert screen.query_one("#start-steps", Input).placeholder == "empty: 1,500 (the config's)"
        assert "1,500 steps" in _text(screen.query_one("#start-plan", Static))

        # The suggested name follows the model until the user names the run.
        model, name = screen.query_one("#start-model", Input), screen.query_one("#start-name", Input)
        model.value = "pico"
        await form_checked(pilot)
        assert name.value.endswith("-pico")
        name.value = "mine"
        model.value = "nano"
        await form_checked(pilot)
        assert name.value == "mine"

        # Only the devices this machine has are offered.
        device = screen.query_one("#start-device", Select)
        assert [value for _, value in device._options] == ["auto", "cpu"]
        model.value = "pico"
        await pilot.press("enter")
        await until(pilot, lambda: bool(results))
    assert results == [TrainRequest(run="mine", model="pico", device="auto")]


# --- 3. single-letter keys and esc in the Sample tab ----------------------------------------------------------
async def test_sample_tab_leaves_letters_to_the_app_and_esc_steps_back(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir, run="finished-run")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await pilot.press("s")
        assert screen.active_tab == "sample"
        footer = screen_text(app).splitlines()[-1]
        for key in ("Help", "Prompt", "Cancel", "Copy", "Save", "Monitor"):
            assert key in footer, footer
        await pilot.press("m")
        assert screen.active_tab == "monitor"
        await pilot.press("s", "l")
        assert screen.active_tab == "log"
        assert screen.query_one("#sample-prompt", Input).value == ""  # no key went into the prompt
        await pilot.press("s", "p", "h", "i")
        assert screen.query_one("#sample-prompt", Input).value == "hi"  # p: the cursor in the prompt
        await pilot.press("escape")  # leave the prompt
        assert not isinstance(app.focused, Input) and screen.active_tab == "sample"
        await pilot.press("escape")  # the run's Monitor tab, not the runs list
        assert app.screen is screen and screen.active_tab == "monitor"
        await pilot.press("escape")
        assert isinstance(app.screen, RunsScreen)


# --- 4, 5, 6. the live output, ctrl+c, the prompt and the command line ---------------------------------------
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_sample_output_follows_the_text_and_its_status_line_stays_visible(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=(100, 24)) as pilot:
        await pilot.press("s")
        pane = app.screen.query_one(SamplePane)
        pane.query_one("#sample-max-tokens", Input).value = "1000"
        pane.query_one("#sample-ignore-eos").value = True
        await pilot.press("p", *"ROMEO:", "enter")
        await until(pilot, lambda: pane.last is not None and not pane.running, timeout=120)
        await pilot.pause(0.2)
        box = pane.query_one("#sample-output-box")
        assert box.max_scroll_y > 0 and box.scroll_y == box.max_scroll_y  # the newest text is in view
        assert "1000 tokens" in screen_text(app) and "stop: length" in screen_text(app)
        assert "tok/s" in pane.last.note
        assert pane.prompt.value == ""  # typing next starts a new prompt (up recalls the old one)
        await pilot.press("p", "up")
        assert pane.prompt.value == "ROMEO:"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_ctrl_c_in_the_sample_tab_cancels_the_generation(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        pane = app.screen.query_one(SamplePane)
        pane.prompt.value = "alm sample --prompt x -n 100000 --seed 0 --ignore-eos"
        pane.generate()
        await until(pilot, lambda: bool(pane._output), timeout=60)
        await pilot.press("ctrl+c")
        await until(pilot, lambda: not pane.running, timeout=30)
        assert "stop: cancelled" in pane.history[-1].note
        assert not any("Nothing to stop" in note for note in app.notes)
        assert app.is_running and isinstance(app.screen, RunScreen)


async def test_ctrl_c_in_the_sample_tab_never_stops_training(tmp_path: Path, scripted_trainer) -> None:
    runs = tmp_path / "runs"
    app = RecordingApp(runs)
    async with app.run_test(size=SIZE) as pilot:
        trainer = app.start_trainer("job", scripted_trainer(runs / "job"))
        assert trainer is not None
        try:
            await until(pilot, lambda: app.screen.run_watch.state.step >= 2)
            await pilot.press("s", "ctrl+c")
            await pilot.pause(0.3)
            assert trainer.interrupts_sent == 0 and trainer.alive
            assert any("Nothing is being generated" in note for note in app.notes)
            await pilot.press("m", "ctrl+c")  # from the Monitor tab ctrl+c does stop it, safely
            await until(pilot, lambda: trainer.returncode == 130)
        finally:
            if trainer.poll() is None:
                os.killpg(trainer.pid, signal.SIGKILL)


async def test_a_command_line_starts_from_the_knobs_and_shows_what_it_used(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        pane = app.screen.query_one(SamplePane)
        await until(pilot, lambda: pane.knobs.checkpoint == "last")
        pane.query_one("#sample-max-tokens", Input).value = "7"
        pane.query_one("#sample-temperature", Input).value = "0.5"
        pane.prompt.value = "ROMEO:"
        await pilot.pause()
        command = _text(pane.query_one("#sample-command", Static))
        assert "alm sample tiny --prompt ROMEO:" in command and "--max-tokens 7" in command
        assert "--temperature 0.5" in command and "--checkpoint last" in command
        [request] = pane.build_requests("alm sample --prompt x --top-k 5 -c step-10")
        assert request.options["max_new_tokens"] == 7 and request.options["temperature"] == 0.5  # the knobs
        assert request.options["top_k"] == 5 and request.checkpoint == "step-10"  # the line's flags win
        await pilot.pause()
        assert pane.query_one("#sample-top-k", Input).value == "5"  # the knobs show what the line used
        assert pane.query_one("#sample-checkpoint", Select).value == "step-10"
        pane.prompt.value = "alm sample --prompt x"
        await pilot.pause()
        assert "flags override the knobs" in _text(pane.query_one("#sample-command", Static))


# --- 7, 8, 9. the runs table, memory, elapsed and ETA ---------------------------------------------------------
async def test_runs_table_columns_grow_with_their_contents(tmp_path: Path) -> None:
    run = make_run(tmp_path, "grow", [start_event("grow", total_steps=1500), step_event(50)])
    app = RecordingApp(tmp_path)
    async with app.run_test(size=(160, 30)) as pilot:
        await pilot.pause()
        assert "50/1,500" in screen_text(app)
        events = [step_event(s) for s in range(100, 1501, 100)]
        events.append({"schema": 1, "type": "stop", "time": T0 + 1501, "step": 1500, "reason": "interrupted"})
        write_events(run / "events.jsonl", events, mode="a")
        await until(pilot, lambda: app.book.get("grow").state.step == 1500)
        await pilot.pause(1.0)
        line = next(line for line in screen_text(app).splitlines() if "/1,500" in line)
        assert "1,500/1,500" in line and "● interrupted" in line, line


async def test_memory_shows_the_rss_a_cpu_run_reports(tmp_path: Path) -> None:
    step = step_event(10)
    step["memory"] = {"rss": 123_456_789}
    make_run(tmp_path, "cpu", [start_event("cpu"), step])
    app = RecordingApp(tmp_path, run="cpu")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        line = next(line for line in screen_text(app).splitlines() if line.startswith("memory"))
        assert "123MB" in line and "—B" not in line


async def test_elapsed_and_eta_follow_the_clock_and_cover_every_start(tmp_path: Path) -> None:
    now = [T0 + 100.0]
    events = [start_event("live", total_steps=200)] + [step_event(s) for s in range(1, 81)]
    make_run(tmp_path, "live", events, live_pid=os.getpid())
    app = RecordingApp(tmp_path, run="live", clock=lambda: now[0], tick=60.0)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.2)
        text = screen_text(app)
        assert "1m40s" in text  # elapsed: 100 s since the start, though the last event is at 80 s
        now[0] = T0 + 130.0
        app.refresh_views()  # what the app's timer does every few ticks
        await pilot.pause(0.2)
        stats = screen_text(app)
        assert "2m10s" in stats  # elapsed moved on without a new event
        assert "1m10s" in stats  # ETA counted down: 120 steps × 1 s after step 80, 50 s ago

    resumed = [start_event("again", total_steps=200)] + [step_event(s) for s in range(1, 51)]
    resumed.append({"schema": 1, "type": "stop", "time": T0 + 51, "step": 50, "reason": "interrupted"})
    resumed.append(start_event("again", total_steps=200, t=T0 + 1000, resumed_from=50))
    resumed += [step_event(s, t=T0 + 950 + s) for s in range(51, 61)]
    make_run(tmp_path, "again", resumed)
    state = RunState("again")
    state.extend(decode(record) for record in resumed)
    assert state.elapsed() == pytest.approx(51 + 10)  # both starts, not the pause between them


# --- 10. 80×24 ------------------------------------------------------------------------------------------------
async def test_an_80x24_terminal_keeps_charts_knobs_and_help_usable(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir, run="finished-run")
    async with app.run_test(size=(80, 24)) as pilot:
        screen = app.screen

        def footer() -> str:
            return screen_text(app).splitlines()[-1]

        await until(pilot, lambda: "? Help" in footer())
        chart = screen.query_one("#chart-main", MetricChart)
        assert chart.size.width >= 30 and chart.size.height >= 8
        await pilot.press("s")
        await pilot.pause(0.2)
        visible = screen.region
        for knob in screen.query(".knob"):
            assert visible.contains_region(knob.region), knob
        assert visible.contains_region(screen.query_one("#sample-prompt").region)
        await until(pilot, lambda: "? Help" in footer() and "Prompt" in footer())
        await pilot.press("escape", "escape")
        await until(pilot, lambda: "? Help" in footer() and "Compare" in footer())


# --- 11. failures ---------------------------------------------------------------------------------------------
async def test_a_killed_trainer_is_explained_by_its_signal(tmp_path: Path, scripted_trainer) -> None:
    runs = tmp_path / "runs"
    app = RecordingApp(runs)
    async with app.run_test(size=SIZE) as pilot:
        trainer = app.start_trainer("job", scripted_trainer(runs / "job"))
        assert trainer is not None
        await until(pilot, lambda: app.screen.run_watch.state.step >= 2)
        os.killpg(trainer.pid, signal.SIGKILL)
        await until(pilot, lambda: "job" in app.exit_notes)
        assert app.exit_notes["job"].startswith("killed by SIGKILL")
        await pilot.pause(0.3)
        assert "killed by SIGKILL" in screen_text(app)


def test_the_cause_of_a_failure_is_the_error_not_the_last_progress_line(tmp_path: Path) -> None:
    log = "$ alm train\nstep 10/100 loss 3.2 1.2k tok/s\nerror: config key 'train.lr' (in --set): bad\n  hint: x\n"
    assert failure_cause(log) == "config key 'train.lr' (in --set): bad"
    traceback = (
        "step 3/9 1k tok/s\nTraceback (most recent call last):\n  File x\nRuntimeError: CUDA out of memory\n"
    )
    assert failure_cause(traceback) == "RuntimeError: CUDA out of memory"
    assert failure_cause("step 1/5 10 tok/s\nstep 2/5 11 tok/s\n") == "it printed no error (see the Log tab)"
    assert explain_exit(-signal.SIGKILL, tmp_path / "none.log").startswith("killed by SIGKILL")


async def test_resume_without_a_checkpoint_is_refused_with_a_dashboard_hint(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir, run="stopped-run")  # interrupted, but it never saved a checkpoint
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("r")
        assert app.trainers == {}
        note = app.notes[-1]
        assert "no checkpoint to resume from" in note and "Press R" in note and "--overwrite" not in note


# --- 12. smaller ones -----------------------------------------------------------------------------------------
async def test_quit_dialog_focuses_cancel_and_shows_its_keys(tmp_path: Path, scripted_trainer) -> None:
    runs = tmp_path / "runs"
    app = RecordingApp(runs)
    trainer = None
    try:
        async with app.run_test(size=SIZE) as pilot:
            trainer = app.start_trainer("job", scripted_trainer(runs / "job"))
            await pilot.press("q")
            await until(pilot, lambda: isinstance(app.screen, QuitScreen))
            await until(pilot, lambda: app.focused is not None and app.focused.id == "cancel")
            text = screen_text(app)
            assert "Stop and quit (s)" in text and "Detach (d)" in text and "Cancel (esc)" in text
            await pilot.press("enter")  # Enter on its own cancels
            assert not isinstance(app.screen, QuitScreen) and trainer is not None and trainer.alive
    finally:
        if trainer is not None and trainer.poll() is None:
            os.killpg(trainer.pid, signal.SIGKILL)


async def test_an_empty_prompt_is_explained_not_sampled(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s", "p", "enter")
        pane = app.screen.query_one(SamplePane)
        await pilot.pause()
        assert not pane.running and pane.history == []
        assert "the prompt is empty" in _text(pane.query_one("#sample-status", Static))


async def test_screenshots_say_where_they_went_or_why_not(runs_dir: Path, tmp_path: Path) -> None:
    app = RecordingApp(runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        saved = app.deliver_screenshot("shot.svg", str(tmp_path))
        assert saved is not None and Path(saved).read_text().startswith("<svg")
        assert app.notes[-1] == f"Saved {saved}"
        assert app.deliver_screenshot("shot.svg", str(tmp_path / "missing" / "dir")) is None
        assert "Could not save the screenshot in" in app.notes[-1] and "missing" in app.notes[-1]


async def test_the_cursor_follows_a_run_started_here(runs_dir: Path, scripted_trainer) -> None:
    app = RecordingApp(runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("o")  # sorted by name: a new run named zzz lands last, far from the cursor
        table = app.screen.query_one(RunsTable)
        assert table.selected_run == "finished-run"
        trainer = app.start_trainer("zzz", scripted_trainer(runs_dir / "zzz"))
        assert trainer is not None
        try:
            await pilot.press("escape")
            await until(pilot, lambda: table.selected_run == "zzz")
        finally:
            os.killpg(trainer.pid, signal.SIGKILL)


async def test_the_empty_runs_text_sits_at_the_top(tmp_path: Path) -> None:
    app = RecordingApp(tmp_path / "none")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        empty = app.screen.query_one("#runs-empty")
        assert empty.region.y <= 3 and "Press n to start one" in screen_text(app)


def test_stops_are_coloured_by_how_they_ended() -> None:
    state = RunState("x")
    for reason in ("finished", "interrupted", "nan"):
        state.apply(decode({"type": "stop", "time": 1.0, "step": 5, "reason": reason}))
    styles = [item.style for item in state.feed]
    assert styles == ["green", "yellow", "bold red"]
    assert "green" in str(format_item(FeedItem(1.0, "stop", 5, "stopped: finished", "green")).spans[1].style)


async def test_checkpoint_and_max_tokens_knobs_match_the_cli(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        pane = app.screen.query_one(SamplePane)
        select = pane.query_one("#sample-checkpoint", Select)
        await until(pilot, lambda: select.value == "last")  # what `alm sample` picks: best, else last
        assert [value for _, value in select._options] == ["last", "step-20", "step-10"]  # no "none yet"
        assert pane.query_one("#sample-max-tokens", Input).value == str(SamplingConfig().max_new_tokens)


def test_the_start_event_names_the_device_not_the_cpu_architecture() -> None:
    state = RunState("x")
    start = start_event("x")
    start["device"] = {"device": "cpu", "type": "cpu", "name": "x86_64", "precision": "fp32"}
    state.apply(decode(start))
    assert state.feed[-1].text == "started on cpu · fp32"
    cuda = start_event("y")
    cuda["device"] = {"device": "cuda:0", "type": "cuda", "name": "NVIDIA H200", "precision": "bf16"}
    state.apply(decode(cuda))
    assert state.feed[-1].text == "started on cuda:0 (NVIDIA H200) · bf16"


def test_a_finished_stop_is_not_an_interrupt_in_the_runs_list(runs_dir: Path) -> None:
    """The history helper's runs in every status are what the other tests here rely on."""
    assert {p.name for p in runs_dir.iterdir()} == {"finished-run", "stopped-run", "nan-run", "live-run"}
    assert history("x", steps=10, stop="finished")[-1]["reason"] == "finished"
