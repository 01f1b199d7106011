"""The CLI around a real (tiny) trained run, as a new user meets it: the hint after training and the interactive
prompt follow the run's own corpus, piped samples are kept apart, `alm eval` shows progress, every listing
command has `--json`, `alm runs list` reads at 80 columns, and a missing named file is exit 2 everywhere."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from alm.cli.app import app
from alm.cli.sample import interactive_loop
from testkit.tiny_data import TINY_MODEL

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]
OPENING = "In the beginning was the word list."
WORDS = [
    "light",
    "water",
    "stone",
    "river",
    "field",
    "king",
    "house",
    "bread",
    "road",
    "night",
    "voice",
    "gate",
]


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _corpus(root: Path) -> Path:
    """A corpus that is not Shakespeare: numbered verses of seeded words, opening with OPENING."""
    rng = random.Random(0)
    verses = [OPENING] + [
        f"{i}. " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))) + "."
        for i in range(1, 1500)
    ]
    text = root / "verses.txt"
    text.write_text("\n\n".join(verses) + "\n", encoding="utf-8")
    corpus = root / "corpus.yaml"
    corpus.write_text(
        yaml.safe_dump(
            {
                "sources": [{"type": "local", "paths": [str(text)]}],
                "root": str(root / "data"),
                "tokenizer": {"vocab_size": 300},
            }
        )
    )
    return corpus


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, str]:
    """A run trained by `alm train` with the micro train preset (as a user would) on a tiny model: (runs
    directory, the command's output)."""
    root = tmp_path_factory.mktemp("cli-run")
    model = root / "model.yaml"
    model.write_text(yaml.safe_dump(TINY_MODEL))
    args = ["train", "--model", str(model), "--train", "micro", "--data", str(_corpus(root))]
    sets = ["train.steps=4", "train.batch_size=2", "train.eval_interval=4", "train.eval_batches=1"]
    sets += ["train.sample_interval=0", "train.progress=none", "train.warmup_steps=1"]
    args += [*(w for s in sets for w in ("--set", s)), "--run", "verses", "--runs-dir", str(root / "runs")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return root / "runs", result.output


def test_the_hint_after_training_prompts_with_the_corpus_own_opening(trained) -> None:
    _runs, output = trained
    assert "ROMEO" not in output  # the micro preset used to sample every corpus with a Shakespeare name
    assert f"alm sample verses --prompt '{OPENING}'" in output


def test_the_interactive_loop_prompts_with_the_runs_default_on_an_empty_line() -> None:
    prompted: list[str] = []
    interactive_loop(iter(["", "  ", "hello", ":q", "never"]), prompted.append, default="First Citizen:")
    assert prompted == ["First Citizen:", "First Citizen:", "hello"]
    prompted.clear()
    interactive_loop(iter(["", "hello"]), prompted.append)
    assert prompted == ["hello"]


def test_piped_samples_are_kept_apart(trained) -> None:
    runs, _ = trained
    args = ["sample", "verses", "--runs-dir", str(runs), "--prompt", "1.", "-n", "4", "--num-samples", "2"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "--- sample 1/2 ---" and "--- sample 2/2 ---" in lines[1:], result.stdout


def test_listings_have_json(trained) -> None:
    runs, _ = trained
    result = runner.invoke(app, ["runs", "list", "--runs-dir", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    (row,) = json.loads(result.stdout)
    assert (row["name"], row["status"], row["step"], row["total_steps"]) == ("verses", "finished", 4, 4)
    assert row["best_val_loss"] is not None and row["tokens"] > 0
    result = runner.invoke(app, ["runs", "compare", "verses", "--runs-dir", str(runs), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)[0]["name"] == "verses"
    result = runner.invoke(app, ["doctor", "--device", "cpu", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["precision"] == "fp32" and report["device"] == "cpu" and "torch" in report


def test_runs_list_reads_at_80_columns_with_alms_own_run_names(trained, tmp_path: Path) -> None:
    import shutil

    from alm.rundir import default_run_name

    runs, _ = trained
    names = [default_run_name("micro"), default_run_name("alibi", 0.0)]
    for name in names:
        shutil.copytree(runs / "verses", tmp_path / name)
    result = runner.invoke(app, ["runs", "list", "--runs-dir", str(tmp_path)], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80, result.stdout
    for name in names:  # whole names, and every figure in full (nothing cut to "…")
        (line,) = [line for line in lines if name in line]
        assert "finished" in line and "4/4" in line
    assert "…" not in result.stdout
    compared = runner.invoke(
        app, ["runs", "compare", *names, "--runs-dir", str(tmp_path)], env={"COLUMNS": "80"}
    )
    assert compared.exit_code == 0, compared.output
    assert max(len(line) for line in compared.stdout.splitlines()) <= 80, compared.stdout
    assert "best val" in compared.stdout and "finished" in compared.stdout and "…" not in compared.stdout


def test_a_missing_named_file_is_exit_2_everywhere(trained, tmp_path: Path) -> None:
    runs, _ = trained
    missing = str(tmp_path / "nonexistent")
    result = runner.invoke(app, ["tokenizer", "encode", "hello", "--tokenizer", missing])
    assert result.exit_code == 2, result.output
    result = runner.invoke(app, ["eval", "verses", "--runs-dir", str(runs), "--text", missing])
    assert result.exit_code == 2, result.output


def test_model_info_of_a_preset_file_matches_the_preset() -> None:
    def params(model: str) -> tuple[int, int]:
        result = runner.invoke(app, ["model", "info", model, "--json"])
        assert result.exit_code == 0, result.output
        record = json.loads(result.stdout)
        return record["params"], record["vocab_size"]

    assert params(str(REPO / "configs" / "model" / "micro.yaml")) == params("micro") == (1_377_408, 4096)
    assert params(str(REPO / "configs" / "model" / "pico.yaml")) == params("pico")
    # An ablation is the micro model with one idea changed: counted with the same (default) vocabulary.
    assert params(str(REPO / "configs" / "ablations" / "alibi.yaml")) == params("micro")


def test_eval_progress_counts_every_scored_token(trained) -> None:
    from alm.evaluate import evaluate_text
    from alm.train.checkpoint import load_model

    runs, _ = trained
    model, tokenizer, _config, _step = load_model(runs / "verses", device="cpu")
    text = (runs.parent / "verses.txt").read_text(encoding="utf-8")[:3000]
    seen: list[tuple[int, int]] = []
    result = evaluate_text(
        model, tokenizer, text, batch_size=2, device="cpu", progress=lambda d, t: seen.append((d, t))
    )
    assert len(seen) > 1 and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert seen[-1] == (result.tokens, result.tokens) == (seen[-1][1], len(tokenizer.encode(text)) - 1)


@pytest.mark.slow
def test_eval_shows_progress_on_stderr_and_keeps_json_on_stdout(trained, tmp_path: Path) -> None:
    runs, _ = trained
    text = tmp_path / "notes.txt"
    text.write_text((runs.parent / "verses.txt").read_text(encoding="utf-8")[:20000], encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "alm",
            "eval",
            "verses",
            "--runs-dir",
            str(runs),
            "--text",
            str(text),
            "--json",
        ],
        env={**os.environ, "TTY_COMPATIBLE": "1", "OMP_NUM_THREADS": "1"},  # stderr counts as a terminal
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tokens"] > 0  # stdout: one JSON object, nothing else
    assert "eval notes.txt" in proc.stderr
