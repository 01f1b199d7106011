"""`alm sample` and `alm eval` end to end through the real CLI on a tiny saved run."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest
from sample_helpers import PARROT_CONTINUATION, PARROT_PROMPT, save_run
from typer.testing import CliRunner

from alm.cli.app import app
from alm.cli.sample import interactive_loop
from testkit.terminal import read_until

runner = CliRunner()


@pytest.fixture
def run_dir(tmp_path, monkeypatch, parrot, tokenizer, dataset, data_config):
    """runs/parrot in a fresh working directory, its data config pointing at the packed test data."""
    monkeypatch.chdir(tmp_path)
    model, _ = parrot
    save_run(tmp_path / "runs" / "parrot", model, tokenizer, data=data_config)
    return tmp_path / "runs" / "parrot"


def sample(*args: str, input: str | None = None):
    return runner.invoke(app, ["sample", "parrot", "--device", "cpu", *args], input=input)


def test_greedy_sample_streams_the_memorised_text_deterministically(run_dir, parrot):
    _, n_new = parrot
    args = ("--prompt", PARROT_PROMPT, "--greedy", "--max-tokens", str(n_new))
    first, second = sample(*args), sample(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == PARROT_CONTINUATION + "\n"
    assert second.stdout == first.stdout
    assert "step 10" in first.stderr and f"{n_new} tokens" in first.stderr


@pytest.mark.slow
def test_compiled_sampling_says_it_compiles_and_reports_decode_speed_without_it(run_dir, parrot, monkeypatch):
    import alm.sample.compiled as compiled

    monkeypatch.setenv("ALM_CACHE_DIR", str(run_dir.parent / "cache"))  # a fresh store: a real compile
    monkeypatch.setattr(compiled, "CPU_COMPILE_OPTIONS", {"freezing": True})  # seconds, not a minute
    _, n_new = parrot
    result = sample("--prompt", PARROT_PROMPT, "--greedy", "--max-tokens", str(n_new), "--compile")
    assert result.exit_code == 0, result.output
    assert result.stdout == PARROT_CONTINUATION + "\n"  # the eager text
    assert "compiling the decode step" in result.stderr  # before a silence that would look like a hang
    assert re.search(r"tok/s, compiling \d+ s, stopped by length", result.stderr), result.stderr


def test_stop_strings_and_stdin_prompt(run_dir, parrot):
    result = sample("--prompt", "-", "--greedy", "--stop", "END", "--stop", "zzz", input=PARROT_PROMPT)
    assert result.exit_code == 0, result.output
    assert result.stdout == " go 🙂漢字 now, THE \n"
    assert "stopped by stop" in result.stderr


def test_seeded_samples_reproduce_and_differ_from_each_other(run_dir):
    args = ("--prompt", "To be", "--temperature", "1.5", "--seed", "3", "--num-samples", "2", "-n", "12")
    first, second = sample(*args), sample(*args)
    assert first.exit_code == 0, first.output
    assert first.stdout == second.stdout
    one, two = first.stdout.split("\n")[:2]
    assert one != two
    assert "sample 2/2" in first.stderr


def test_a_prompt_longer_than_the_context_is_trimmed_with_a_notice(run_dir):
    result = sample("--prompt", "Who is there? " * 40, "--greedy", "-n", "3")
    assert result.exit_code == 0, result.output
    assert "notice" in result.stderr and "dropped" in result.stderr


def test_no_prompt_without_a_terminal_is_a_usage_error(run_dir):
    result = sample(input="")
    assert result.exit_code == 2
    assert "--prompt" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--top-p", "0"), "--top-p"),
        (("--temperature", "-1"), "--temperature"),
        (("--max-tokens", "-5"), "--max-tokens"),
        (("--num-samples", "0"), "--num-samples"),
        (("--checkpoint", "best"), "step-000010.pt"),  # names the checkpoints that do exist
        (("--checkpoint", "nonsense"), "last, best"),
    ],
)
def test_bad_options_exit_2_naming_the_problem(run_dir, args, needle):
    result = sample("--prompt", "x", *args)
    assert result.exit_code == 2, result.output
    assert needle in result.stderr


def test_a_missing_run_exits_2_listing_the_runs(run_dir):
    result = runner.invoke(app, ["sample", "nope", "--prompt", "x", "--device", "cpu"])
    assert result.exit_code == 2
    assert "no run 'nope'" in result.stderr and "parrot" in result.stderr


def test_a_checkpoint_file_can_be_given_directly(run_dir, parrot):
    path = run_dir / "checkpoints" / "last.pt"
    result = runner.invoke(
        app, ["sample", str(path), "-p", PARROT_PROMPT, "--greedy", "-n", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert PARROT_CONTINUATION.startswith(result.stdout.rstrip("\n"))


def test_eval_on_a_text_file_prints_json(run_dir, tmp_path):
    text = tmp_path / "held_out.txt"
    text.write_text(PARROT_PROMPT + PARROT_CONTINUATION + "\n", encoding="utf-8")
    result = runner.invoke(app, ["eval", "parrot", "--text", str(text), "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    record = json.loads(result.stdout)
    assert record["step"] == 10 and record["bytes"] == len(text.read_bytes())
    assert record["mean_loss"] < 1.0  # the model has memorised this text
    assert set(record) >= {"tokens", "perplexity", "bits_per_byte", "checkpoint"}


def test_eval_on_the_runs_val_split(run_dir):
    result = runner.invoke(app, ["eval", "parrot", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "bits/byte" in result.stdout and "(val)" in result.stdout
    as_json = runner.invoke(app, ["eval", "parrot", "--json", "--max-batches", "1", "--device", "cpu"])
    assert json.loads(as_json.stdout)["tokens"] > 0


def test_eval_bad_input_is_a_usage_error(run_dir, tmp_path):
    result = runner.invoke(app, ["eval", "parrot", "--text", str(tmp_path / "missing.txt")])
    assert result.exit_code == 2 and "not found" in result.stderr
    binary = tmp_path / "blob.bin"
    binary.write_bytes(b"\xff\xfe\x00bad")
    result = runner.invoke(app, ["eval", "parrot", "--text", str(binary)])
    assert result.exit_code == 2 and "UTF-8" in result.stderr
    result = runner.invoke(app, ["eval", "parrot", "--stride", "4"])
    assert result.exit_code == 2 and "--stride applies to --text" in result.stderr


def test_interactive_loop_runs_each_prompt_until_quit():
    seen = []

    def generate_one(prompt):
        seen.append(prompt)
        if prompt == "boom":
            raise KeyboardInterrupt  # Ctrl+C stops that sample, not the session

    interactive_loop(iter(["first\n", "\n", "boom\n", "second\n", ":q\n", "never\n"]), generate_one)
    assert seen == ["first", "boom", "second"]


@pytest.mark.slow
def test_interactive_session_on_a_real_terminal(run_dir, parrot):
    """No --prompt on a TTY: a prompt loop; each line streams a sample; Ctrl+D ends the session cleanly."""
    _, n_new = parrot
    master, slave = pty.openpty()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "alm", "sample", "parrot", "--greedy", "-n", str(n_new), "--device", "cpu"]
    proc = subprocess.Popen(cmd, stdin=slave, stdout=slave, stderr=slave, cwd=run_dir.parent.parent, env=env)
    os.close(slave)
    try:
        read_until(master, b"prompt>")
        os.write(master, PARROT_PROMPT.encode() + b"\n")
        out = read_until(master, b"prompt>")
        assert PARROT_CONTINUATION.encode() in out
        os.write(master, b"\x04")  # Ctrl+D
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_a_prompt_that_is_not_utf8_is_a_usage_error_not_a_traceback(run_dir):
    result = sample("--prompt", "caf\udce9")  # how Python hands over argv's bytes b"caf\xe9"
    assert result.exit_code == 2, result.output
    assert "--prompt is not valid UTF-8 text: byte 0xe9" in result.stderr and "Traceback" not in result.output
    lone_surrogate = "\ud83d".encode("utf-8", "surrogatepass")  # what a lone surrogate looks like on stdin
    result = sample("--prompt", "-", input=b"caf" + lone_surrogate)
    assert result.exit_code == 2, result.output
    assert "--prompt -: stdin is not valid UTF-8 (byte 0xed at offset 3)" in result.stderr


def test_num_samples_are_decoded_together_and_printed_in_order(run_dir, parrot):
    _, n_new = parrot
    result = sample("--prompt", PARROT_PROMPT, "--greedy", "-n", str(n_new), "--num-samples", "3")
    assert result.exit_code == 0, result.output
    # Piped (not a terminal), each sample is headed by a separator line on stdout too.
    assert result.stdout == "".join(f"--- sample {i}/3 ---\n{PARROT_CONTINUATION}\n" for i in (1, 2, 3))
    assert [f"sample {i}/3" in result.stderr for i in (1, 2, 3)] == [True] * 3
    assert result.stderr.count(f"{n_new} tokens") == 3


@pytest.mark.slow
def test_undecodable_argv_bytes_exit_2_from_a_real_process(run_dir):
    cmd = [
        sys.executable.encode(),
        b"-m",
        b"alm",
        b"sample",
        b"parrot",
        b"--prompt",
        b"caf\xe9",
        b"--device",
        b"cpu",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
    proc = subprocess.run(cmd, capture_output=True, cwd=run_dir.parent.parent, env=env, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert b"byte 0xe9" in proc.stderr and b"Traceback" not in proc.stderr
