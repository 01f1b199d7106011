"""What a stop says: a hard stop (a second Ctrl+C mid-step) names the step last.pt holds, where a resume picks up;
and a process that exits after a stop ignores further signals instead of dying in its own shutdown."""

from __future__ import annotations

import signal
from pathlib import Path

from alm.events import StopEvent, read_events
from alm.train.checkpoint import load_checkpoint
from alm.train.signals import StopRequest, interrupt_on_sigterm
from alm.train.step import LossOutput, lm_loss
from alm.train.trainer import Trainer
from testkit.tiny_data import tiny_plan


def test_a_hard_stop_says_which_step_last_pt_holds(tiny_data, tmp_path: Path) -> None:
    calls = {"n": 0}

    def second_ctrl_c_in_step_7(model, batch) -> LossOutput:
        calls["n"] += 1
        if calls["n"] == 7:
            raise KeyboardInterrupt  # what the second signal raises from inside a step
        return lm_loss(model, batch)

    plan = tiny_plan(tiny_data, tmp_path / "runs" / "hard", eval_interval=0, ckpt_interval=4)
    result = Trainer(plan, loss_fn=second_ctrl_c_in_step_7).run()
    assert result.reason == "interrupted" and result.step == 7 and result.saved_step == 4
    assert result.detail == "stopped before step 7 was saved: last.pt holds step 4, where a resume continues"
    assert load_checkpoint(plan.run.checkpoint("last"))["step"] == 4
    stop = read_events(plan.run.events_path)[-1]
    assert isinstance(stop, StopEvent) and stop.detail == result.detail and stop.resume_command


def test_an_exiting_process_ignores_signals_after_a_stop() -> None:
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest(announce=False, exiting=True)
    with stop.installed():
        stop.request()
    try:
        # SIG_IGN, not a Python handler: the interpreter resets those to the default while shutting down
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    library = StopRequest(announce=False)  # in a library (or a test) the handlers are always given back
    with library.installed():
        library.request()
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_interrupts_start_up_like_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with interrupt_on_sigterm():
        assert signal.getsignal(signal.SIGTERM) is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is before
