"""Comparing and managing runs from the dashboard: marks and the compare view (the same table as `alm runs
compare`), sort and filter, the resolved config, restart with edited overrides, delete with confirmation; the
launch form's config validation; every sampling knob, saving samples; the Chat tab; DPO metrics."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from dashboard_helpers import (
    RecordingApp,
    form_checked,
    make_run,
    screen_text,
    start_event,
    step_event,
    until,
)
from textual.widgets import DataTable, Input, Static
from typer.testing import CliRunner

from alm.cli.app import app as cli
from alm.cli.common import console
from alm.dashboard.screens.compare import CompareScreen
from alm.dashboard.screens.config import ConfigScreen
from alm.dashboard.screens.confirm import ConfirmScreen
from alm.dashboard.screens.run import RunScreen
from alm.dashboard.screens.start import StartRunScreen
from alm.dashboard.widgets.charts import MetricChart
from alm.dashboard.widgets.chat_pane import ChatPane
from alm.dashboard.widgets.runs_table import RunsTable
from alm.dashboard.widgets.sample_pane import SamplePane
from alm.runs import compare_cells, comparison
from alm.sample.options import NUM_SAMPLES, SAMPLING_OPTIONS

SIZE = (140, 44)


def _rows(table: DataTable) -> list[list[str]]:
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)]


async def test_marked_runs_open_a_comparison_that_agrees_with_the_cli(
    runs_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = RecordingApp(runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await pilot.press("c")  # nothing marked: says how
        assert "Mark at least two runs" in app.notes[-1]
        await pilot.press("o")  # sort by name: finished-run, live-run, nan-run, stopped-run
        table = app.screen.query_one(RunsTable)
        await pilot.press("space", "down", "space")  # marks finished-run and nan-run (space moves down)
        assert app.screen.marked == {"finished-run", "nan-run"}
        assert "2 marked" in screen_text(app)
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, CompareScreen))
        screen = app.screen
        await until(pilot, lambda: screen.query_one("#compare-table", DataTable).row_count == 2)
        expected = [
            list(compare_cells(row))
            for row in comparison([runs_dir / "finished-run", runs_dir / "nan-run"]).rows
        ]
        assert _rows(screen.query_one("#compare-table", DataTable)) == expected
        train = screen.query_one("#compare-train", MetricChart)
        assert [line.label for line in train.lines] == ["finished-run", "nan-run"]
        await pilot.press("x")
        assert screen.axis == "tokens" and train.lines[0].xs[-1] == 200 * 4096
        await pilot.press("x")
        assert screen.axis == "time"
        await pilot.press("g", "z")
        assert screen.log_y and screen.smoothing == 0.0
        await pilot.press("escape")
        assert table.selected_run is not None
    monkeypatch.setattr(console, "size", (200, 50))  # the table in full, as on a wide terminal
    result = CliRunner().invoke(
        cli, ["runs", "compare", "finished-run", "nan-run", "--runs-dir", str(runs_dir)]
    )
    assert result.exit_code == 0, result.output
    for row in expected:
        for cell in row[:-1]:  # the status column is coloured in the terminal
            assert cell in result.output


async def test_runs_list_sorts_filters_and_shows_model_size_speed_and_time(runs_dir: Path) -> None:
    app = RecordingApp(runs_dir)
    async with app.run_test(size=(170, 30)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(RunsTable)
        header = next(line for line in screen_text(app).splitlines() if "Run" in line and "Status" in line)
        for column in ("Model", "Params", "Best bpb", "tok/s", "Time"):
            assert column in header, header
        assert "2L·d64" in screen_text(app) and "123k" in screen_text(app) and "3m21s" in screen_text(app)
        await pilot.press("o", "o", "o")  # updated → name → status → best bpb
        assert app.screen.sort == "best bpb"
        assert next(row.value for row in table.rows) == "finished-run"  # the lowest bpb first
        await pilot.press("slash", *"fail")
        await until(pilot, lambda: table.row_count == 1)
        assert [row.value for row in table.rows] == ["nan-run"]
        await pilot.press("escape")
        await until(pilot, lambda: table.row_count == 4)


async def test_view_config_restart_and_delete(runs_dir: Path) -> None:
    (runs_dir / "finished-run" / "config.yaml").write_text(
        "model:\n  d_model: 64\n  n_layers: 2\n  n_heads: 4\n  max_seq_len: 64\ntrain:\n  steps: 200\n"
        "  batch_size: 4\n  warmup_steps: 2\ndata:\n  root: data\n"
    )
    app = RecordingApp(runs_dir)
    async with app.run_test(size=SIZE) as pilot:
        await form_checked(pilot)
        assert app.screen.query_one(RunsTable).select("finished-run")
        await pilot.press("v")
        await until(pilot, lambda: isinstance(app.screen, ConfigScreen))
        assert "d_model" in screen_text(app) and "64" in screen_text(app)
        await pilot.press("escape")

        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, StartRunScreen))
        form = app.screen
        assert (
            "Restart finished-run" in screen_text(app)
            and form.query_one("#start-name", Input).value == "finished-run-2"
        )
        assert not form.query("#start-model")  # the model comes from the run
        form.query_one("#start-overrides", Input).value = "train.lr=abc"
        await form_checked(pilot)
        assert "train.lr" in str(form.query_one("#error-overrides", Static).render())
        form.query_one("#start-overrides", Input).value = "train.lr=1e-3 model.dropout=0.1"
        await form_checked(pilot)
        request, errors = form.request()
        assert errors == {} and request is not None and request.base == runs_dir / "finished-run"
        assert request.config().train.lr == 1e-3 and request.config().model.dropout == 0.1
        assert request.config().model.d_model == 64  # the rest is the run's own config
        await pilot.press("escape")

        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert app.focused is not None and app.focused.id == "confirm-no"  # the safe answer first
        await pilot.press("y")
        await until(pilot, lambda: not (runs_dir / "finished-run").exists())
        assert "deleted finished-run" in app.notes
        await until(pilot, lambda: app.screen.query_one(RunsTable).row_count == 3)

        app.screen.query_one(RunsTable).select("live-run")  # its trainer is alive: never deleted
        await pilot.press("d")
        await form_checked(pilot)
        assert not isinstance(app.screen, ConfirmScreen) and "stop it first" in app.notes[-1]
        assert (runs_dir / "live-run").is_dir()


async def test_the_launch_form_validates_presets_files_corpus_and_overrides(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    (tmp_path / "model.yaml").write_text("d_model: 64\nn_layers: 2\nn_heads: 4\nmax_seq_len: 64\n")
    (tmp_path / "corpus.yaml").write_text(
        f"sources:\n- type: local\n  paths: [{tmp_path / 'x.txt'}]\nroot: {tmp_path / 'data'}\n"
    )
    app = RecordingApp(runs)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, StartRunScreen))
        form = app.screen
        form.query_one("#start-model", Input).value = str(tmp_path / "model.yaml")
        form.query_one("#start-train", Input).value = "nope"
        form.query_one("#start-data", Input).value = str(tmp_path / "corpus.yaml")
        form.query_one("#start-overrides", Input).value = "model.bogus=1"
        await form_checked(pilot)
        assert "neither a preset nor a file" in str(form.query_one("#error-train", Static).render())
        form.query_one("#start-train", Input).value = "micro"
        await form_checked(pilot)
        assert "model.bogus" in str(form.query_one("#error-overrides", Static).render())
        form.query_one("#start-overrides", Input).value = "train.lr=5e-4"
        await form_checked(pilot)
        request, errors = form.request()
        assert errors == {} and request is not None
        assert "2 layers × d_model 64, context 64" in str(form.query_one("#start-plan", Static).render())
        assert str(tmp_path / "data") in str(form.query_one("#start-plan", Static).render())
        argv = request.command(runs)
        assert argv[argv.index("--data") + 1] == str(tmp_path / "corpus.yaml")
        assert argv[argv.index("--set") + 1] == "train.lr=5e-4"


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_every_sample_option_is_a_knob_and_samples_can_be_saved(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        pane = app.screen.query_one(SamplePane)
        for opt in (*SAMPLING_OPTIONS, NUM_SAMPLES):
            assert pane.query(f"#sample-{opt.flag.lstrip('-')}"), opt.name
        pane.query_one("#sample-min-p", Input).value = "0.05"
        pane.query_one("#sample-repetition-penalty", Input).value = "1.2"
        pane.query_one("#sample-seed", Input).value = "3"
        pane.query_one("#sample-stop", Input).value = "'\\n\\n'"
        pane.query_one("#sample-num-samples", Input).value = "2"
        pane.query_one("#sample-max-tokens", Input).value = "6"
        pane.query_one("#sample-temperature", Input).value = "hot"
        await pilot.press("p", *"To be", "enter")
        await pilot.pause()
        assert "temp: 'hot' is not a number" in str(pane.query_one("#sample-status", Static).render())
        pane.query_one("#sample-temperature", Input).value = "0.9"
        pane.prompt.value = "To be"
        await pilot.press("enter")
        await until(pilot, lambda: len(pane.history) == 2 and not pane.running, timeout=60)
        first, second = (result.request.options for result in pane.history)
        assert (first["seed"], second["seed"]) == (3, 4)
        assert first["min_p"] == 0.05 and first["repetition_penalty"] == 1.2 and first["stop"] == ["\\n\\n"]
        assert "tok/s" in pane.history[-1].note
        await pilot.press("escape", "w")
        saved = sorted((sampled_run / "tiny" / "samples").glob("sample-*.txt"))
        assert saved and saved[-1].read_text().startswith("# alm sample tiny --prompt")
        await pilot.press("y")
        assert app.clipboard == pane.history[-1].request.prompt + pane.history[-1].text


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
async def test_the_chat_tab_talks_to_a_run_whose_tokenizer_has_chat_tokens(sampled_run: Path) -> None:
    app = RecordingApp(sampled_run, run="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen) and screen.has_chat
        await pilot.press("c")
        assert screen.active_tab == "chat"
        pane = screen.query_one(ChatPane)
        assert "not fine-tuned for chat" in screen_text(app)  # a pretrained run: says what to expect
        await until(pilot, lambda: pane.knobs.checkpoint == "last")
        pane.query_one("#chat-max-tokens", Input).value = "8"
        await pilot.press("p", *"hello", "enter")
        await until(pilot, lambda: len(pane.turns) == 2 and not pane.running, timeout=60)
        assert pane.turns[0] == ("user", "hello") and pane.turns[1][0] == "assistant"
        assert [m["role"] for m in screen.session.chat.messages] == ["user", "assistant"]
        await pilot.press(*"again", "enter")
        await until(pilot, lambda: len(pane.turns) == 4 and not pane.running, timeout=60)
        assert len(screen.session.chat.turns) == 4  # multi-turn: the history goes with each message
        await pilot.press("escape", "w")
        saved = sorted((sampled_run / "tiny" / "samples").glob("chat-*.jsonl"))
        assert saved and '"role": "user"' in saved[-1].read_text()


async def test_dpo_metrics_are_charted_when_a_run_has_them(tmp_path: Path) -> None:
    events = [start_event("dpo")]
    for step in range(1, 30):
        event = step_event(step)
        event["metrics"] = {"reward_margin": 0.1 * step, "reward_accuracy": min(1.0, 0.5 + step / 60)}
        events.append(event)
    make_run(tmp_path, "dpo", events, live_pid=os.getpid())
    app = RecordingApp(tmp_path, run="dpo")
    async with app.run_test(size=(170, 48)) as pilot:
        await pilot.pause(0.6)
        screen = app.screen
        screen.draw_charts()
        objective = screen.query_one("#chart-objective", MetricChart)
        assert objective.display and [line.label for line in objective.lines] == [
            "reward accuracy",
            "reward margin",
        ]
        assert "reward margin" in screen_text(app)
