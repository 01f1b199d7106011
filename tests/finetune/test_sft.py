"""`alm sft` end to end in-process: the new run, its records, its loss and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from finetune_helpers import events_of, step_events, tiny_sets
from typer.testing import CliRunner

from alm.chat.format import has_chat_tokens
from alm.cli.app import app
from alm.events import EvalEvent, StartEvent, StopEvent, read_events
from alm.summary import RunSummary
from alm.tokenizer import Tokenizer
from alm.train.checkpoint import load_checkpoint

runner = CliRunner()


def sft(*args: str):
    return runner.invoke(app, ["sft", *args, *tiny_sets()])


def test_sft_makes_a_run_that_records_where_it_came_from(parent: Path, work: Path) -> None:
    result = sft("base", "--data", "data/sft.jsonl")
    assert result.exit_code == 0, result.output
    run = work / "runs" / "base-sft"
    assert "best.pt (step 5, the parent's best val loss" in result.output  # best by default, and it says so
    assert "alm chat base-sft" in result.output
    config = yaml.safe_load((run / "config.yaml").read_text())
    ft, init = config["finetune"], config["init"]  # what it trains on; where its weights came from
    assert ft["mode"] == "sft" and init["run"] == str(parent.resolve())
    assert init["checkpoint"] == str((parent / "checkpoints" / "best.pt").resolve()) and init["step"] == 5
    assert ft["data"] == str((work / "data" / "sft.jsonl").resolve()) and ft["chat_tokens_added"] is None
    assert config["train"]["lr"] == 3e-3 and config["model"]["d_model"] == 32
    start = events_of(run, StartEvent)[0]
    assert start.config["finetune"] == ft and start.config["init"] == init
    steps = step_events(run)
    assert [e.step for e in steps] == list(range(1, 9))
    assert all(e.tokens and e.tok_per_s and e.metrics is None for e in steps)
    evals = events_of(run, EvalEvent)
    assert [e.step for e in evals] == [4, 8] and all(e.val_loss and e.val_bpb for e in evals)
    assert events_of(run, StopEvent)[-1].reason == "finished"
    summary = RunSummary("base-sft")
    summary.extend(read_events(run / "events.jsonl"))
    assert summary.mode == "sft" and summary.epochs is not None and summary.epochs > 1
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["config"]["finetune"]["mode"] == "sft" and ckpt["step"] == 8
    assert set(ckpt["loader"]) == {"sampler"}
    assert (run / "tokenizer.json").read_bytes() == (parent / "tokenizer.json").read_bytes()


def test_sft_starts_from_the_parents_weights(parent: Path, work: Path) -> None:
    """Step 1's loss is the chosen checkpoint's loss on the first batch: same weights, different numbers."""
    best = sft("base", "--data", "data/sft.jsonl", "--run", "from-best")
    last = sft("base", "--data", "data/sft.jsonl", "--run", "from-last", "--checkpoint", "last")
    assert best.exit_code == 0 and last.exit_code == 0, best.output + last.output
    first = [step_events(work / "runs" / name)[0].loss for name in ("from-best", "from-last")]
    assert first[0] != first[1]
    again = sft("base", "--data", "data/sft.jsonl", "--run", "from-best-again")
    assert again.exit_code == 0
    assert step_events(work / "runs" / "from-best-again")[0].loss == first[0]


def test_a_tokenizer_without_chat_tokens_gets_them(old_parent: Path, work: Path) -> None:
    result = sft("old", "--data", "data/sft.jsonl")
    assert result.exit_code == 0, result.output
    run = work / "runs" / "old-sft"
    assert "lacks the chat tokens" in result.output
    tokenizer = Tokenizer.load(run / "tokenizer.json")
    parent_vocab = Tokenizer.load(old_parent / "tokenizer.json").vocab_size
    assert has_chat_tokens(tokenizer) and tokenizer.vocab_size == parent_vocab + 4
    added = yaml.safe_load((run / "config.yaml").read_text())["finetune"]["chat_tokens_added"]
    assert added["added_tokens"] == ["<|system|>", "<|user|>", "<|assistant|>", "<|end|>"]
    assert added["new_ids"] == list(range(parent_vocab, parent_vocab + 4)) and added["init"] == "mean"
    meta = json.loads((run / "tokenizer.meta.json").read_text())
    assert meta["chat_tokens_added"] == added["added_tokens"]
    ckpt = load_checkpoint(run / "checkpoints" / "last.pt")
    assert ckpt["model"]["tok_emb.weight"].shape[0] == added["new_rows"] == parent_vocab + 4
    assert ckpt["tokenizer"]["fingerprint"] == tokenizer.fingerprint
    # The parent is untouched: its own tokenizer still lacks them.
    assert not has_chat_tokens(Tokenizer.load(old_parent / "tokenizer.json"))
    chat = runner.invoke(app, ["chat", "old-sft", "--greedy", "-n", "5", "--device", "cpu"], input="Hi\n")
    assert chat.exit_code == 0, chat.output


def test_the_new_rows_start_at_the_mean_of_the_trained_ones(old_parent: Path, work: Path) -> None:
    result = runner.invoke(
        app, ["sft", "old", "--data", "data/sft.jsonl", *tiny_sets(steps=1, lr=1e-9, min_lr=0)]
    )
    assert result.exit_code == 0, result.output
    parent = load_checkpoint(old_parent / "checkpoints" / "best.pt")["model"]["tok_emb.weight"]
    child = load_checkpoint(work / "runs" / "old-sft" / "checkpoints" / "last.pt")["model"]["tok_emb.weight"]
    n = parent.shape[0]
    torch.testing.assert_close(child[:n], parent, atol=1e-6, rtol=0)
    torch.testing.assert_close(child[n:], parent.mean(0).expand(4, -1), atol=1e-6, rtol=0)


def test_the_fine_tuning_presets_are_train_presets() -> None:
    from alm.train.config import PRESETS

    sft, dpo = PRESETS.load("sft"), PRESETS.load("dpo")
    assert sft.lr < PRESETS.load("micro").lr and sft.warmup_steps <= 0.05 * sft.steps
    assert dpo.lr < sft.lr and dpo.steps < sft.steps
