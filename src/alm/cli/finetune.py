"""`alm sft` and `alm dpo`: fine-tune a trained run on chat data into a new run.

Both run the same trainer as `alm train` (live panel, events.jsonl, checkpoints, Ctrl+C and `alm resume`); what
differs is the objective, which `alm.finetune` builds.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from alm.cli.common import (
    DeviceOption,
    console,
    handle_errors,
    overrides,
    progress_bar,
    set_option,
    train_option,
)
from alm.cli.complete import complete_run
from alm.cli.help import examples
from alm.cli.run_command import (
    ProgressOption,
    RunsRootOption,
    device_overrides,
    plan_run,
    progress_mode,
    run_plan,
)

if TYPE_CHECKING:
    from alm.finetune.config import Mode
    from alm.train.launch import RunPlan

ParentArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN",
        help="The trained run to start from: a name under --runs-dir, or a directory.",
        autocompletion=complete_run,
    ),
]
NewRunOption = Annotated[
    str | None,
    typer.Option("--run", "-r", help="Name of the new run (or a path); default: RUN-sft / RUN-dpo."),
]
CheckpointOption = Annotated[
    str | None,
    typer.Option(
        "--checkpoint",
        "-c",
        help="RUN's checkpoint to start from: best, last, step-N or N; default best, else last.",
    ),
]
ValDataOption = Annotated[
    Path | None, typer.Option("--val-data", help="Held-out JSONL for validation instead of part of --data.")
]
ValFractionOption = Annotated[
    float | None,
    typer.Option("--val-fraction", help="Share of --data held out for validation (default 0.1; 0: none)."),
]
TrainSetOption = Annotated[list[str] | None, set_option("train.steps=200")]  # fine-tuning reads train.* only
TrainPresetOption = Annotated[
    str | None,
    train_option("Train preset or YAML file; default: sft / dpo."),
]


def next_commands(plan: RunPlan) -> list[str]:
    """What to do with a finished fine-tuning run."""
    from alm.finetune.config import FinetuneRunConfig

    run = plan.run_ref
    commands = [f"alm chat {run}", f"alm eval {run} --task arithmetic"]
    if isinstance(plan.config, FinetuneRunConfig) and plan.config.finetune.mode == "sft":
        commands.append(f"alm dpo {run} --data PREFS.jsonl")
    return commands


def _finetune(
    mode: Mode, parent: str, data: Path, device: str, sets: list[str], progress: str | None, **kw
) -> None:
    from alm.finetune.launch import plan_finetune

    mode_ = progress_mode(progress)
    sets = device_overrides(device, sets)
    plan = plan_run(lambda: plan_finetune(mode, parent, data, overrides=sets, console=console, **kw))
    run_plan(plan, mode_, next_commands(plan))


@handle_errors
def sft(
    parent: ParentArgument,
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help='JSONL, one conversation a line: {"messages": [...]} or {"prompt", "completion"}.',
        ),
    ],
    run: NewRunOption = None,
    checkpoint: CheckpointOption = None,
    val_data: ValDataOption = None,
    val_fraction: ValFractionOption = None,
    train_config: TrainPresetOption = None,
    device: DeviceOption = "auto",
    set_: TrainSetOption = None,
    progress: ProgressOption = None,
    runs_dir: RunsRootOption = Path("runs"),
) -> None:
    """Supervised fine-tuning: teach a trained run to answer in the chat format (loss on assistant tokens only).

    Starts a new run from RUN's weights (adding the chat tokens to its tokenizer if it lacks them). Ctrl+C stops after the current step and saves; `alm resume NEW` continues exactly where it stopped.
    """
    _finetune(
        "sft",
        parent,
        data,
        device,
        overrides(set_),
        progress,
        run=run,
        checkpoint=checkpoint,
        val_data=val_data,
        val_fraction=val_fraction,
        train=train_config,
        runs_root=runs_dir,
    )


@handle_errors
def dpo(
    parent: ParentArgument,
    data: Annotated[
        Path,
        typer.Option(
            "--data", "-d", help='JSONL, one preference pair a line: {"prompt", "chosen", "rejected"}.'
        ),
    ],
    beta: Annotated[
        float | None,
        typer.Option("--beta", help="How strongly the run is held to its starting point (default 0.1)."),
    ] = None,
    run: NewRunOption = None,
    checkpoint: CheckpointOption = None,
    val_data: ValDataOption = None,
    val_fraction: ValFractionOption = None,
    train_config: TrainPresetOption = None,
    device: DeviceOption = "auto",
    set_: TrainSetOption = None,
    progress: ProgressOption = None,
    runs_dir: RunsRootOption = Path("runs"),
) -> None:
    """Direct preference optimization: prefer the chosen answers over the rejected ones, relative to RUN.

    The reference is RUN's checkpoint; its log-probs for every pair are computed once at the start and kept in the new run's checkpoints.
    """
    _finetune(
        "dpo",
        parent,
        data,
        device,
        overrides(set_),
        progress,
        beta=beta,
        run=run,
        checkpoint=checkpoint,
        val_data=val_data,
        val_fraction=val_fraction,
        train=train_config,
        runs_root=runs_dir,
    )


def task_eval(
    run: str,
    task: str,
    *,
    limit: int | None,
    checkpoint: str | None,
    device: str,
    as_json: bool,
    runs_dir: Path | None = None,
) -> None:
    """`alm eval RUN --task NAME|FILE`: the accuracy of a chat run on a task (`alm.chat.tasks`)."""
    import json
    import sys

    from alm.chat.tasks import evaluate_task, resolve_task
    from alm.cli.sample import load_for_inference

    spec = resolve_task(task)  # a bad name or file fails before the model loads
    model, tokenizer, _config, step, path = load_for_inference(run, checkpoint, device, runs_dir=runs_dir)
    device_ = next(model.parameters()).device
    with progress_bar(spec.name) as progress:
        result = evaluate_task(model, tokenizer, spec, device=device_, limit=limit, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps({"checkpoint": str(path), "step": step, **result.to_dict()}) + "\n")
        return
    kind = "exact match of greedy replies" if result.kind == "exact" else "multiple choice by log-likelihood"
    console.print(
        f"[bold]{escape(str(path))}[/] (step {step}) on task {escape(result.task)} ({kind})", soft_wrap=True
    )
    console.print(f"  accuracy {result.accuracy:.1%} ({result.correct}/{result.examples})")


def register(app: typer.Typer) -> None:
    app.command(
        "sft",
        rich_help_panel="Train",
        epilog=examples(
            "alm sft micro --data data/chat/sft.jsonl  # -> runs/micro-sft",
            "alm sft micro --data my-chats.jsonl --run chat-1 --set train.steps=200",
        ),
    )(sft)
    app.command(
        "dpo",
        rich_help_panel="Train",
        epilog=examples(
            "alm dpo micro-sft --data data/chat/prefs-train.jsonl --val-data data/chat/prefs-test.jsonl",
            "alm dpo micro-sft --data prefs.jsonl --beta 0.2",
        ),
    )(dpo)
