"""Training on two processes under torchrun (gloo on the CPU), end to end with real processes: the loss curve of
one process, checkpoints, resuming on another number of processes, stopping, and a process dying.

Tolerance: the issue's bound is 1e-5 relative per step. One process and two DDP processes compute the same sums
in the same order here (the gradient mean of two ranks is one fp32 addition), so their curves agree exactly;
FSDP2 reduce-scatters gradient shards and gathers the norm in another order, which moves the loss by ~1e-7.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dist_helpers import (
    MICRO_TRAIN,
    TOLERANCE,
    alm,
    env,
    events,
    losses,
    max_relative_difference,
    saves,
    start,
    starts,
    stops,
    val_losses,
    wait_for,
    write_configs,
)

from alm.events import CheckpointEvent, StepEvent

pytestmark = pytest.mark.slow


class Runs:
    """One micro model trained three ways on the same data: one process with grad_accum 2, and two processes
    (DDP, FSDP2) with grad_accum 1 — the same global batch."""

    def __init__(self, work: Path, corpus: Path):
        self.work, self.corpus = work, corpus
        self.model, self.train = write_configs(work)
        self.outputs: dict[str, str] = {}

    def args(self, run: str, *extra: str, data: Path | None = None) -> list[str]:
        files = ("--model", str(self.model), "--train", str(self.train), "--data", str(data or self.corpus))
        return ["train", *files, "--run", run, *extra]

    def train_run(self, run: str, *extra: str) -> None:
        done = alm(self.work, *self.args(run, *extra))
        self.outputs[run] = done.stdout
        assert done.returncode == 0, done.stdout[-3000:]

    def path(self, run: str) -> Path:
        return self.work / "runs" / run


@pytest.fixture(scope="module")
def runs(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    work = tmp_path_factory.mktemp("torchrun")
    shutil.copy(tiny_data.root / "corpus.txt", work / "corpus.txt")
    corpus = work / "corpus.yaml"  # a data root of its own: the first launch builds it
    corpus.write_text(
        yaml.safe_dump(
            {
                "sources": [{"type": "local", "paths": [str(work / "corpus.txt")]}],
                "root": str(work / "data"),
                "tokenizer": {"vocab_size": 320},
                "val_fraction": 0.1,
            }
        )
    )
    runs = Runs(work, corpus)
    runs.train_run("ddp", "--nproc", "2")
    runs.train_run("one", "--set", "train.grad_accum=2")
    runs.train_run("fsdp", "--nproc", "2", "--set", "train.parallel=fsdp")
    return runs


def test_the_data_is_built_once_by_rank_zero(runs: Runs) -> None:
    assert runs.outputs["ddp"].count("trained a bpe tokenizer") == 1
    assert runs.outputs["ddp"].count("packed ") == 1


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_follow_the_loss_curve_of_one_with_doubled_grad_accum(
    runs: Runs, parallel: str
) -> None:
    one, two = losses(runs.path("one")), losses(runs.path(parallel))
    assert sorted(two) == sorted(one) == list(range(1, 21))
    assert max_relative_difference(two, one) <= TOLERANCE
    assert max_relative_difference(val_losses(runs.path(parallel)), val_losses(runs.path("one"))) <= TOLERANCE
    if parallel == "ddp":  # the same fp32 sums in the same order
        assert two == one
    first = starts(runs.path(parallel))[0]
    assert (first.world_size, first.parallel, first.backend) == (2, parallel, "gloo")
    assert first.global_batch == starts(runs.path("one"))[0].global_batch == 2 * MICRO_TRAIN["batch_size"]
    assert [rank["device"] for rank in first.ranks] == ["cpu", "cpu"]
    logged = [e for e in events(runs.path(parallel)) if isinstance(e, StepEvent)]
    assert all(len(e.rank_memory or []) == 2 for e in logged)


def test_fsdp_checkpoints_are_sharded_with_consolidated_weights(runs: Runs) -> None:
    """last.pt of an FSDP2 run is a single-file checkpoint (the weights gathered on rank 0) that names its DCP
    directory, which holds the shards; both give the same weights."""
    from alm.config import from_dict
    from alm.model import ModelConfig, Transformer
    from alm.train.checkpoint import load_checkpoint
    from alm.train.config import TrainConfig
    from alm.train.optim import build_optimizer
    from alm.train.sharded import load_sharded

    checkpoints = runs.path("fsdp") / "checkpoints"
    assert sorted(p.name for p in checkpoints.iterdir() if p.is_dir()) == [
        "dcp-step-000010",
        "dcp-step-000020",
    ]
    ckpt = load_checkpoint(checkpoints / "last.pt")
    assert ckpt["sharded"] == {"path": "dcp-step-000020", "world_size": 2}
    assert ckpt["optimizer"] == {}
    model = Transformer(from_dict(ModelConfig, ckpt["config"]["model"]))
    optimizer = build_optimizer(model, TrainConfig())
    load_sharded(checkpoints / "last.pt", ckpt["sharded"], model, optimizer)  # one process, no process group
    for name, value in model.state_dict().items():
        assert value.equal(ckpt["model"][name]), name
    assert optimizer.state_dict()["state"], "the optimizer state comes from the shards"


def test_sampling_an_fsdp_run_equals_sampling_its_one_process_equivalent(runs: Runs) -> None:
    """The text only (stdout): the run's path and the speed differ. A micro model 20 steps in mostly continues
    with newlines when greedy, so a seeded sample (temperature 1) is compared too."""
    for how in (("--greedy",), ("--seed", "7")):
        args = ("--prompt", "ROMEO:", "--max-tokens", "40", *how)
        sharded = alm(runs.work, "sample", "fsdp", *args, timeout=120, merge=False)
        single = alm(runs.work, "sample", "one", *args, timeout=120, merge=False)
        assert sharded.returncode == single.returncode == 0, sharded.stderr + single.stderr
        assert sharded.stdout == single.stdout
    assert sharded.stdout.strip(), "the seeded sample says something"
    evaluated = alm(runs.work, "eval", "fsdp", timeout=120)
    assert evaluated.returncode == 0, evaluated.stdout


def test_a_one_process_run_resumes_sharded_on_two_processes(runs: Runs) -> None:
    """1 -> 2: the whole-tensor optimizer state of last.pt goes into FSDP2 shards; grad_accum halves."""
    copy = runs.path("one-to-two")
    shutil.copytree(runs.path("one"), copy)
    done = alm(
        runs.work,
        "resume",
        copy.name,
        "--checkpoint",
        "step-10",
        "--nproc",
        "2",
        "--set",
        "train.parallel=fsdp",
    )
    assert done.returncode == 0, done.stdout[-3000:]
    resumed = starts(copy)[-1]
    assert (resumed.resumed_from, resumed.world_size, resumed.parallel) == (10, 2, "fsdp")
    assert resumed.changes["train.grad_accum"] == [2, 1]
    continued = losses(copy, after_start=1)
    assert sorted(continued) == list(range(11, 21))
    assert max_relative_difference(continued, losses(runs.path("one"))) <= TOLERANCE


def test_an_interrupted_run_stops_together_and_resumes_on_one_or_two_processes(runs: Runs) -> None:
    """SIGINT to `alm train --nproc 2` (FSDP2): every rank stops at the same step, one checkpoint is written, exit
    130 with the resume command; the run continues on 1 process (DCP shards into whole tensors, grad_accum 2)
    and on 2, on the curve of the uninterrupted run."""
    name = "stopped"
    run = runs.path(name)
    proc = start(runs.work, *runs.args(name, "--nproc", "2", "--set", "train.parallel=fsdp"))
    wait_for(
        run / "events.jsonl", lambda evs: any(isinstance(e, StepEvent) and (e.step or 0) >= 2 for e in evs)
    )
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output[-3000:]
    stop = stops(run)[-1]
    assert stop.reason == "interrupted" and stop.resume_command == f"alm resume {name} --nproc 2"
    assert 2 <= (stop.step or 0) < 20, "the run must stop before its end for this test to mean anything"
    assert [e.kind for e in saves(run) if isinstance(e, CheckpointEvent) and e.step == stop.step] == ["last"]
    assert f"continue with:  alm resume {name} --nproc 2" in output
    assert output.count("stopping after this step") == 1  # rank 0 speaks for all

    copy = runs.path("stopped-on-one")
    shutil.copytree(run, copy)
    reference = losses(runs.path("one"))
    for target, nproc in ((copy, ()), (run, ("--nproc", "2"))):
        done = alm(runs.work, "resume", target.name, *nproc)
        assert done.returncode == 0, done.stdout[-3000:]
        continued = losses(target, after_start=1)
        assert sorted(continued) == list(range(stop.step + 1, 21))
        assert max_relative_difference(continued, reference) <= TOLERANCE
    on_one = starts(copy)[-1]
    assert (on_one.world_size, on_one.parallel) == (1, "none")
    assert on_one.changes == {"train.grad_accum": [1, 2], "train.parallel": ["fsdp", "auto"]}


def test_a_rank_killed_ends_the_run_within_a_minute_with_its_checkpoints_intact(runs: Runs) -> None:
    from alm.train.checkpoint import load_checkpoint

    name = "killed"
    run = runs.path(name)
    longer = ("--set", "train.steps=2000", "--set", "train.ckpt_interval=5")
    proc = start(runs.work, *runs.args(name, "--nproc", "2", *longer))
    wait_for(run / "events.jsonl", lambda evs: any(isinstance(e, CheckpointEvent) for e in evs))
    pid = int((run / "train.pid").read_text())  # rank 0, the writer
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    output, _ = proc.communicate(timeout=60)
    assert time.monotonic() - killed < 60
    assert proc.returncode not in (0, 130), output[-3000:]
    assert "another process of this run stopped answering" in output  # rank 1's words, not a traceback
    assert load_checkpoint(run / "checkpoints" / "last.pt")["step"] % 5 == 0


def test_under_plain_torchrun_rank_zeros_failure_reaches_the_others(runs: Runs) -> None:
    """`torchrun ... -m alm train` works without --nproc; when rank 0 cannot plan the run (here: a data file that
    does not exist), the other ranks say so instead of waiting."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*command, "-m", "alm", "--", *runs.args("nodata", data=runs.work / "missing.yaml")],
        cwd=runs.work,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=180,
    )
    assert done.returncode != 0
    assert "rank 0 failed while planning the run" in done.stdout, done.stdout[-3000:]
