"""End to end in a real terminal: `alm dashboard` in a tmux pane starts a real `alm train` run from its form, the
step counter moves, Ctrl+C stops the trainer safely (checkpoint, exit 130), `r` resumes it; a second run starts
with a `--set` override; the two are marked and compared (the same table `alm runs compare` prints), the second
is deleted after confirmation, and `q` quits."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml

from alm.events import read_records
from testkit.corpus import shipped_text

pytestmark = pytest.mark.slow

TINY_MODEL = {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 64}
TINY_TRAIN = {
    "steps": 100_000,  # never reached: the test stops it
    "batch_size": 4,
    "lr": 3e-3,
    "min_lr": 3e-4,
    "warmup_steps": 2,
    "eval_interval": 50,
    "eval_batches": 2,
    "sample_interval": 0,
    "log_interval": 2,
    "ckpt_interval": 0,
    "keep_last": 1,
}
STEP = re.compile(r"step (\d[\d,]*) / 100,000")


def _alm_train_registered() -> bool:
    from alm.cli.app import app

    return any(command.name == "train" for command in app.registered_commands)


class Pane:
    """A tmux session on its own server socket, so nothing touches the user's tmux."""

    def __init__(self, cwd: Path, command: str, size: tuple[int, int] = (150, 45)):
        self.socket = f"alm-test-{uuid.uuid4().hex[:8]}"
        self.target = "dash"
        # COLUMNS/LINES from the test runner's environment would override the pane's real size.
        wrapped = (
            f"unset COLUMNS LINES; cd {shlex.quote(str(cwd))} && {command}; echo DASHBOARD-EXIT=$?; sleep 60"
        )
        self.tmux("new-session", "-d", "-s", self.target, "-x", str(size[0]), "-y", str(size[1]), wrapped)

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            ["tmux", "-L", self.socket, *args], capture_output=True, text=True, timeout=30
        )
        if result.returncode != 0:
            raise AssertionError(f"tmux {args[0]} failed: {result.stderr}")
        return result.stdout

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    # Like a person, pause between keystrokes: focus changes (which select an Input's text) must land first.
    def keys(self, *keys: str) -> None:
        for key in keys:
            self.tmux("send-keys", "-t", self.target, key)
            time.sleep(0.3)

    def type(self, text: str) -> None:
        self.tmux("send-keys", "-t", self.target, "-l", text)
        time.sleep(0.3)

    def wait_for(self, predicate, what: str, timeout: float = 180.0) -> str:
        deadline = time.monotonic() + timeout
        screen = ""
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            if "trainer failed" in screen:
                raise AssertionError(
                    f"the trainer failed while waiting for {what}; the pane shows:\n{screen}"
                )
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}; the pane shows:\n{screen}")

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=30)


def fill_form(pane: Pane, name: str, overrides: str = "") -> None:
    """The new-run form, field by field: model, train, data, steps (empty: the config's), --set, device, name."""
    time.sleep(1.0)  # like a person, look at the form first: its first field takes the focus as it opens
    pane.keys("C-a", "C-k")
    pane.type("model.yaml")
    pane.keys("Tab")
    pane.type("train.yaml")
    pane.keys("Tab")
    pane.type("corpus.yaml")
    pane.keys("Tab", "Tab")  # steps stay the train config's
    if overrides:
        pane.type(overrides)
    pane.keys("Tab", "Tab")  # device stays auto (the CPU here)
    pane.keys("C-a", "C-k")
    pane.type(name)
    pane.wait_for(lambda s: "will train:" in s, "the form to be valid")
    pane.keys("Enter")


def step_on(screen: str) -> int | None:
    match = STEP.search(screen)
    return int(match.group(1).replace(",", "")) if match else None


@pytest.fixture
def tiny_project(tmp_path: Path) -> Path:
    """A working directory with a small corpus and tiny model/train configs (the trainer builds the data)."""
    (tmp_path / "corpus.txt").write_text(shipped_text(60_000), encoding="utf-8")
    (tmp_path / "corpus.yaml").write_text(
        yaml.safe_dump(
            {
                "sources": [{"type": "local", "paths": [str(tmp_path / "corpus.txt")]}],
                "root": str(tmp_path / "data"),
                "tokenizer": {"vocab_size": 320},
                "val_fraction": 0.1,
            }
        )
    )
    (tmp_path / "model.yaml").write_text(yaml.safe_dump(TINY_MODEL))
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(TINY_TRAIN))
    return tmp_path


def test_dashboard_starts_stops_and_resumes_a_real_run(tiny_project: Path) -> None:
    if shutil.which("tmux") is None:
        pytest.skip(
            "tmux is not installed (apt-get install -y tmux); the dashboard needs a real terminal here"
        )
    if not _alm_train_registered():
        pytest.skip(
            "`alm train` is not registered yet (src/alm/cli/train.py): nothing to start from the dashboard"
        )

    pane = Pane(tiny_project, f"{shlex.quote(sys.executable)} -m alm dashboard --runs-dir runs")
    try:
        pane.wait_for(lambda s: "Press n to start one" in s, "the empty runs list", timeout=60)

        # Fill in the "new run" form with the keyboard, as a user would.
        pane.keys("n")
        pane.wait_for(lambda s: "Start a training run" in s, "the new-run form")
        fill_form(pane, "e2e")
        # The run view opens and follows the new trainer: the step counter moves.
        screen = pane.wait_for(lambda s: (step_on(s) or 0) >= 4, "the first steps")
        first = step_on(screen)
        assert "running" in screen
        screen = pane.wait_for(lambda s: (step_on(s) or 0) > first, "the step counter to move")

        # Ctrl+C in the dashboard stops the trainer safely: it checkpoints and exits 130; the dashboard stays.
        pane.keys("C-c")
        screen = pane.wait_for(lambda s: "stopped safely (exit 130)" in s, "the safe stop")
        assert "interrupted" in screen
        stopped_at = step_on(screen)
        events = read_records(tiny_project / "runs" / "e2e" / "events.jsonl")
        stop = [e for e in events if e["type"] == "stop"][-1]
        assert stop["reason"] == "interrupted" and stop["step"] == stopped_at
        assert (tiny_project / "runs" / "e2e" / "checkpoints" / "last.pt").is_file()

        # `r` resumes it (`alm resume e2e`) from the checkpoint, and it trains on.
        pane.keys("r")
        screen = pane.wait_for(
            lambda s: "running" in s and (step_on(s) or 0) > stopped_at + 2, "the resumed run to move on"
        )
        starts = [
            e for e in read_records(tiny_project / "runs" / "e2e" / "events.jsonl") if e["type"] == "start"
        ]
        assert [s["resumed_from"] for s in starts] == [None, stopped_at]

        pane.keys("C-c")
        pane.wait_for(lambda s: "stopped safely (exit 130)" in s, "the second safe stop")
        log = (tiny_project / "runs" / "e2e" / "train.log").read_text()
        assert log.count("$ ") == 2 and "alm resume" in log  # both trainer runs logged to the run directory

        # A second run with an override, stopped after a few steps.
        pane.keys("n")
        pane.wait_for(lambda s: "Start a training run" in s, "the second new-run form")
        fill_form(pane, "e2e-b", overrides="train.lr=1e-3")
        pane.wait_for(lambda s: "alm · e2e-b" in s and (step_on(s) or 0) >= 4, "the second run's first steps")
        pane.keys("C-c")
        pane.wait_for(lambda s: "stopped safely (exit 130)" in s, "the second run's safe stop")
        starts = [
            e for e in read_records(tiny_project / "runs" / "e2e-b" / "events.jsonl") if e["type"] == "start"
        ]
        assert starts[0]["config"]["train"]["lr"] == 1e-3

        # Back in the list, the cursor is on the new run: mark both and compare them.
        pane.keys("Escape")
        pane.wait_for(lambda s: "2 runs" in s, "the runs list")
        pane.keys("Space", "Space")
        pane.wait_for(lambda s: "2 marked" in s, "two marked runs")
        pane.keys("c")
        screen = pane.wait_for(lambda s: "train loss" in s and "val bits per byte" in s, "the comparison")
        cli = subprocess.run(
            [sys.executable, "-m", "alm", "runs", "compare", "e2e", "e2e-b", "--runs-dir", "runs"],
            cwd=tiny_project,
            capture_output=True,
            text=True,
            env={**os.environ, "COLUMNS": "200"},
            check=True,
        ).stdout
        for name in ("e2e", "e2e-b"):
            row = next(line for line in cli.splitlines() if line.split()[:1] == [name])
            table = next(line for line in screen.splitlines() if line.split()[:1] == [name])
            assert row.split()[:6] == table.split()[:6]  # run, model, params, tokens, best val, bpb agree

        # Delete the marked runs (asked first), then quit.
        pane.keys("Escape")
        pane.wait_for(lambda s: "2 marked" in s, "the runs list again")
        pane.keys("d")
        pane.wait_for(lambda s: "Delete runs" in s and "Delete e2e, e2e-b?" in s, "the delete confirmation")
        pane.keys("y")
        pane.wait_for(lambda s: "No runs under" in s, "the deleted runs to go")
        assert not (tiny_project / "runs" / "e2e-b").exists() and not (tiny_project / "runs" / "e2e").exists()
        pane.keys("q")
        pane.wait_for(lambda s: "DASHBOARD-EXIT=0" in s, "the dashboard to exit", timeout=30)
    finally:
        pane.close()
