"""Fault injection through real subprocesses: what a careful user, a hurried one and a flaky machine do to
`alm train` — two trainers on one run, Ctrl+C twice, SIGTERM during start-up, updates that wreck the weights, a
full disk, a corrupt shard, text that is not UTF-8. Each must end with a message and exit 0, 1, 2 or 130, never a
traceback, and never cost the checkpoint already on disk."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from hardening_helpers import ENV, alm, no_traceback, start, train_args, wait_for_step
from test_disk_memory import small_filesystem

from alm import locks
from alm.dashboard.trainer import launch
from alm.errors import UsageError
from alm.events import StartEvent, read_events
from alm.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.slow
LONG = ("train.steps=100000", "train.ckpt_interval=1000", "train.log_interval=1")


def _stop(proc: subprocess.Popen, timeout: float = 120) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 130, (proc.returncode, out[-2000:], err[-2000:])
    return out, err


def test_a_second_writer_of_a_run_is_refused_while_the_first_trains(tiny_data, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    first = start(train_args(tiny_data, "clash", *LONG), tmp_path)
    try:
        wait_for_step(runs / "clash", 3, first)
        second = alm(train_args(tiny_data, "clash", "train.steps=12", "model.n_layers=4"), tmp_path)
        assert second.returncode == 2, second.stderr
        assert f"run clash is in use by pid {first.pid}" in second.stderr and "alm train" in second.stderr
        for args in (["resume", "clash"], [*train_args(tiny_data, "clash", "train.steps=4"), "--overwrite"]):
            refused = alm(args, tmp_path)
            assert refused.returncode == 2 and f"pid {first.pid}" in refused.stderr, refused.stderr
        log_before = (runs / "clash" / "train.log").exists()
        with pytest.raises(UsageError, match=f"in use by pid {first.pid}"):
            launch("clash", ["true"], runs)  # the dashboard refuses before starting anything
        assert (runs / "clash" / "train.log").exists() == log_before
    finally:
        _stop(first)
    starts = [e for e in read_events(runs / "clash" / "events.jsonl") if isinstance(e, StartEvent)]
    assert len(starts) == 1 and starts[0].pid == first.pid  # one run, not two interleaved
    assert load_checkpoint(runs / "clash" / "checkpoints" / "last.pt")["config"]["model"]["n_layers"] == 2


def test_two_resumes_started_together_train_once(tiny_data, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    assert alm(train_args(tiny_data, "r", "train.steps=2"), tmp_path).returncode == 0
    resumes = [
        start(["resume", "r", "--set", "train.steps=100000", "--progress", "none"], tmp_path) for _ in "ab"
    ]
    deadline = time.monotonic() + 120
    while all(proc.poll() is None for proc in resumes) and time.monotonic() < deadline:
        time.sleep(0.05)  # the loser exits at once
    loser = next(proc for proc in resumes if proc.poll() is not None)
    winner = next(proc for proc in resumes if proc is not loser)
    _, loser_err = loser.communicate()
    assert loser.returncode == 2 and f"in use by pid {winner.pid}" in loser_err, loser_err
    wait_for_step(runs / "r", 4, winner)
    _stop(winner)
    starts = [e for e in read_events(runs / "r" / "events.jsonl") if isinstance(e, StartEvent)]
    assert [e.pid for e in starts][1:] == [winner.pid]  # the first run and one resume


def test_sigterm_during_start_up_is_a_clean_stop(tiny_data, tmp_path: Path) -> None:
    """Held at the data root's lock (another process building the data), start-up can be interrupted reliably."""
    data_lock = Path(tiny_data.config().root) / "data.lock"
    with locks.acquire(data_lock, "the data"):
        proc = start(train_args(tiny_data, "early"), tmp_path)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "waiting for pid" in line and "which is building" in line, line
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    assert "stopped before training started" in err and no_traceback(err)
    assert not (tmp_path / "runs" / "early").exists()


def test_ctrl_c_twice_never_ends_in_a_traceback(tiny_data, tmp_path: Path) -> None:
    rng = random.Random(0)
    for trial in range(3):
        run = f"twice{trial}"
        proc = start(train_args(tiny_data, run, *LONG), tmp_path)
        wait_for_step(tmp_path / "runs" / run, 2, proc)
        proc.send_signal(signal.SIGINT)
        time.sleep(rng.uniform(0.0, 0.4))
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, (trial, proc.returncode, err[-2000:])
        assert no_traceback(err), (trial, err[-2000:])
        assert "stopped" in out and f"alm resume {run}" in out
        assert load_checkpoint(tmp_path / "runs" / run / "checkpoints" / "last.pt")["step"] >= 1


@pytest.mark.parametrize(
    ("sets", "expected"),
    [
        (("train.lr=1e39",), "left inf or nan in the weights"),
        (("train.lr=1e6", "train.min_lr=0", "train.steps=4"), "ended on skipped updates"),
    ],
)
def test_weight_wrecking_updates_fail_the_run(tiny_data, tmp_path: Path, sets, expected: str) -> None:
    result = alm(train_args(tiny_data, "wreck", *sets), tmp_path)
    assert result.returncode == 1, result.stdout[-2000:]
    assert expected in result.stderr and "done:" not in result.stdout and no_traceback(result.stderr)
    ckpts = tmp_path / "runs" / "wreck" / "checkpoints"
    for path in ckpts.glob("*.pt"):  # whatever was saved is finite
        assert all(bool(t.isfinite().all()) for t in load_checkpoint(path)["model"].values())


def test_a_full_disk_stops_the_run_with_a_message(tiny_data, tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "fs", "3m") as fs:
        result = alm(train_args(tiny_data, str(fs / "r"), "train.steps=12", "train.keep_last=5"), tmp_path)
        assert result.returncode == 1, result.stderr[-2000:]
        assert "no space left on device" in result.stderr and "needed ~" in result.stderr
        assert no_traceback(result.stderr) and "alm resume" in result.stderr
        assert load_checkpoint(fs / "r" / "checkpoints" / "last.pt")["step"] == 2


def test_out_of_range_token_ids_are_a_data_error(tiny_data, tmp_path: Path) -> None:
    root = tmp_path / "copy"
    shutil.copytree(Path(tiny_data.config().root), root / "data")
    corpus = yaml.safe_load(tiny_data.corpus_yaml.read_text())
    (root / "corpus.yaml").write_text(yaml.safe_dump({**corpus, "root": str(root / "data")}))
    shard = next((root / "data").glob("packed-*/train-00000.bin"))
    ids = np.memmap(shard, dtype=np.uint32, mode="r+")
    ids[1000::50] = 99_999  # past the header; wherever the sampler reads, it meets one
    ids.flush()
    del ids
    args = train_args(tiny_data, "oob")
    args[args.index("--data") + 1] = str(root / "corpus.yaml")
    trained = alm(args, tmp_path)
    assert trained.returncode == 1 and no_traceback(trained.stderr), trained.stderr[-2000:]
    assert "holds token id 99999" in trained.stderr and "--verify" in trained.stderr
    verified = alm(["data", "info", str(shard.parent), "--verify"], tmp_path)
    assert verified.returncode == 1 and no_traceback(verified.stderr)


def test_text_that_is_not_utf8_is_a_usage_error(tiny_data, tmp_path: Path) -> None:
    assert alm(train_args(tiny_data, "u", "train.steps=2"), tmp_path).returncode == 0
    latin1 = b"caf\xe9"
    runs = [
        [sys.executable, "-m", "alm", "sample", "u", "--prompt", latin1, "--device", "cpu"],
        [sys.executable, "-m", "alm", "tokenizer", "encode", latin1, "--tokenizer", "runs/u"],
    ]
    for argv in runs:
        result = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=120, env=ENV)
        assert result.returncode == 2, (argv, result.stderr[-2000:])
        assert b"UTF-8" in result.stderr and b"Traceback" not in result.stderr
    surrogate = b"ab\xed\xa0\x80cd"  # a lone surrogate, encoded
    piped = subprocess.run(
        [sys.executable, "-m", "alm", "sample", "u", "--prompt", "-", "--device", "cpu"],
        cwd=tmp_path,
        input=surrogate,
        capture_output=True,
        timeout=120,
        env=ENV,
    )
    assert piped.returncode == 2 and b"UTF-8" in piped.stderr and b"Traceback" not in piped.stderr


def test_a_project_with_relative_paths_resumes_and_evaluates_from_anywhere(tiny_data, tmp_path: Path) -> None:
    """A re-copied (touched, same content) corpus must not block `alm resume`; `alm eval RUN` from another
    directory reads the run's own data, not `data/` under the cwd."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copyfile(tiny_data.root / "corpus.txt", project / "corpus.txt")
    (project / "corpus.yaml").write_text(
        yaml.safe_dump(
            {
                "sources": [{"type": "local", "paths": ["corpus.txt"]}],
                "root": "data",
                "tokenizer": {"vocab_size": 320},
            }
        )
    )
    args = train_args(tiny_data, "r", "train.steps=2")
    args[args.index("--data") + 1] = "corpus.yaml"
    assert alm(args, project).returncode == 0
    copy = tmp_path / "copy.txt"
    shutil.copyfile(project / "corpus.txt", copy)
    time.sleep(0.01)
    shutil.copyfile(copy, project / "corpus.txt")  # same content, new mtime
    resumed = alm(["resume", "r", "--set", "train.steps=4", "--progress", "none"], project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    evaluated = alm(["eval", str(project / "runs" / "r"), "--max-batches", "1", "--device", "cpu"], tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert str(project / "data") in evaluated.stdout
