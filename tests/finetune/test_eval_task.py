"""`alm eval RUN --task NAME|FILE.jsonl`: a chat run's accuracy, beside the perplexity eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from finetune_helpers import write_jsonl
from typer.testing import CliRunner

from alm.cli.app import app
from testkit.chat import EXCHANGES, exchanges_as_conversations, fine_tune
from testkit.models import tiny_model
from testkit.runs import save_run

runner = CliRunner()


@pytest.fixture(scope="module")
def chatty_run(tmp_path_factory, chat_tokenizer) -> Path:
    """A run whose tiny model was fine-tuned until it answers EXCHANGES (tests/chat's fixture model)."""
    model = fine_tune(tiny_model(chat_tokenizer.vocab_size), chat_tokenizer, exchanges_as_conversations())
    return save_run(tmp_path_factory.mktemp("eval-task") / "runs" / "chatty", model, chat_tokenizer).parents[
        1
    ]


def evaluate(run: Path, *args: str):
    return runner.invoke(app, ["eval", str(run), "--device", "cpu", *args])


def test_exact_match_and_multiple_choice_from_files(chatty_run: Path, tmp_path: Path) -> None:
    exact = write_jsonl(tmp_path / "qa.jsonl", [{"prompt": q, "answer": a} for q, a in EXCHANGES])
    result = evaluate(chatty_run, "--task", str(exact), "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["task"] == "qa" and record["kind"] == "exact" and record["step"] == 7
    assert (record["examples"], record["correct"], record["accuracy"]) == (3, 3, 1.0)
    assert record["checkpoint"].endswith("last.pt")

    wrong = [{"prompt": q, "choices": ["Nope.", a], "answer": 1} for q, a in EXCHANGES]
    choice = evaluate(chatty_run, "--task", str(write_jsonl(tmp_path / "mc.jsonl", wrong)), "--limit", "2")
    assert choice.exit_code == 0, choice.output
    assert "multiple choice" in choice.stdout and "accuracy 100.0% (2/2)" in choice.stdout


def test_a_builtin_task(chatty_run: Path) -> None:
    result = evaluate(chatty_run, "--task", "arithmetic-choice", "--limit", "4", "--json")
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["task"] == "arithmetic-choice" and record["examples"] == 4 and 0 <= record["accuracy"] <= 1


def test_task_errors_exit_2(chatty_run: Path, old_parent: Path, tmp_path: Path) -> None:
    unknown = evaluate(chatty_run, "--task", "trivia")
    assert unknown.exit_code == 2 and "arithmetic, arithmetic-choice" in unknown.stderr
    mixed = evaluate(chatty_run, "--task", "arithmetic", "--max-batches", "2")
    assert mixed.exit_code == 2 and "--max-batches does not apply" in mixed.stderr
    limit = evaluate(chatty_run, "--limit", "2")
    assert limit.exit_code == 2 and "--task NAME|FILE.jsonl" in limit.stderr
    base = evaluate(old_parent, "--task", "arithmetic", "--limit", "1")
    assert base.exit_code == 2 and "no chat tokens" in base.stderr and "alm sft" in base.stderr
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "Hi", "answer": "x"}, {"prompt": "Hi"}])
    malformed = evaluate(chatty_run, "--task", str(bad))
    assert malformed.exit_code == 1 and "bad.jsonl:2" in malformed.stderr
    assert not any("Traceback" in r.output for r in (unknown, mixed, limit, base, malformed))
