"""What `alm train` / `alm resume` may touch: only alm's own files in a run directory, only a directory of its
own, and a resume starts from the checkpoint the user names (--checkpoint), bit-exactly."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hardening_helpers import invoke, train_args

from alm.errors import DataError, UsageError
from alm.events import StartEvent, StepEvent, read_events
from alm.rundir import RunDir, run_path
from alm.train.checkpoint import load_checkpoint


@pytest.mark.parametrize("name", ["..", ".", "runs/..", "x/.", "./"])
def test_names_that_are_not_a_directory_of_their_own_are_refused(name: str) -> None:
    with pytest.raises(UsageError, match="cannot name a run"):
        run_path(name, "runs")


def test_run_dot_dot_writes_nothing_into_the_parent(tiny_data, tmp_path: Path) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    os.chdir(cwd)
    result = invoke(train_args(tiny_data, "..", "train.steps=2"))
    assert result.exit_code == 2 and "cannot name a run" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_overwrite_refuses_a_directory_alm_did_not_write(tiny_data, tmp_path: Path) -> None:
    mine = tmp_path / "x" / "checkpoints" / "mine.bin"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"precious")
    (tmp_path / "x" / "config.yaml").write_text("model: {name: resnet}\n")  # someone else's config
    result = invoke([*train_args(tiny_data, tmp_path / "x", "train.steps=2"), "--overwrite"])
    assert result.exit_code == 2 and "is not an alm run directory" in result.output, result.output
    assert mine.read_bytes() == b"precious" and (tmp_path / "x" / "config.yaml").is_file()
    assert not (tmp_path / "x" / "run.lock").exists()


def test_overwrite_removes_only_what_alm_wrote(tiny_data, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "r"
    assert invoke(train_args(tiny_data, run, "train.steps=4")).exit_code == 0
    (run / "checkpoints" / "mine.bin").write_bytes(b"precious")
    (run / "notes.txt").write_text("my notes")
    sharded = run / "checkpoints" / "dcp-step-000004"  # what an FSDP2 run keeps beside its checkpoints
    sharded.mkdir()
    (sharded / ".metadata").write_bytes(b"shards")
    again = invoke([*train_args(tiny_data, run, "train.steps=2"), "--overwrite"])
    assert again.exit_code == 0, again.output
    assert (run / "checkpoints" / "mine.bin").read_bytes() == b"precious"
    assert (run / "notes.txt").read_text() == "my notes"
    assert not (run / "checkpoints" / "step-000004.pt").exists()  # the old run's checkpoints are gone
    assert not sharded.exists()
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 2


def test_a_run_that_fails_to_start_leaves_no_directory(tiny_data, tmp_path: Path) -> None:
    run = tmp_path / "runs" / "never"
    result = invoke(train_args(tiny_data, run, "train.batch_size=100000000"))
    assert result.exit_code == 2, result.output
    assert not run.exists()


def _step_losses(run: Path) -> list[tuple[int, float]]:
    return [(e.step, e.loss) for e in read_events(run / "events.jsonl") if isinstance(e, StepEvent)]


def test_resume_from_an_earlier_checkpoint_is_bit_exact(tiny_data, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    run = runs / "r"
    assert invoke(train_args(tiny_data, run, "train.steps=8", "train.keep_last=4")).exit_code == 0
    first = dict(_step_losses(run))
    resumed = invoke(["resume", "r", "--runs-dir", str(runs), "--checkpoint", "step-4", "--progress", "none"])
    assert resumed.exit_code == 0, resumed.output
    starts = [e for e in read_events(run / "events.jsonl") if isinstance(e, StartEvent)]
    assert starts[-1].resumed_from == 4
    again = _step_losses(run)[8:]  # the steps after the resume
    assert again == [(step, first[step]) for step in range(5, 9)]  # exact float equality


def test_resume_names_the_checkpoints_it_could_use(tiny_data, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert invoke(train_args(tiny_data, runs / "r", "train.steps=4")).exit_code == 0
    missing = invoke(["resume", "r", "--runs-dir", str(runs), "--checkpoint", "step-3"])
    assert missing.exit_code == 2 and "no checkpoint step-000003.pt" in missing.output
    assert "--checkpoint" in missing.output and "step-000004.pt" in missing.output
    last = runs / "r" / "checkpoints" / "last.pt"
    last.unlink()  # a new file: last.pt shares its inode with step-000004.pt
    last.write_bytes(b"torn")
    torn = invoke(["resume", "r", "--runs-dir", str(runs), "--set", "train.steps=6"])
    assert torn.exit_code == 1 and "not a readable checkpoint" in torn.output
    assert "--checkpoint" in torn.output  # a flag `alm resume` has
    from_step = invoke(["resume", "r", "--runs-dir", str(runs), "--set", "train.steps=6", "-c", "step-4"])
    assert from_step.exit_code == 0, from_step.output


def test_a_pickle_with_code_is_refused_without_unsafe_advice(tmp_path: Path) -> None:
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "last.pt"
    torch.save({"format": "alm-checkpoint", "model": Evil()}, path)
    with pytest.raises(DataError) as caught:
        load_checkpoint(path)
    text = str(caught.value)
    assert "posix.system" in text or "nt.system" in text
    assert "weights_only" not in text and "False" not in text


def test_a_live_run_is_reported_by_pid(tmp_path: Path) -> None:
    from alm import locks
    from alm.train.launch import claimed

    run = RunDir(tmp_path / "r")
    with claimed(run, "wait") as lock:
        assert lock is not None and run.is_live() and run.read_pid() == os.getpid()
    lock.release()
    assert not run.is_live() and locks.holder(run.lock_path) is None


@pytest.mark.parametrize("flags", [["--batch-size", "0"], ["--max-batches", "0"], ["--stride", "-1"]])
def test_eval_refuses_sizes_below_one(tiny_data, tmp_path: Path, flags: list[str]) -> None:
    run = tmp_path / "runs" / "e"
    assert invoke(train_args(tiny_data, run, "train.steps=2")).exit_code == 0
    if flags[0] == "--stride":
        flags = [*flags, "--text", str(tiny_data.root / "corpus.txt")]
    result = invoke(["eval", str(run), *flags, "--device", "cpu"])
    assert result.exit_code == 2 and f"{flags[0]} must be at least 1" in result.output, result.output
