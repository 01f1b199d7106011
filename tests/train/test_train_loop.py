"""The training loop in-process on a real tiny model and dataset: NaN handling, stop requests, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from alm.config import from_dict
from alm.data.pipeline import data_paths
from alm.model.config import ModelConfig
from alm.runs import read_events, run_status
from alm.train import trainer as trainer_mod
from alm.train.checkpoint import load_checkpoint
from alm.train.config import TrainConfig
from alm.train.rundir import RunDir
from alm.train.session import RunConfig, finalize
from alm.train.signals import StopRequest
from alm.train.trainer import RunPlan, Trainer


def _plan(tiny, run_dir: Path, **train: object) -> RunPlan:
    data_cfg = tiny.config()
    cfg = RunConfig(
        from_dict(ModelConfig, tiny.model), from_dict(TrainConfig, {**tiny.train, **train}), data_cfg
    )
    paths = data_paths(data_cfg)
    return RunPlan(
        run=RunDir(run_dir),
        config=finalize(cfg, 320),
        tokenizer_path=paths.tokenizer_path,
        packed_dir=paths.packed_dir,
        runs_root=run_dir.parent,
    )


def _nan_after(monkeypatch: pytest.MonkeyPatch, good_calls: int, bad_calls: int | None = None) -> None:
    """Make the loss NaN from micro-batch `good_calls + 1` on (for `bad_calls` micro-batches, or forever)."""
    real = trainer_mod.training_loss
    calls = {"n": 0}

    def loss_with_nan(out):
        calls["n"] += 1
        loss, reported = real(out)
        n = calls["n"]
        if n > good_calls and (bad_calls is None or n <= good_calls + bad_calls):
            return loss * float("nan"), reported * float("nan")
        return loss, reported

    monkeypatch.setattr(trainer_mod, "training_loss", loss_with_nan)


def test_a_finished_run_writes_the_run_directory(tiny_data, tmp_path: Path) -> None:
    plan = _plan(tiny_data, tmp_path / "runs" / "ok")
    result = Trainer(plan).run()
    assert result.reason == "finished" and result.step == 12
    run = plan.run
    events = read_events(run.events_path)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "stop" and events[-1]["reason"] == "finished"
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == list(range(1, 13))  # log_interval=1
    assert steps[-1]["tokens"] == 12 * 4 * 64
    assert steps[-1]["loss"] < steps[0]["loss"]
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [6, 12]
    assert all(e["val_bpb"] > 0 and math.isclose(e["val_ppl"], math.exp(e["val_loss"])) for e in evals)
    names = sorted(p.name for p in run.checkpoints_dir.iterdir())
    assert names == ["best.pt", "last.pt", "step-000008.pt", "step-000012.pt"]  # keep_last=2 pruned step 4
    ckpt = load_checkpoint(run.checkpoint("last"))
    assert ckpt["step"] == 12 and ckpt["tokens_seen"] == 12 * 4 * 64
    assert ckpt["config"]["model"]["vocab_size"] == 320 and ckpt["config"]["train"]["seq_len"] == 64
    assert set(ckpt["rng"]) == {"python", "numpy", "torch_cpu", "torch_device"}
    assert ckpt["metrics"]["best_val_loss"] == evals[-1]["best_val_loss"]
    assert run.config_path.is_file() and run.tokenizer_path.is_file() and not run.pid_path.exists()
    assert run_status(run.path) == "finished"


def test_load_model_reads_the_run_back(tiny_data, tmp_path: Path) -> None:
    from alm.train.checkpoint import load_model

    plan = _plan(tiny_data, tmp_path / "runs" / "m", steps=2, eval_interval=0)
    Trainer(plan).run()
    model, tokenizer, config, step = load_model("m", "last", "cpu", root=tmp_path / "runs")
    assert step == 2 and not model.training and tokenizer.vocab_size == 320
    ids = torch.tensor([tokenizer.encode("ROMEO:")])
    assert model(ids).logits.shape == (1, ids.shape[1], 320)
    assert config["train"]["steps"] == 2


def test_nan_steps_are_skipped_then_the_run_stops(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(tiny_data, tmp_path / "runs" / "nan", max_bad_steps=3, eval_interval=0)
    _nan_after(monkeypatch, good_calls=5)
    result = Trainer(plan).run()
    assert result.reason == "nan" and result.step == 8  # steps 6, 7, 8 were bad
    events = read_events(plan.run.events_path)
    warnings = [e for e in events if e["type"] == "warning"]
    assert [w["step"] for w in warnings] == [6, 7, 8]
    assert "update skipped (3/3" in warnings[-1]["message"]
    assert (
        events[-1]["type"] == "stop"
        and events[-1]["reason"] == "nan"
        and events[-1]["resume_command"] is None
    )
    last = load_checkpoint(plan.run.checkpoint("last"))  # the last good checkpoint, intact
    assert last["step"] == 4
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    assert run_status(plan.run.path) == "failed"


def test_a_single_bad_step_leaves_weights_untouched(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    plan = _plan(
        tiny_data, tmp_path / "runs" / "skip", steps=4, eval_interval=0, ckpt_interval=1, keep_last=4
    )
    _nan_after(monkeypatch, good_calls=2, bad_calls=1)  # step 3 is bad
    result = Trainer(plan).run()
    assert result.reason == "finished"
    step2 = load_checkpoint(plan.run.checkpoint(2))
    step3 = load_checkpoint(plan.run.checkpoint(3))
    for name, tensor in step2["model"].items():
        assert torch.equal(tensor, step3["model"][name]), name
    assert step2["optimizer"]["state"][0]["step"] == step3["optimizer"]["state"][0]["step"]
    step4 = load_checkpoint(plan.run.checkpoint(4))
    assert not torch.equal(step3["model"]["tok_emb.weight"], step4["model"]["tok_emb.weight"])


def test_a_stop_request_finishes_the_step_and_saves(
    tiny_data, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stop = StopRequest(announce=False)
    real = trainer_mod.training_loss
    calls = {"n": 0}

    def request_during_step_3(out):
        calls["n"] += 1
        if calls["n"] == 3:
            stop.request()
        return real(out)

    monkeypatch.setattr(trainer_mod, "training_loss", request_during_step_3)
    plan = _plan(tiny_data, tmp_path / "runs" / "stopped", grad_accum=2, eval_interval=0)
    result = Trainer(plan, stop=stop).run()
    assert result.reason == "interrupted" and result.step == 2  # step 2 (micro-batches 3 and 4) completed
    assert load_checkpoint(plan.run.checkpoint("last"))["step"] == 2
    stop_event = read_events(plan.run.events_path)[-1]
    assert stop_event["reason"] == "interrupted" and stop_event["resume_command"] == "alm resume stopped"
    assert run_status(plan.run.path) == "interrupted"
