"""`alm train` and `alm resume`: train a model into runs/NAME, or continue an interrupted run."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alm.cli.common import DeviceOption, SetOption, console, handle_errors, overrides

if TYPE_CHECKING:
    from alm.train.trainer import RunPlan

ProgressOption = Annotated[
    str | None,
    typer.Option(
        "--progress",
        help="auto (live panel on a terminal, plain lines otherwise), rich, plain or none; default from the config.",
    ),
]
RunsRootOption = Annotated[Path, typer.Option("--runs-dir", help="Where runs live.", show_default=True)]


def register(app: typer.Typer) -> None:
    app.command("train", rich_help_panel="Train")(train)
    app.command("resume", rich_help_panel="Train")(resume)


def _device_overrides(device: str, sets: list[str]) -> list[str]:
    return [*sets, f"train.device={device}"] if device and device != "auto" else sets


def _progress_mode(progress: str | None) -> str | None:
    from alm.errors import UsageError

    if progress is not None and progress not in ("auto", "rich", "plain", "none"):
        raise UsageError(f"--progress {progress}: unknown mode", hint="use auto, rich, plain or none")
    return progress


@handle_errors
def train(
    model: Annotated[
        str | None,
        typer.Option("--model", "-m", help="Model preset (micro, pico, nano, small) or YAML file."),
    ] = None,
    train_config: Annotated[
        str | None, typer.Option("--train", "-t", help="Train preset (micro, default) or YAML file.")
    ] = None,
    data: Annotated[
        str | None,
        typer.Option("--data", "-d", help="corpus.yaml, or a data directory; default: the built-in corpus."),
    ] = None,
    run: Annotated[
        str | None,
        typer.Option("--run", "-r", help="Run name under --runs-dir (or a path); default: time-preset."),
    ] = None,
    device: DeviceOption = "auto",
    set_: SetOption = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the existing run named by --run.")
    ] = False,
    overwrite: Annotated[
        bool, typer.Option("--overwrite", help="Start the run named by --run over.")
    ] = False,
    progress: ProgressOption = None,
    runs_dir: RunsRootOption = Path("runs"),
) -> None:
    """Train a model: with no arguments, the micro preset on the built-in Shakespeare corpus (a few minutes on a CPU).

    Builds the cleaned text, tokenizer and shards first when they are missing. Ctrl+C stops after the current step and saves a checkpoint; `alm resume RUN` continues exactly where it stopped.
    """
    from alm.train.launch import plan_train

    mode = _progress_mode(progress)
    plan = plan_train(
        model,
        train_config,
        data,
        _device_overrides(device, overrides(set_)),
        run,
        resume=resume,
        overwrite=overwrite,
        runs_root=runs_dir,
        console=console,
    )
    _run(plan, mode)


@handle_errors
def resume(
    run: Annotated[str, typer.Argument(help="Run name under --runs-dir, or a run directory.")],
    set_: SetOption = None,
    device: DeviceOption = "auto",
    progress: ProgressOption = None,
    runs_dir: RunsRootOption = Path("runs"),
) -> None:
    """Continue a run from its last checkpoint (safe changes: --set train.steps=N, intervals, device)."""
    from alm.train.launch import plan_resume

    mode = _progress_mode(progress)
    plan = plan_resume(run, _device_overrides(device, overrides(set_)), runs_root=runs_dir, console=console)
    _run(plan, mode)


def _run(plan: RunPlan, progress: str | None) -> None:
    from alm.errors import AlmError, Interrupted
    from alm.train.rundir import is_main_process
    from alm.train.trainer import train as run_training

    result = run_training(plan, console=console, progress=progress)
    if not is_main_process():
        return
    run = result.run
    if result.reason == "interrupted":
        console.print(f"[yellow]stopped[/] at step {result.step}/{result.total_steps}.")
        if result.resume_command:
            console.print(f"continue with:  [bold]{result.resume_command}[/]")
        raise Interrupted("")
    if result.reason == "nan":
        last = result.last_checkpoint
        raise AlmError(
            f"training stopped at step {result.step}: the loss or gradients were not finite for "
            f"{plan.config.train.max_bad_steps} steps in a row",
            hint=(f"the last good checkpoint is {last}; " if last else "")
            + "lower train.lr, raise train.warmup_steps or set train.grad_clip, and start a new run",
        )
    best = f", best val loss {result.best_val_loss:.4f}" if result.best_val_loss is not None else ""
    console.print(f"[green]done:[/] {run.name} trained to step {result.step}{best}")
    saved = ", ".join(p.name for p in (run.checkpoint("last"), run.checkpoint("best")) if p.is_file())
    console.print(f"  run directory  {run.path}")
    console.print(f"  checkpoints    {run.checkpoints_dir}/ ({saved})")
    console.print(f"  events         {run.events_path}")
    prompt = plan.config.train.sample_prompt.strip()
    console.print("next:")
    console.print(f"  alm sample {plan.run_ref}" + (f" --prompt {shlex.quote(prompt)}" if prompt else ""))
    console.print("  alm runs list")
    console.print(f"  alm resume {plan.run_ref} --set train.steps={result.total_steps * 2}   # train longer")
