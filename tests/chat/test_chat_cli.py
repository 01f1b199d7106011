"""`alm chat` through stdin and through a real terminal, and `alm data chat-example`."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from alm.cli.app import app
from testkit.chat import SYSTEM_PROMPT
from testkit.models import tiny_model
from testkit.runs import save_run
from testkit.terminal import read_until

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path, monkeypatch, chatty, chat_tokenizer):
    monkeypatch.chdir(tmp_path)
    save_run(tmp_path / "runs" / "chatty", chatty, chat_tokenizer)
    return tmp_path / "runs" / "chatty"


def chat(*args: str, input: str, run: str = "chatty"):
    return runner.invoke(app, ["chat", run, "--device", "cpu", "--greedy", "-n", "20", *args], input=input)


def test_turns_from_stdin_get_replies_on_stdout(run_dir):
    result = chat(input="Hi\n\nWhat is 2 + 3?\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello there!\n5\n"
    assert "step 7" in result.stderr


def test_system_reset_and_save_commands(run_dir, tmp_path):
    script = f"/system {SYSTEM_PROMPT}\nHi\n/save saved/chat.jsonl\n/reset\n/system\n/bogus\n/help\nHi\n/quit\nHi\n"
    result = chat(input=script)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello there!\nHello there!\n"  # nothing after /quit
    saved = [json.loads(line) for line in (tmp_path / "saved" / "chat.jsonl").read_text().splitlines()]
    assert saved == [
        {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello there!"},
            ]
        }
    ]
    for needle in ("system prompt set", "saved 3 messages", "conversation reset", "system prompt removed"):
        assert needle in result.stderr
    assert "unknown command /bogus" in result.stderr and "/save FILE" in result.stderr


def test_a_system_prompt_from_the_command_line(run_dir, tmp_path):
    result = chat("--system", SYSTEM_PROMPT, input="Hi\n/save chat.jsonl\n")
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello there!\n"
    assert json.loads((tmp_path / "chat.jsonl").read_text())["messages"][0]["role"] == "system"


def test_a_long_conversation_is_trimmed_with_a_notice(run_dir):
    result = chat(input="Name a colour.\n" * 6)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 6
    assert "oldest messages are left out" in result.stderr


def test_a_run_without_chat_tokens_names_alm_sft(tmp_path, monkeypatch, base_tokenizer):
    monkeypatch.chdir(tmp_path)
    save_run(tmp_path / "runs" / "base", tiny_model(base_tokenizer.vocab_size), base_tokenizer)
    result = chat(input="Hi\n", run="base")
    assert result.exit_code == 2
    assert "no chat tokens" in result.stderr and "alm sft base --data" in result.stderr
    assert "Traceback" not in result.output


def test_missing_runs_and_bad_options_exit_2(run_dir):
    assert chat(input="", run="nope").exit_code == 2
    result = chat("--top-p", "0", input="Hi\n")
    assert result.exit_code == 2 and "--top-p" in result.stderr


def test_chat_example_writes_the_data(tmp_path):
    result = runner.invoke(
        app, ["data", "chat-example", "--out", str(tmp_path / "chat"), "--train", "30", "--test", "5"]
    )
    assert result.exit_code == 0, result.output
    assert "sft.jsonl" in result.stdout and "prefs-test.jsonl" in result.stdout
    assert len((tmp_path / "chat" / "arithmetic-test.jsonl").read_text().splitlines()) == 5
    bad = runner.invoke(app, ["data", "chat-example", "--out", str(tmp_path / "x"), "--train", "99999"])
    assert bad.exit_code == 2 and "cannot draw" in bad.stderr


@pytest.mark.slow
def test_a_conversation_on_a_real_terminal(run_dir):
    """On a TTY: a `you>` prompt, labelled streaming replies, multi-turn memory, Ctrl+D ends cleanly."""
    master, slave = pty.openpty()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "alm", "chat", "chatty", "--greedy", "-n", "20", "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=run_dir.parent.parent, env=env)
    os.close(slave)
    try:
        read_until(master, b"you>")
        os.write(master, b"Hi\n")
        out = read_until(master, b"you>")
        assert b"assistant>" in out and b"Hello there!" in out
        os.write(master, b"What is 2 + 3?\n")
        assert b"5" in read_until(master, b"you>")
        os.write(master, b"\x04")  # Ctrl+D
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
