"""Running out of disk or memory reads as one line naming the path or the figure, with exit 1 (or exit 2 for a
run that could never fit), and never costs the checkpoint already on disk."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import typer
from hardening_helpers import invoke, train_args

from alm.capacity import check_free_space, expected_failure, is_disk_full, is_out_of_memory
from alm.cli.common import handle_errors
from alm.errors import AlmError, UsageError
from alm.events import StopEvent, read_events
from alm.train.checkpoint import atomic_save, load_checkpoint
from alm.train.launch import plan_train
from alm.train.memory import TRAIN_HINT, training_failure
from alm.train.trainer import Trainer
from testkit.tiny_data import tiny_plan


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` at `path` (root only; skips where mounting is not allowed)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_the_shapes_of_a_full_disk_and_of_no_memory() -> None:
    assert is_disk_full(OSError(errno.ENOSPC, "No space left on device"))
    assert is_disk_full(
        RuntimeError("[enforce fail at inline_container.cc:783] . unexpected pos 11566848 vs 11566736")
    )
    assert is_disk_full(RuntimeError("PytorchStreamWriter failed writing file data/3: file write failed"))
    assert not is_disk_full(OSError(errno.EACCES, "Permission denied"))
    assert is_out_of_memory(MemoryError())
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(
        RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 8e9")
    )
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert expected_failure(ValueError("a bug")) is None


def test_a_write_that_cannot_fit_is_refused_up_front(tmp_path: Path) -> None:
    with pytest.raises(AlmError, match=rf"no space left on device: {tmp_path}, needed ~.* MB \(.* free\)"):
        check_free_space(tmp_path, 1 << 62)
    check_free_space(tmp_path, 1024)


def test_out_of_memory_at_a_step_names_the_flags_to_lower() -> None:
    failure = training_failure(MemoryError(), step=7)
    assert failure is not None and failure.exit_code == 1
    assert failure.message.startswith("out of memory at step 7") and failure.hint == TRAIN_HINT
    assert "--set train.batch_size=" in TRAIN_HINT and "model.max_seq_len" in TRAIN_HINT


def test_the_cli_turns_the_machines_failures_into_messages(capsys: pytest.CaptureFixture[str]) -> None:
    @handle_errors
    def command() -> None:
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/events.jsonl")

    with pytest.raises(typer.Exit) as caught:
        command()
    assert caught.value.exit_code == 1
    assert "no space left on device: runs/x/events.jsonl" in capsys.readouterr().err

    @handle_errors
    def buggy() -> None:
        raise ValueError("a bug keeps its traceback")

    with pytest.raises(ValueError):
        buggy()


@pytest.mark.parametrize(
    "setting", ["train.batch_size=100000000", "model.max_seq_len=1000000000", "model.n_layers=1000000000"]
)
def test_a_run_that_cannot_fit_is_refused_with_the_figure(tiny_data, tmp_path: Path, setting: str) -> None:
    with pytest.raises(UsageError, match=r"this run needs at least ~[\d,.]+ [GT]B: .* available") as caught:
        plan_train(
            str(tiny_data.model_yaml),
            str(tiny_data.train_yaml),
            str(tiny_data.corpus_yaml),
            [setting, "train.device=cpu"],
            str(tmp_path / "runs" / "big"),
        )
    assert caught.value.hint == TRAIN_HINT
    assert not (tmp_path / "runs" / "big").exists()


def test_a_save_into_a_full_disk_keeps_the_previous_file(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", "1m") as fs:
        path = atomic_save({"format": "x", "w": torch.zeros(1000)}, fs / "last.pt")
        before = path.read_bytes()
        with pytest.raises(AlmError, match=rf"no space left on device: {path}, needed ~3\.8 MB"):
            atomic_save({"format": "x", "w": torch.zeros(1_000_000)}, path)  # 4 MB into 1 MB
        assert path.read_bytes() == before
        assert sorted(p.name for p in fs.iterdir()) == ["last.pt"]  # the partial temp file is gone


def test_training_into_a_full_disk_stops_with_the_last_checkpoint_intact(tiny_data, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", "3m") as fs:
        plan = tiny_plan(
            tiny_data, fs / "runs" / "r", steps=12, eval_interval=0, ckpt_interval=2, keep_last=5
        )
        with pytest.raises(
            AlmError, match=r"no space left on device: .*checkpoints, needed ~1\.\d MB"
        ) as caught:
            Trainer(plan).run()
        assert "alm resume" in (caught.value.hint or "")
        last = load_checkpoint(plan.run.checkpoint("last"))
        assert last["step"] == 2 and all(bool(t.isfinite().all()) for t in last["model"].values())
        stop = read_events(plan.run.events_path)[-1]
        assert isinstance(stop, StopEvent) and stop.reason == "error" and stop.resume_command


def test_a_full_disk_in_the_cli_is_exit_1_and_resumable(tiny_data, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", "3m") as fs:
        run = fs / "r"
        full = invoke(train_args(tiny_data, run, "train.steps=12", "train.keep_last=5"))
        assert full.exit_code == 1 and "no space left on device" in full.output, full.output
        assert "Traceback" not in full.output
        subprocess.run(["mount", "-o", "remount,size=16m", str(fs)], check=True)  # the user frees space
        resumed = invoke(["resume", str(run), "--progress", "none"])
        assert resumed.exit_code == 0, resumed.output
        assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] == 12
