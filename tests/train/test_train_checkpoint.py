"""Atomic checkpoint writes (even under SIGKILL) and clear errors for corrupt or foreign files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from alm.errors import DataError, UsageError
from alm.fileio import atomic_link, remove_stale_temp_files
from alm.rundir import RunDir
from alm.train.checkpoint import FORMAT, VERSION, atomic_save, load_checkpoint, resolve_checkpoint


def _ckpt(step: int = 3, **extra) -> dict:
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": {"_orig_mod.w": torch.arange(4.0)},
        "step": step,
        "config": {"model": {}, "train": {}, "data": {}},
        **extra,
    }


def test_round_trip_strips_compile_prefix(tmp_path: Path) -> None:
    path = atomic_save(_ckpt(), tmp_path / "last.pt")
    loaded = load_checkpoint(path)
    assert loaded["step"] == 3
    assert list(loaded["model"]) == ["w"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_link_gives_an_independent_second_name(tmp_path: Path) -> None:
    last = atomic_save(_ckpt(step=1), tmp_path / "last.pt")
    best = atomic_link(last, tmp_path / "best.pt")
    atomic_save(_ckpt(step=2), last)  # replacing last.pt must not change best.pt
    assert load_checkpoint(best)["step"] == 1
    assert load_checkpoint(last)["step"] == 2


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"", "not a readable checkpoint"),
        (b"garbage bytes, not a zip", "not a readable checkpoint"),
    ],
)
def test_corrupt_files_are_data_errors(tmp_path: Path, content: bytes, match: str) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(content)
    with pytest.raises(DataError, match=match):
        load_checkpoint(path)


def test_truncated_checkpoint_is_a_data_error(tmp_path: Path) -> None:
    path = atomic_save(_ckpt(), tmp_path / "last.pt")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt, truncated"):
        load_checkpoint(path)


def test_foreign_files_are_refused(tmp_path: Path) -> None:
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "foreign.pt")
    with pytest.raises(DataError, match="not an alm checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")
    torch.save({**_ckpt(), "version": 99}, tmp_path / "future.pt")
    with pytest.raises(DataError, match="version 99"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(DataError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_code_is_not_executed(tmp_path: Path) -> None:
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(DataError):
        load_checkpoint(path)


def test_resolve_checkpoint_by_run_and_kind(tmp_path: Path) -> None:
    run = RunDir(tmp_path / "runs" / "exp")
    atomic_save(_ckpt(step=5), run.checkpoint("last"))
    atomic_link(run.checkpoint("last"), run.checkpoint(5))
    root = tmp_path / "runs"
    assert resolve_checkpoint("exp", root=root) == run.checkpoint("last")
    assert resolve_checkpoint("exp", "step-5", root=root) == run.checkpoint(5)
    assert resolve_checkpoint("exp", 5, root=root) == run.checkpoint(5)
    assert resolve_checkpoint(run.checkpoint(5)) == run.checkpoint(5)
    with pytest.raises(DataError, match=r"no checkpoint best\.pt"):
        resolve_checkpoint("exp", "best", root=root)
    with pytest.raises(UsageError, match="did you mean exp"):
        resolve_checkpoint("exq", root=root)
    with pytest.raises(UsageError, match="unknown checkpoint"):
        resolve_checkpoint("exp", "newest", root=root)


def test_stale_temp_files_are_removed(tmp_path: Path) -> None:
    (tmp_path / ".tmp-last.pt.abc").write_bytes(b"partial")
    remove_stale_temp_files(tmp_path)
    assert not list(tmp_path.iterdir())


SAVER = """
import sys, torch
from alm.train.checkpoint import FORMAT, VERSION, atomic_save
path = sys.argv[1]
step = 0
print("ready", flush=True)
while True:
    step += 1
    weights = torch.full((64, 1024), float(step))  # ~256 KiB, so kills land mid-write too
    atomic_save({"format": FORMAT, "version": VERSION, "model": {"w": weights}, "step": step,
                 "config": {}}, path)
"""


@pytest.mark.slow
def test_sigkill_during_saves_never_leaves_a_torn_last_pt(tmp_path: Path) -> None:
    """Kill a process that saves last.pt in a loop at random moments: last.pt must always load."""
    import random

    path = tmp_path / "last.pt"
    rng = random.Random(0)
    for _ in range(4):
        proc = subprocess.Popen([sys.executable, "-c", SAVER, str(path)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if path.exists():
            ckpt = load_checkpoint(path)
            assert torch.all(ckpt["model"]["w"] == float(ckpt["step"]))  # complete and self-consistent
    assert path.exists()
