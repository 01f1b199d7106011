"""The training loop in-process on a real tiny model and dataset: NaN handling, stop requests, checkpoints."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from alm.events import EvalEvent, StepEvent, StopEvent, WarningEvent, read_events
from alm.runs import run_status
from alm.train.checkpoint import load_checkpoint
from alm.train.signals import StopRequest
from alm.train.step import LossFn, LossOutput, lm_loss
from alm.train.trainer import Trainer
from testkit.tiny_data import tiny_plan as _plan


def nan_after(good_calls: int, bad_calls: int | None = None) -> LossFn:
    """The language-model loss, NaN from micro-batch `good_calls + 1` on (for `bad_calls` of them, or forever)."""
    calls = {"n": 0}

    def loss_fn(model, batch) -> LossOutput:
        calls["n"] += 1
        out = lm_loss(model, batch)
        n = calls["n"]
        if n > good_calls and (bad_calls is None or n <= good_calls + bad_calls):
            return LossOutput(out.loss * float("nan"), out.reported * float("nan"), out.metrics)
        return out

    return loss_fn


def stop_on_call(stop: StopRequest, call: int) -> LossFn:
    """The language-model loss, asking `stop` to stop during micro-batch number `call` (what Ctrl+C does)."""
    calls = {"n": 0}

    def loss_fn(model, batch) -> LossOutput:
        calls["n"] += 1
        if calls["n"] == call:
            stop.request()
        return lm_loss(model, batch)

    return loss_fn


def test_a_finished_run_writes_the_run_directory(tiny_data, tmp_path: Path) -> None:
    plan = _plan(tiny_data, tmp_path / "runs" / "ok")
    result = Trainer(plan).run()
    assert result.reason == "finished" and result.step == 12
    run = plan.run
    events = read_events(run.events_path)
    kinds = [e.type for e in events]
    assert kinds[0] == "start" and kinds[-1] == "stop" and isinstance(events[-1], StopEvent)
    assert events[-1].reason == "finished"
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == list(range(1, 13))  # log_interval=1
    assert steps[-1].tokens == 12 * 4 * 64
    assert steps[-1].loss < steps[0].loss
    evals = [e for e in events if isinstance(e, EvalEvent)]
    assert [e.step for e in evals] == [6, 12]
    assert all(e.val_bpb > 0 and math.isclose(e.val_ppl, math.exp(e.val_loss)) for e in evals)
    names = sorted(p.name for p in run.checkpoints_dir.iterdir())
    assert names == ["best.pt", "last.pt", "step-000008.pt", "step-000012.pt"]  # keep_last=2 pruned step 4
    ckpt = load_checkpoint(run.checkpoint("last"))
    assert ckpt["step"] == 12 and ckpt["tokens_seen"] == 12 * 4 * 64
    assert ckpt["config"]["model"]["vocab_size"] == 320 and ckpt["config"]["train"]["seq_len"] == 64
    assert set(ckpt["rng"]) == {"python", "numpy", "torch_cpu", "torch_device"}
    assert ckpt["metrics"]["best_val_loss"] == evals[-1].best_val_loss
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


def test_nan_steps_are_skipped_then_the_run_stops(tiny_data, tmp_path: Path) -> None:
    plan = _plan(tiny_data, tmp_path / "runs" / "nan", max_bad_steps=3, eval_interval=0)
    result = Trainer(plan, loss_fn=nan_after(good_calls=5)).run()
    assert result.reason == "nan" and result.step == 8  # steps 6, 7, 8 were bad
    events = read_events(plan.run.events_path)
    warnings = [e for e in events if isinstance(e, WarningEvent)]
    assert [w.step for w in warnings] == [6, 7, 8]
    assert "update skipped (3/3" in warnings[-1].message
    stop = events[-1]
    assert isinstance(stop, StopEvent) and stop.reason == "nan" and stop.resume_command is None
    last = load_checkpoint(plan.run.checkpoint("last"))  # the last good checkpoint, intact
    assert last["step"] == 4
    assert all(torch.isfinite(t).all() for t in last["model"].values())
    assert run_status(plan.run.path) == "failed"


def test_a_single_bad_step_leaves_weights_untouched(tiny_data, tmp_path: Path) -> None:
    plan = _plan(
        tiny_data, tmp_path / "runs" / "skip", steps=4, eval_interval=0, ckpt_interval=1, keep_last=4
    )
    result = Trainer(plan, loss_fn=nan_after(good_calls=2, bad_calls=1)).run()  # step 3 is bad
    assert result.reason == "finished"
    step2 = load_checkpoint(plan.run.checkpoint(2))
    step3 = load_checkpoint(plan.run.checkpoint(3))
    for name, tensor in step2["model"].items():
        assert torch.equal(tensor, step3["model"][name]), name
    assert step2["optimizer"]["state"][0]["step"] == step3["optimizer"]["state"][0]["step"]
    step4 = load_checkpoint(plan.run.checkpoint(4))
    assert not torch.equal(step3["model"]["tok_emb.weight"], step4["model"]["tok_emb.weight"])


def test_a_stop_request_finishes_the_step_and_saves(tiny_data, tmp_path: Path) -> None:
    stop = StopRequest(announce=False)
    plan = _plan(tiny_data, tmp_path / "runs" / "stopped", grad_accum=2, eval_interval=0)
    result = Trainer(plan, stop=stop, loss_fn=stop_on_call(stop, 3)).run()
    assert result.reason == "interrupted" and result.step == 2  # step 2 (micro-batches 3 and 4) completed
    assert load_checkpoint(plan.run.checkpoint("last"))["step"] == 2
    stop_event = read_events(plan.run.events_path)[-1]
    assert isinstance(stop_event, StopEvent) and stop_event.reason == "interrupted"
    assert stop_event.resume_command == "alm resume stopped"
    assert run_status(plan.run.path) == "interrupted"


def test_a_run_stopped_between_log_steps_reports_where_it_stopped(tiny_data, tmp_path: Path) -> None:
    """The last step event is the stop's step, so step, tokens and loss shown for the run belong together."""
    stop = StopRequest(announce=False)
    plan = _plan(tiny_data, tmp_path / "runs" / "between", log_interval=4, eval_interval=0, ckpt_interval=0)
    result = Trainer(plan, stop=stop, loss_fn=stop_on_call(stop, 5)).run()
    assert result.reason == "interrupted" and result.step == 5
    events = read_events(plan.run.events_path)
    steps = [e for e in events if isinstance(e, StepEvent)]
    assert [e.step for e in steps] == [4, 5]
    assert steps[-1].tokens == 5 * 4 * 64 and steps[-1].step_time and steps[-1].step_time > 0
    assert isinstance(events[-1], StopEvent) and events[-1].step == 5


def test_the_trainer_takes_any_loss_function(tiny_data, tmp_path: Path) -> None:
    """The seam for other objectives: the loss function decides what is trained and what is reported."""

    def half_loss(model, batch) -> LossOutput:
        out = lm_loss(model, batch)
        return LossOutput(out.loss, out.reported / 2, out.metrics)

    plan = _plan(tiny_data, tmp_path / "runs" / "half", steps=2, eval_interval=0, ckpt_interval=0)
    Trainer(plan, loss_fn=half_loss).run()
    first = next(e for e in read_events(plan.run.events_path) if isinstance(e, StepEvent))
    assert first.loss is not None and first.loss < 0.6 * math.log(320)  # half the ~ln(V) initial loss
