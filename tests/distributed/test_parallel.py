"""The parts of training on several processes that need no second process: launch decisions and their errors,
the data each rank sees, the global batch across world sizes, the torchrun command line, events and their views.
What needs real processes (torchrun, DDP, FSDP2, DCP) is in test_torchrun.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import torch
from dist_helpers import MICRO_MODEL, MICRO_TRAIN
from typer.testing import CliRunner

from alm.cli.app import app
from alm.errors import AlmError, UsageError
from alm.events import StartEvent, StepEvent, decode, encode
from alm.summary import RunSummary
from alm.train.dist import relaunch, resume_grad_accum
from alm.train.parallel import check_device, readiness, resolve_mode
from alm.train.progress import PlainProgress
from alm.train.torchrun import check_nproc, check_port, torchrun_command, worker_args

runner = CliRunner()


# -- which parallelism, on which device ------------------------------------------------------------------------
def test_auto_is_ddp_for_several_processes_and_none_for_one() -> None:
    assert resolve_mode("auto", 1) == "none"
    assert resolve_mode("auto", 4) == "ddp"
    assert resolve_mode("fsdp", 2) == "fsdp"
    assert resolve_mode("none", 1) == "none"


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_a_parallel_mode_on_one_process_is_refused_with_the_launch_command(mode: str) -> None:
    with pytest.raises(UsageError) as caught:
        resolve_mode(mode, 1)
    assert f"train.parallel={mode} needs several processes" in caught.value.message
    assert "--nproc" in (caught.value.hint or "")


def test_parallel_none_under_torchrun_is_refused() -> None:
    with pytest.raises(UsageError, match="every process would train a copy"):
        resolve_mode("none", 2)


def test_mps_cannot_be_shared_by_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    # No MPS here: stand in for what `resolve_device` returns on a Mac.
    monkeypatch.setattr("alm.device.resolve_device", lambda name: torch.device("mps"))
    with pytest.raises(UsageError) as caught:
        check_device("auto", 2)
    assert "MPS has no multi-process backend" in caught.value.message
    assert "--device cpu" in (caught.value.hint or "")
    assert check_device("auto", 1).type == "mps"  # one process may use it


def test_train_nproc_on_mps_is_refused_before_launching(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr("alm.device.resolve_device", lambda name: torch.device("mps"))
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--nproc", "2", "--run", "mps"])
    assert result.exit_code == 2, result.output
    assert "MPS has no multi-process backend" in result.output
    assert not (tmp_path / "runs").exists()


def test_doctor_reports_distributed_readiness() -> None:
    rows = dict(readiness(torch.device("cpu")))
    assert "gloo yes" in rows["distributed"]
    assert rows["--nproc N"].startswith("yes, over gloo")
    result = runner.invoke(app, ["doctor", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "distributed" in result.output and "gloo yes" in result.output


# -- bad input to --nproc --------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", [["train"], ["resume", "some-run"]])
def test_nproc_zero_is_a_usage_error(
    command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, [*command, "--nproc", "0"])
    assert result.exit_code == 2, result.output
    assert "--nproc must be at least 1, got 0" in result.output


def test_nproc_under_torchrun_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UsageError, match="already runs under torchrun"):
        check_nproc(2)


def test_a_port_in_use_is_refused_before_launching(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(UsageError, match=f"port {port} is in use"):
            check_port(port)
        monkeypatch.chdir(tmp_path)
        result = runner.invoke(app, ["train", "--nproc", "2", "--port", str(port), "--run", "p"])
    assert result.exit_code == 2, result.output
    assert f"port {port} is in use" in result.output and "--port" in result.output
    check_port(None)  # no port: torchrun picks a free one


def test_parallel_fsdp_on_one_process_is_a_clear_error(tiny_data, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "train",
            *("--model", str(tiny_data.model_yaml), "--train", str(tiny_data.train_yaml)),
            *("--data", str(tiny_data.corpus_yaml), "--runs-dir", str(tmp_path / "runs"), "--run", "one"),
            *("--set", "train.parallel=fsdp"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "train.parallel=fsdp needs several processes" in result.output


# -- the torchrun command line ---------------------------------------------------------------------------------
def test_worker_args_drop_the_parents_options_and_name_the_run() -> None:
    argv = ["train", "--nproc", "2", "--set", "train.lr=1e-3", "--port=29512", "--model", "micro"]
    assert worker_args(argv) == ["train", "--set", "train.lr=1e-3", "--model", "micro"]
    assert worker_args(["train", "--nproc=2"], "20250101-000000-micro") == [
        "train",
        "--run",
        "20250101-000000-micro",
    ]


def test_torchrun_command_keeps_alm_options_away_from_torchruns_parser() -> None:
    # `--run` would be taken for torchrun's `--run-path` (argparse prefix matching) without the `--`.
    command = torchrun_command(["train", "--run", "x"], 2)
    assert command[1:3] == ["-m", "alm.train.torchrun"]
    assert "--standalone" in command and "--nproc-per-node=2" in command
    assert command[-5:] == ["alm", "--", "train", "--run", "x"]
    pinned = torchrun_command(["train"], 4, port=29555)
    assert "--master-port=29555" in pinned and "--standalone" not in pinned


def test_the_resume_command_relaunches_on_the_same_topology(monkeypatch: pytest.MonkeyPatch) -> None:
    assert relaunch("alm resume r") == "alm resume r"
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert relaunch("alm resume r") == "alm resume r --nproc 2"
    monkeypatch.setenv("WORLD_SIZE", "8")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    line = relaunch("alm resume r")
    assert line.startswith("torchrun --nnodes 2 --nproc-per-node 4 ") and "-m alm resume r" in line


# -- the same tokens on any number of processes ------------------------------------------------------------------
def test_n_ranks_see_the_batches_of_one_process_with_grad_accum_times_n(tiny_data) -> None:
    """Rank r's micro-batch j of a step is micro-batch j·N + r of one process with grad_accum × N: the same
    windows, in the same order, and the sampler state after a step is the same whatever the world size."""
    from alm.data.layout import data_paths
    from alm.data.loader import BatchSampler, PackedDataset

    ds = PackedDataset.open(data_paths(tiny_data.config()).packed_dir, split="train")
    world, accum, batch, seq = 2, 3, 2, 16
    one = BatchSampler(ds, batch, seq, seed=5)
    ranks = [BatchSampler(ds, batch, seq, seed=5, rank=r, world_size=world) for r in range(world)]
    for _step in range(40):  # past an epoch boundary: ~36k tokens / (2 × 3 × 2 × 16) ≈ 190 steps an epoch
        single = [one.next_batch() for _ in range(accum * world)]
        per_rank = [[sampler.next_batch() for _ in range(accum)] for sampler in ranks]
        for j in range(accum):
            for r in range(world):
                x, y = per_rank[r][j]
                assert torch.equal(x, single[j * world + r][0]) and torch.equal(y, single[j * world + r][1])
        for sampler in ranks:
            assert {k: v for k, v in sampler.state_dict().items() if k != "world_size"} == {
                k: v for k, v in one.state_dict().items() if k != "world_size"
            }
    resumed = BatchSampler(ds, batch, seq, seed=5)  # a 2-process state continues on one process
    resumed.load_state_dict(ranks[0].state_dict())
    assert torch.equal(resumed.next_batch()[0], one.next_batch()[0])


def test_resume_grad_accum_keeps_the_global_batch() -> None:
    saved = {"batch_size": 4, "grad_accum": 1}
    assert resume_grad_accum(saved, 2, 1) == 2  # 2 -> 1 process
    assert resume_grad_accum({"batch_size": 4, "grad_accum": 4}, 1, 2) == 2  # 1 -> 2
    with pytest.raises(UsageError) as caught:
        resume_grad_accum(saved, 2, 3)
    assert "global batch is 8 sequences" in caught.value.message
    assert "1, 2" in (caught.value.hint or "")


def test_resuming_on_two_processes_halves_grad_accum_and_keeps_the_run_config(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Planning (rank 0's job) of a one-process run resumed under torchrun: the global batch stays, and a
    `train.parallel` that cannot run on the new world size becomes auto."""
    from alm.train.launch import plan_resume
    from alm.train.trainer import train
    from testkit.tiny_data import tiny_plan

    plan = tiny_plan(
        tiny_data, tmp_path / "runs" / "r", steps=4, ckpt_interval=0, eval_interval=0, grad_accum=2
    )
    train(plan)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    resumed = plan_resume("r", ["train.steps=8"], runs_root=tmp_path / "runs")
    resumed.release()
    assert resumed.config.train.grad_accum == 1
    assert resumed.changes["train.grad_accum"] == (2, 1)
    assert resumed.resume_command.endswith("--nproc 2")


# -- evaluation shared by the ranks -------------------------------------------------------------------------------
def test_every_rank_runs_the_same_number_of_eval_forwards() -> None:
    """FSDP2 gathers weights collectively in every forward, so a rank with nothing left to score still runs
    one, on a fully masked batch that counts nothing; together the ranks score each batch once."""
    from alm.evaluate import IGNORE_INDEX, _round_robin

    batches = [(torch.full((2, 4), i), torch.full((2, 4), i)) for i in range(5)]
    shares = [list(_round_robin(iter(batches), rank, 2)) for rank in range(2)]
    assert [len(share) for share in shares] == [3, 3]
    scored = sorted(int(y[0, 0]) for share in shares for _x, y in share if (y != IGNORE_INDEX).any())
    assert scored == [0, 1, 2, 3, 4]
    assert bool((shares[1][-1][1] == IGNORE_INDEX).all())


# -- what runs record and show -------------------------------------------------------------------------------------
def test_start_and_step_events_carry_the_launch_and_every_ranks_memory() -> None:
    start = StartEvent(
        run="r", world_size=2, parallel="fsdp", backend="gloo", global_batch=8, ranks=[{"a": 1}]
    )
    step = StepEvent(step=3, memory={"rss": 10}, rank_memory=[{"rss": 10}, {"rss": 12}])
    assert decode(encode(start)) == start and decode(encode(step)) == step
    old = decode({"type": "start", "time": 1.0, "run": "r"})  # written before these fields existed
    assert isinstance(old, StartEvent) and old.parallel == "none" and old.backend is None and old.ranks == []


def test_summary_and_progress_show_the_launch_and_memory_per_rank() -> None:
    summary = RunSummary()
    summary.apply(StartEvent(run="r", world_size=1))
    assert summary.parallel is None and summary.rank_memory == []
    progress = PlainProgress()
    progress.write(
        StartEvent(run="r", world_size=2, parallel="ddp", backend="gloo", device={"device": "cpu"})
    )
    progress.write(StepEvent(step=1, rank_memory=[{"rss": 2_000_000}, {"peak": 3_000_000, "allocated": 1}]))
    assert progress.summary.parallel == "ddp × 2 (gloo)"
    assert progress.title == "r · cpu · ddp × 2 (gloo)"
    assert progress.summary.rank_memory == [2e6, 3e6]


def test_errors_quoting_bracketed_text_print_instead_of_crashing(capsys: pytest.CaptureFixture[str]) -> None:
    """gloo's errors start with `[/path/pair.cc:537]`, which Rich took for a closing markup tag (MarkupError)."""
    from alm.cli.common import report_error

    report_error(AlmError("rank 1: lost ([/__w/gloo/pair.cc:537] Connection reset)", hint="see [rank0]"))
    err = capsys.readouterr().err
    assert "[/__w/gloo/pair.cc:537]" in err and "[rank0]" in err


def test_micro_configs_are_valid() -> None:
    from alm.config import from_dict
    from alm.model.config import ModelConfig
    from alm.train.config import TrainConfig

    from_dict(ModelConfig, {**MICRO_MODEL, "vocab_size": 320})
    assert from_dict(TrainConfig, MICRO_TRAIN).parallel == "auto"


# -- sharded checkpoints: the commit protocol -----------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:torch.distributed is disabled")
def test_a_sharded_save_is_committed_by_last_pt_and_leftovers_are_cleaned(tmp_path: Path) -> None:
    """What a kill can leave — a half-written staging directory, or a directory no checkpoint names yet — is
    removed; last.pt only ever names a directory that was complete before it was written. (DCP also saves
    from one process, which is enough to check the protocol here.)"""
    from alm.model import ModelConfig, Transformer
    from alm.train.checkpoint import atomic_save
    from alm.train.config import TrainConfig
    from alm.train.optim import build_optimizer
    from alm.train.sharded import ShardedCheckpoints, prune_sharded, referenced_dir

    model = Transformer(ModelConfig(**{**MICRO_MODEL, "vocab_size": 64}))
    optimizer = build_optimizer(model, TrainConfig())
    ckpts = tmp_path / "checkpoints"
    saved = ShardedCheckpoints(ckpts, model, optimizer, writes=True).save(10)
    assert saved == {"path": "dcp-step-000010", "world_size": 1}
    assert (ckpts / "dcp-step-000010" / ".metadata").is_file()
    atomic_save({"sharded": saved}, ckpts / "last.pt")
    assert referenced_dir(ckpts / "last.pt") == "dcp-step-000010"

    (ckpts / ".tmp-dcp-step-000020").mkdir()  # killed while the ranks were writing step 20
    (ckpts / ".tmp-dcp-step-000020" / "__0_0.distcp").write_bytes(b"partial")
    (ckpts / "dcp-step-000030").mkdir()  # killed after the rename, before last.pt named it
    ShardedCheckpoints(ckpts, model, optimizer, writes=True)  # a restarted run cleans the staging area
    assert not (ckpts / ".tmp-dcp-step-000020").exists()
    prune_sharded(ckpts)  # after its next save
    assert sorted(p.name for p in ckpts.iterdir()) == ["dcp-step-000010", "last.pt"]
