"""What every command that trains shares — `alm train`, `alm resume`, `alm sft`, `alm dpo`: their common
options, planning the run (rank 0 first under torchrun) and running the plan to its end, with the summary and
next commands that follow."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alm.cli.common import console, err_console
from alm.cli.prompts import suggested_prompt

if TYPE_CHECKING:
    from alm.train.launch import RunPlan

ProgressOption = Annotated[
    str | None,
    typer.Option(
        "--progress",
        help="auto (live panel on a terminal, plain lines otherwise), rich, plain or none; default from the config.",
    ),
]
RunsRootOption = Annotated[Path, typer.Option("--runs-dir", help="Where runs live.", show_default=True)]


def device_overrides(device: str, sets: list[str]) -> list[str]:
    """`--set` items with `--device` as `train.device` (auto: the config decides)."""
    return [*sets, f"train.device={device}"] if device and device != "auto" else sets


def progress_mode(progress: str | None) -> str | None:
    """The `--progress` mode; anything but auto, rich, plain or none is a UsageError."""
    from alm.errors import UsageError

    if progress is not None and progress not in ("auto", "rich", "plain", "none"):
        raise UsageError(f"--progress {progress}: unknown mode", hint="use auto, rich, plain or none")
    return progress


def plan_run(make: Callable[[], RunPlan]) -> RunPlan:
    """Plan the run (rank 0 first under torchrun). A stop meanwhile (Ctrl+C, or SIGTERM, which
    `interrupt_on_sigterm` turns into the same) ends the command with a message and exit 130."""
    from alm.errors import Interrupted
    from alm.train.parallel import rank_zero_first

    try:
        return rank_zero_first(make, "planning the run")
    except KeyboardInterrupt:
        err_console.print("[yellow]stopped[/] before training started: nothing was trained")
        raise Interrupted("") from None


def run_plan(plan: RunPlan, progress: str | None, next_commands: list[str] | None = None) -> None:
    """Train `plan` holding its run's lock, then say how it ended and what to run next (`next_commands`,
    else sampling and listing); exit 130 when stopped, 1 when the numbers went non-finite."""
    from alm.errors import AlmError, Interrupted
    from alm.train.dist import is_main_process, supervised
    from alm.train.signals import StopRequest
    from alm.train.trainer import train as run_training

    with plan:  # holds the run's lock until training ends
        # Under torchrun rank 0 speaks for all, and a rank whose peer died must outlive torchrun's SIGTERM to say so.
        stop = StopRequest(exiting=True, announce=is_main_process(), supervised=supervised())
        result = run_training(plan, console=console, progress=progress, stop=stop)
    if not is_main_process():
        return
    run = result.run
    if result.reason == "interrupted":
        console.print(f"[yellow]stopped[/] at step {result.step}/{result.total_steps}.")
        if result.detail:  # a hard stop between saves: the resume starts from an earlier step
            console.print(result.detail)
        if result.resume_command:
            console.print(f"continue with:  [bold]{result.resume_command}[/]")
        else:
            console.print(
                f"nothing was saved yet: start it again with `alm train --run {plan.run_ref} --overwrite`"
            )
        raise Interrupted("")
    if result.reason == "nan":
        last = result.last_checkpoint
        raise AlmError(
            f"training stopped at step {result.step}: {result.detail}",
            hint=(f"the last good checkpoint is {last} (step {result.saved_step}); " if last else "")
            + "lower train.lr, raise train.warmup_steps or set train.grad_clip, and start a new run "
            "(--run NEW, or --overwrite)",
        )
    if result.reason == "early_stop":
        console.print(f"[yellow]stopped early[/] at step {result.step}/{result.total_steps}: {result.detail}")
    best = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    console.print(f"[green]done:[/] {run.name} trained to step {result.step}{best}")
    saved = ", ".join(p.name for p in (run.checkpoint("last"), run.checkpoint("best")) if p.is_file())
    console.print(f"  run directory  {run.path}")
    console.print(f"  checkpoints    {run.checkpoints_dir}/ ({saved})")
    console.print(f"  events         {run.events_path}")
    prompt = (suggested_prompt(plan.config.train.sample_prompt, plan.config.data) or "").strip()
    console.print("next:")
    for command in next_commands or [
        f"alm sample {plan.run_ref}" + (f" --prompt {shlex.quote(prompt)}" if prompt else ""),
        "alm runs list",
    ]:
        console.print(f"  {command}", markup=False)
    if (
        result.reason == "early_stop"
    ):  # resuming as it is would stop again at the next eval without a new best
        console.print(f"  {plan.resume_command} --set train.early_stop_patience=0   # train on regardless")
    else:
        console.print(f"  {plan.resume_command} --set train.steps={result.total_steps * 2}   # train longer")


__all__ = ["ProgressOption", "RunsRootOption", "device_overrides", "plan_run", "progress_mode", "run_plan"]
