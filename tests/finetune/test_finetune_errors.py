"""Bad input to `alm sft` / `alm dpo`: a clear error (file and line where there is one), no traceback, nothing
written — no new run directory, the parent run byte for byte as it was."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from finetune_helpers import tiny_sets, write_jsonl
from typer.testing import CliRunner

from alm.cli.app import app

runner = CliRunner()
LONG = "many words " * 60  # far more than the tiny models' 64-token context


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()
    }


def _lines(*records: object) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records)


GOOD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}
BAD_DATA = [
    ("sft", _lines(GOOD, GOOD, '{"messages": [}'), 1, "bad.jsonl:3: not valid JSON"),
    (
        "sft",
        _lines(
            GOOD, {"messages": [{"role": "robot", "content": "beep"}, {"role": "assistant", "content": "x"}]}
        ),
        1,
        "bad.jsonl:2: 'messages'[0] has unknown role 'robot'",
    ),
    ("sft", _lines(GOOD, {"messages": []}), 1, "bad.jsonl:2: 'messages' is an empty list of messages"),
    ("sft", _lines(GOOD, GOOD, {"prompt": "Hi", "completion": LONG}), 1, "bad.jsonl:3: this conversation is"),
    ("sft", _lines({"prompt": "Hi", "chosen": "a", "rejected": "b"}), 1, "looks like preference data"),
    ("sft", _lines(GOOD), 1, "too few to hold out"),
    (
        "dpo",
        _lines({"prompt": "Hi", "chosen": "Hello", "rejected": "Hello"}),
        1,
        "chosen and rejected are the same",
    ),
    ("dpo", _lines(GOOD), 1, "bad.jsonl:1: preference data needs prompt, chosen and rejected"),
]


@pytest.mark.parametrize(("mode", "text", "code", "message"), BAD_DATA)
@pytest.mark.parametrize("parent_run", ["base", "old"])  # with and without chat tokens (the resize path)
def test_bad_data_is_refused_before_anything_is_written(
    request, work: Path, mode: str, text: str, code: int, message: str, parent_run: str
) -> None:
    parent = request.getfixturevalue("parent" if parent_run == "base" else "old_parent")
    before = _snapshot(parent)
    (work / "bad.jsonl").write_text(text)
    result = runner.invoke(app, [mode, parent_run, "--data", "bad.jsonl", *tiny_sets()])
    assert result.exit_code == code, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in (work / "runs").iterdir()) == [parent_run]
    assert _snapshot(parent) == before


def test_the_context_limit_names_the_fix(parent: Path, work: Path) -> None:
    write_jsonl(work / "long.jsonl", [GOOD, GOOD, {"prompt": "Hi", "completion": LONG}])
    result = runner.invoke(app, ["sft", "base", "--data", "long.jsonl", *tiny_sets()])
    assert result.exit_code == 1
    assert "long.jsonl:3" in result.stderr and "that fit a context of 64" in result.stderr
    assert "hint:" in result.stderr


def test_missing_or_unusable_runs_and_files(parent: Path, work: Path) -> None:
    def sft(*args: str):
        return runner.invoke(app, ["sft", *args, *tiny_sets()])

    missing = sft("base", "--data", "nope.jsonl")
    assert missing.exit_code == 2 and "data file not found" in missing.stderr
    typo = sft("bsae", "--data", "data/sft.jsonl")
    assert typo.exit_code == 2 and "did you mean base" in typo.stderr
    (work / "runs" / "empty").mkdir()
    (work / "runs" / "empty" / "config.yaml").write_text("model: {}\n")  # started, never saved
    nothing = sft("empty", "--data", "data/sft.jsonl")
    assert nothing.exit_code == 2 and "no checkpoint last.pt to fine-tune from" in nothing.stderr
    step = sft("base", "--data", "data/sft.jsonl", "--checkpoint", "step-3")
    assert step.exit_code == 2 and "available:" in step.stderr
    section = sft("base", "--data", "data/sft.jsonl", "--set", "model.d_model=8")
    assert section.exit_code == 2 and "reads only train.*" in section.stderr
    fraction = sft("base", "--data", "data/sft.jsonl", "--val-fraction", "1.5")
    assert fraction.exit_code == 2 and "finetune.val_fraction" in fraction.stderr
    itself = sft("base", "--data", "data/sft.jsonl", "--run", "base")
    assert itself.exit_code == 2 and "cannot replace its parent" in itself.stderr
    assert sorted(p.name for p in (work / "runs").iterdir()) == ["base", "empty"]

    assert sft("base", "--data", "data/sft.jsonl").exit_code == 0
    again = sft("base", "--data", "data/sft.jsonl")
    assert again.exit_code == 2 and "already exists" in again.stderr and "alm resume base-sft" in again.stderr
