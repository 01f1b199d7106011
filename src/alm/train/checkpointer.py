"""Saving a run's checkpoints: `last.pt` at every save, `best.pt` and `step-N.pt` as links to it.

The checkpointer decides when a save is due (every `ckpt_interval` steps, a new best val loss, the end of the
run) and prunes old step checkpoints. A save is a `StopRequest.critical()` section: a second Ctrl+C waits until
the atomic rename is done, so whatever stops the process, every file on disk is a complete checkpoint. A save
of non-finite weights, or one the disk has no room for, fails before last.pt is touched (`save_checkpoint`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from alm.events import CheckpointEvent
from alm.fileio import atomic_link
from alm.rundir import RunDir
from alm.train.checkpoint import save_checkpoint
from alm.train.config import TrainConfig
from alm.train.report import Reporter
from alm.train.sharded import ShardedCheckpoints, prune_sharded
from alm.train.signals import StopRequest


class Checkpointer:
    def __init__(
        self,
        run: RunDir,
        cfg: TrainConfig,
        stop: StopRequest,
        report: Reporter,
        *,
        writes: bool = True,
        sharded: ShardedCheckpoints | None = None,
    ):
        self.run, self.interval, self.keep_last = run, cfg.ckpt_interval, cfg.keep_last
        # Only rank 0 writes; the other ranks still build the state, which a sharded model gathers collectively.
        self.stop, self.report, self.writes = stop, report, writes
        self.sharded = sharded  # FSDP2: the DCP half of each checkpoint (alm.train.sharded)
        self.saved_step: int | None = None  # the step of last.pt on disk

    def due(self, step: int) -> bool:
        return bool(self.interval) and step % self.interval == 0

    def after_step(self, step: int, state: Callable[[], dict[str, Any]], *, best: bool) -> None:
        """Save when `step` is a checkpoint step or set a new best val loss."""
        if best or self.due(step):
            self.save(step, state(), best=best, keep_step=self.due(step))

    def finish(self, step: int, state: Callable[[], dict[str, Any]]) -> None:
        """Save the final state unless `last.pt` already holds it."""
        if self.saved_step != step:
            self.save(step, state())

    def save(self, step: int, state: dict[str, Any], *, best: bool = False, keep_step: bool = False) -> None:
        """Write last.pt and give it the names best.pt / step-N.pt when asked; a second signal waits."""
        if self.sharded is not None:  # every rank writes its shards; rank 0's last.pt then commits them
            with self.stop.critical():
                state["sharded"] = self.sharded.save(step)
        if not self.writes:
            self.saved_step = step
            return
        last = self.run.checkpoint("last")
        resume = f"free some space, then continue from the last checkpoint with `alm resume {self.run.path}`"
        with self.stop.critical():
            written = [("last", save_checkpoint(state, last, hint=resume))]
            if best:
                written.append(("best", atomic_link(last, self.run.checkpoint("best"))))
            if keep_step:
                written.append(("step", atomic_link(last, self.run.checkpoint(step))))
                self._prune()
            prune_sharded(self.run.checkpoints_dir)  # DCP directories no checkpoint names any more
        self.saved_step = step  # only once last.pt holds it: a failed save leaves the previous one in place
        for kind, path in written:
            self.report(CheckpointEvent(step=step, path=str(path), kind=kind))

    def _prune(self) -> None:
        steps = self.run.step_checkpoints()
        for _, path in steps[: max(0, len(steps) - self.keep_last)]:
            with contextlib.suppress(OSError):
                path.unlink()
