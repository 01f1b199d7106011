"""`train.compile: true` in the real loop (Inductor's CPU backend): losses match eager within a stated tolerance,
Ctrl+C then a compiled resume continues bit for bit, and where compiling cannot work the run trains eagerly and
says why. Slow: the first compile of the tiny model takes tens of seconds on 2 cores (Inductor caches after)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
import torch
from torch._inductor import config as inductor_config

from alm.events import StepEvent, StopEvent, WarningEvent, read_events
from alm.rundir import RunDir
from alm.train.checkpoint import load_checkpoint
from alm.train.launch import plan_resume
from alm.train.signals import StopRequest
from alm.train.step import LossOutput, lm_loss
from alm.train.trainer import Trainer
from testkit.tiny_data import tiny_plan

pytestmark = pytest.mark.slow
STEPS = 8
LOSS_RTOL = 1e-5  # Inductor reorders fp32 reductions: measured ~1e-7 relative on the tiny model
NO_COMPILER = {"cpp.cxx": ("/nonexistent/c++",)}


def _plan(tiny, run_dir: Path, **train: object):
    return tiny_plan(tiny, run_dir, steps=STEPS, eval_interval=4, ckpt_interval=0, **train)


def _losses(run: RunDir) -> dict[int, float]:
    return {
        e.step: e.loss for e in read_events(run.events_path) if isinstance(e, StepEvent) and e.step and e.loss
    }


def _warnings(run: RunDir) -> list[str]:
    return [e.message for e in read_events(run.events_path) if isinstance(e, WarningEvent)]


@pytest.fixture(scope="module")
def eager_run(tiny_data, tmp_path_factory: pytest.TempPathFactory) -> RunDir:
    plan = _plan(tiny_data, tmp_path_factory.mktemp("eager") / "eager")
    assert Trainer(plan).run().reason == "finished"
    return plan.run


def test_compiled_losses_match_eager(tiny_data, eager_run: RunDir, tmp_path: Path) -> None:
    plan = _plan(tiny_data, tmp_path / "compiled", compile=True)
    trainer = Trainer(plan)
    assert trainer.forward is not trainer.model and trainer.compile_note is None  # really compiled
    assert trainer.run().reason == "finished"
    eager, compiled = _losses(eager_run), _losses(plan.run)
    assert sorted(compiled) == list(range(1, STEPS + 1))
    for step, loss in eager.items():
        assert compiled[step] == pytest.approx(loss, rel=LOSS_RTOL), step
    assert not _warnings(plan.run)
    weights = load_checkpoint(plan.run.checkpoint("last"))["model"]  # saved without the _orig_mod. prefix
    for name, tensor in load_checkpoint(eager_run.checkpoint("last"))["model"].items():
        torch.testing.assert_close(weights[name], tensor, rtol=1e-4, atol=1e-5)


def test_sigint_then_compiled_resume_is_bit_identical(tiny_data, tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    full = _plan(tiny_data, runs / "full", compile=True)
    Trainer(full).run()
    calls = {"n": 0}

    def sigint_at_step_3(model, batch) -> LossOutput:  # what Ctrl+C in the terminal does, mid-step
        calls["n"] += 1
        if calls["n"] == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return lm_loss(model, batch)

    stopped = _plan(tiny_data, runs / "stopped", compile=True)
    result = Trainer(stopped, stop=StopRequest(announce=False), loss_fn=sigint_at_step_3).run()
    assert result.reason == "interrupted" and result.step == 3
    resumed = Trainer(plan_resume("stopped", runs_root=runs)).run()
    assert resumed.reason == "finished"
    assert _losses(stopped.run) == _losses(full.run)  # exact float equality, every step
    last, reference = (
        load_checkpoint(stopped.run.checkpoint("last")),
        load_checkpoint(full.run.checkpoint("last")),
    )
    for name, tensor in reference["model"].items():
        assert torch.equal(last["model"][name], tensor), name
    stop = read_events(stopped.run.events_path)[-1]
    assert isinstance(stop, StopEvent) and stop.reason == "finished"


def test_no_cpp_compiler_trains_eagerly_and_says_so(tiny_data, eager_run: RunDir, tmp_path: Path) -> None:
    with inductor_config.patch(NO_COMPILER):
        plan = _plan(tiny_data, tmp_path / "fallback", compile=True)
        trainer = Trainer(plan)
        assert trainer.forward is trainer.model
        trainer.run()
    assert _warnings(plan.run) == [
        "train.compile: no C++ compiler found for Inductor's CPU backend (install g++ or set CXX); running eagerly"
    ]
    assert _losses(plan.run) == _losses(eager_run)


def test_a_step_that_fails_to_compile_is_repeated_eagerly(
    tiny_data, eager_run: RunDir, tmp_path: Path
) -> None:
    plan = _plan(tiny_data, tmp_path / "failing", compile=True)
    trainer = Trainer(plan)  # a compiler is there when the run starts ...
    torch._dynamo.reset()  # ... and gone when the first step compiles (no cached graph to fall back on)
    with inductor_config.patch({**NO_COMPILER, "fx_graph_cache": False}):
        assert trainer.run().reason == "finished"
    [warning] = _warnings(plan.run)
    assert warning.startswith("train.compile: compiling failed (") and warning.endswith("training eagerly")
    assert _losses(plan.run) == _losses(eager_run)  # the failed attempt left no trace in the weights
