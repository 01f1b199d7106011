"""`alm train` and `alm resume`: train a model into runs/NAME, or continue an interrupted run."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, TypeGuard

import typer

from alm.cli.common import (
    DeviceOption,
    SetOption,
    console,
    handle_errors,
    model_option,
    overrides,
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
    from alm.rundir import RunDir
    from alm.train.run_config import RunConfig

NprocOption = Annotated[
    int | None,
    typer.Option(
        "--nproc",
        help="Train on N processes of this node under torchrun (DDP; FSDP2 with --set train.parallel=fsdp). "
        "train.batch_size stays per process.",
    ),
]
PortOption = Annotated[
    int | None, typer.Option("--port", help="Rendezvous port for --nproc (default: a free one).")
]


def register(app: typer.Typer) -> None:
    app.command(
        "train",
        rich_help_panel="Train",
        epilog=examples(
            "alm train  # micro on the built-in corpus: a few minutes on a CPU",
            "alm train --model pico --train default --run pico-1",
            "alm train --data my-corpus.yaml --set train.lr=1e-3",
            "alm train --model configs/ablations/alibi.yaml --run alibi --set train.steps=500",
            "alm train --nproc 2  # two processes of this machine (torchrun, DDP)",
            "alm train --init-from imported --run more  # continue pretraining an imported model",
        ),
    )(train)
    app.command(
        "resume",
        rich_help_panel="Train",
        epilog=examples(
            "alm resume pico-1  # from last.pt, exactly where it stopped",
            "alm resume pico-1 --set train.steps=10000  # train longer",
            "alm resume pico-1 --checkpoint best",
        ),
    )(resume)


@handle_errors
def train(
    model: Annotated[
        str | None,
        model_option(),
    ] = None,
    train_config: Annotated[
        str | None,
        train_option("Train preset (micro, default) or YAML file."),
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
    init_from: Annotated[
        str | None,
        typer.Option(
            "--init-from",
            metavar="RUN[@CHECKPOINT]",
            help="Start from another run's weights, model and tokenizer (continued pretraining; an imported "
            "model too), with a fresh optimizer and schedule. CHECKPOINT: best, last or step-N (default "
            "best, else last).",
            autocompletion=complete_run,
        ),
    ] = None,
    progress: ProgressOption = None,
    runs_dir: RunsRootOption = Path("runs"),
    nproc: NprocOption = None,
    port: PortOption = None,
) -> None:
    """Train a model: with no arguments, the micro preset on the built-in Shakespeare corpus (a few minutes on a CPU).

    Builds the cleaned text, tokenizer and shards first when they are missing. Ctrl+C stops after the current step and saves a checkpoint; `alm resume RUN` continues exactly where it stopped. --nproc N trains on N processes (torchrun), with the loss curve of one process.
    """
    from alm.train.dist import supervised
    from alm.train.launch import default_run_name_for, plan_train
    from alm.train.parallel import process_group
    from alm.train.signals import interrupt_on_sigterm

    mode = progress_mode(progress)
    sets = device_overrides(device, overrides(set_))
    if _several(nproc):
        from alm.rundir import RunDir, run_path
        from alm.train.run_config import load_run_config

        if resume and run:
            _launch(nproc, port, *_saved_config(run, runs_dir, sets))
        name = run or default_run_name_for(model, init_from)  # chosen here: the processes must agree on it
        cfg = load_run_config(model, train_config, data, sets)
        _launch(nproc, port, cfg, RunDir(run_path(name, runs_dir)), name=None if run else name)
    # Under torchrun rank 0 plans (and builds the data) first.
    with interrupt_on_sigterm(supervised=supervised()), process_group():
        plan = plan_run(
            lambda: plan_train(
                model,
                train_config,
                data,
                sets,
                run,
                resume=resume,
                overwrite=overwrite,
                init_from=init_from,
                runs_root=runs_dir,
                console=console,
            )
        )
        run_plan(plan, mode)


@handle_errors
def resume(
    run: Annotated[
        str,
        typer.Argument(
            metavar="RUN", help="Run name under --runs-dir, or a run directory.", autocompletion=complete_run
        ),
    ],
    set_: Annotated[list[str] | None, set_option("train.steps=10000")] = None,
    device: DeviceOption = "auto",
    progress: ProgressOption = None,
    runs_dir: RunsRootOption = Path("runs"),
    nproc: NprocOption = None,
    port: PortOption = None,
    checkpoint: Annotated[
        str,
        typer.Option(
            "--checkpoint", "-c", help="The checkpoint of the run to continue from: last, best or step-N."
        ),
    ] = "last",
) -> None:
    """Continue a run from its last checkpoint (safe changes: --set train.steps=N, intervals, device).

    On another number of processes (--nproc) than it was saved on, the run keeps its global batch: grad_accum takes up the difference."""
    from alm.cli.finetune import next_commands
    from alm.errors import UsageError
    from alm.finetune.launch import finetune_mode, plan_finetune_resume
    from alm.train.dist import supervised
    from alm.train.launch import plan_resume
    from alm.train.parallel import process_group
    from alm.train.signals import interrupt_on_sigterm

    mode = progress_mode(progress)
    sets = device_overrides(device, overrides(set_))
    if _several(nproc):
        _launch(nproc, port, *_saved_config(run, runs_dir, sets))
    # Under torchrun rank 0 plans while the others wait.
    with interrupt_on_sigterm(supervised=supervised()), process_group():
        if finetune_mode(run, runs_dir):  # `alm sft` / `alm dpo` runs rebuild their own data and objective
            if checkpoint != "last":
                raise UsageError("--checkpoint: a fine-tuning run resumes from its last.pt only")
            plan = plan_run(lambda: plan_finetune_resume(run, sets, runs_root=runs_dir, console=console))
            run_plan(plan, mode, next_commands(plan))
            return
        plan = plan_run(
            lambda: plan_resume(run, sets, checkpoint=checkpoint, runs_root=runs_dir, console=console)
        )
        run_plan(plan, mode)


def _several(nproc: int | None) -> TypeGuard[int]:
    """Whether --nproc asks for several processes (checked first: at least 1, not already under torchrun)."""
    if nproc is None:
        return False
    from alm.train.torchrun import check_nproc

    check_nproc(nproc)
    return nproc > 1


def _saved_config(run: str, runs_dir: Path, sets: list[str]) -> tuple[RunConfig, RunDir]:
    """An existing run's config with the --set changes, for the checks made before launching torchrun."""
    from alm.config import RUN_SECTIONS, read_yaml
    from alm.rundir import resolve_run_dir
    from alm.train.run_config import run_config_from_dict

    target = resolve_run_dir(run, runs_dir)
    saved = read_yaml(target.config_path) if target.config_path.is_file() else {}
    sections = {key: value for key, value in saved.items() if key in RUN_SECTIONS}
    return run_config_from_dict(sections, source=str(target.config_path), overrides=sets), target


def _launch(nproc: int, port: int | None, cfg: RunConfig, run: RunDir, name: str | None = None) -> NoReturn:
    """This command on `nproc` processes of this node under torchrun; exits with its status (130: stopped)."""
    from alm.train.parallel import check_launch
    from alm.train.torchrun import check_port, launch

    check_launch(cfg.train.parallel, cfg.train.device, nproc)
    check_port(port)
    raise typer.Exit(launch(sys.argv[1:], nproc, port, run, name=name))
