"""A fine-tuning run's epochs count examples, not padded rows: its planned epochs (which decide whether auto
early stopping is on) come from the objective, which knows how many conversations or pairs it holds."""

from __future__ import annotations

from pathlib import Path

import pytest
from finetune_helpers import events_of, tiny_sets
from typer.testing import CliRunner

from alm.cli.app import app
from alm.events import StartEvent

runner = CliRunner()


@pytest.mark.parametrize(
    ("mode", "data", "steps", "held"),
    [("sft", "data/sft.jsonl", 14, 22), ("dpo", "data/prefs.jsonl", 10, 14)],
)
def test_planned_epochs_are_examples_drawn_over_examples_held(
    parent: Path, work: Path, mode: str, data: str, steps: int, held: int
) -> None:
    # Batches of 4 examples (or pairs): under 3 passes over the held ones, so auto early stopping stays off;
    # counted as padded rows of seq_len tokens over the examples' tokens, it was several times that.
    result = runner.invoke(app, [mode, "base", "--data", data, *tiny_sets(steps=steps)])
    assert result.exit_code == 0, result.output
    start = events_of(work / "runs" / f"base-{mode}", StartEvent)[0]
    assert start.planned_epochs == pytest.approx(steps * 4 / held) and start.planned_epochs < 3
    assert start.early_stop_patience == 0
