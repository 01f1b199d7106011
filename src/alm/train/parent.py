"""Starting a new run from another run's weights — the one mechanism behind `alm train --init-from RUN[@CKPT]`
(continued pretraining) and `alm sft` / `alm dpo` (fine-tuning).

`load_parent` reads the parent's checkpoint (best.pt when it has one, else last.pt, unless told) with its model
and tokenizer. The plan builds the new run's config from it (the parent's model section; the run's `init`
section records the parent, the checkpoint and its step, in config.yaml, every checkpoint and the `start`
event) and hands the weights to the trainer as `RunPlan.initial_weights`, which it loads into its model on a
fresh start. The optimizer and the schedule start fresh; a resume of the new run restores its own checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alm.errors import DataError, UsageError
from alm.rundir import RunDir, resolve_run_dir
from alm.train import checkpoint as ckpt_io
from alm.train.run_config import InitConfig, StartingPoint

if TYPE_CHECKING:
    import torch

    from alm.model import ModelConfig, Transformer
    from alm.tokenizer import Tokenizer


@dataclass(frozen=True)
class Parent:
    """A parent run's checkpoint, loaded on the CPU."""

    run: RunDir
    checkpoint: Path
    step: int
    model: Transformer
    tokenizer: Tokenizer
    config: dict[str, Any]  # the parent's resolved config

    @property
    def init(self) -> InitConfig:
        """The new run's `init` section."""
        return InitConfig(str(self.run.path.resolve()), str(self.checkpoint.resolve()), self.step)

    @property
    def start(self) -> StartingPoint:
        """What `load_run_config(start=...)` takes from the parent: the model section, the tokenizer."""
        from alm.config import to_dict

        return StartingPoint(self.init, to_dict(self.model.config), self.run.tokenizer_path.resolve())

    def describe(self, *, chosen: bool, flag: str) -> str:
        """`from runs/x/checkpoints/best.pt (step 5, ...)`: which checkpoint, and why when the default chose it."""
        why = ""
        if not chosen:
            why = (
                ", the parent's best val loss"
                if self.checkpoint.name == "best.pt"
                else ", the parent has no best.pt"
            )
            why += f"; {flag} picks another"
        return f"from {self.checkpoint} (step {self.step}{why})"

    def weights_for(self, model: ModelConfig) -> dict[str, torch.Tensor]:
        """The parent's weights for a model of config `model` (the parent's, perhaps with `--set model.…`
        changes): a UsageError, before anything is trained, when they no longer fit."""
        import torch

        from alm.model import Transformer

        state = self.model.state_dict()
        with torch.device("meta"):  # shapes only: no memory, no initialisation
            expected = {name: tuple(t.shape) for name, t in Transformer(model).state_dict().items()}
        found = {name: tuple(t.shape) for name, t in state.items()}
        if expected != found:
            differ = sorted(n for n in expected.keys() | found.keys() if expected.get(n) != found.get(n))
            shown = ", ".join(f"{n} {found.get(n)} -> {expected.get(n)}" for n in differ[:3])
            raise UsageError(
                f"the weights of {self.checkpoint} do not fit the model as configured ({shown})",
                hint="a run started from another keeps its parent's shapes: drop the --set model.… that changes "
                "one (model.dropout may change, and model.max_seq_len with RoPE)",
            )
        return state


def split_init_arg(value: str) -> tuple[str, str | None]:
    """`RUN@CHECKPOINT` -> (RUN, CHECKPOINT); a plain RUN (a path may hold "@") -> (RUN, None)."""
    run, sep, which = value.rpartition("@")
    if sep and run and _checkpoint_name(which):
        return run, which
    return value, None


def _checkpoint_name(text: str) -> bool:
    return text in ("last", "best") or text.isdigit() or (text.startswith("step-") and text[5:].isdigit())


def parent_checkpoint(parent: RunDir, which: str | None, *, flag: str, purpose: str = "start") -> Path:
    """The parent's checkpoint to start from: `which`, else best.pt when it has one, else last.pt; `flag` is
    the option that picks another, `purpose` what the run does from it (for the messages)."""
    if which is None:
        which = "best" if parent.checkpoint("best").is_file() else "last"
    try:
        return ckpt_io.resolve_checkpoint(parent.path, which)
    except DataError as exc:
        raise UsageError(
            f"run {parent.name} has no checkpoint {parent.checkpoint(which).name} to {purpose} from",
            hint=f"{exc.hint}; pick one with {flag}"
            if exc.hint and "available" in exc.hint
            else f"it has not saved one yet: {purpose} from a run once it has a checkpoint",
        ) from None


def check_not_parent(target: RunDir, parent: RunDir) -> None:
    """A new run never lands on the run it starts from (checked before either is touched)."""
    if target.path.resolve() == parent.path.resolve():
        raise UsageError("the new run cannot replace its parent", hint="choose another --run NAME")


def resolve_init_from(value: str, target: RunDir, runs_root: str | Path) -> tuple[RunDir, str | None]:
    """`--init-from RUN[@CHECKPOINT]`: the parent run (never `target`) and the checkpoint it names, if any."""
    name, which = split_init_arg(value)
    parent = resolve_run_dir(name, runs_root)
    check_not_parent(target, parent)
    return parent, which


def load_parent(parent: RunDir, which: str | None, *, flag: str, purpose: str = "start") -> Parent:
    """`parent`'s checkpoint `which` (default best, else last), loaded on the CPU to start a new run from."""
    start = parent_checkpoint(parent, which, flag=flag, purpose=purpose)
    model, tokenizer, config, step = ckpt_io.load_model(start, device="cpu")
    return Parent(parent, start, step, model, tokenizer, config)


__all__ = [
    "Parent",
    "check_not_parent",
    "load_parent",
    "parent_checkpoint",
    "resolve_init_from",
    "split_init_arg",
]
