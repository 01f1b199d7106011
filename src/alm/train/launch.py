"""Turning `alm train` / `alm resume` arguments into a `RunPlan`: configs resolved, data built, run directory
decided — with every refusal (existing run, mistyped name, incompatible resume, a run that cannot fit in memory)
made before anything is touched.

The first thing a plan does with the run directory is take its lock (`claim_run`): from then until the plan is
released (the CLI holds it until training ends) or the process dies, a second `alm train`/`alm resume` of the
same run exits 2 naming this process, and `alm runs`/the dashboard see the run as live. Only rank 0 writes a
run, so only rank 0 takes its lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from alm import locks
from alm.config import to_dict
from alm.errors import DataError, UsageError
from alm.rundir import DEFAULT_RUNS_ROOT, RUN_FILES, RunDir, default_run_name, resolve_run_dir, run_path
from alm.train import checkpoint as ckpt_io
from alm.train.dist import is_main_process, rank_info, relaunch, resume_grad_accum
from alm.train.memory import check_fits
from alm.train.parent import load_parent, resolve_init_from, split_init_arg
from alm.train.run_config import (
    DEFAULT_PRESET,
    RunConfig,
    check_resume_changes,
    finalize,
    load_run_config,
    run_config_from_dict,
)

if TYPE_CHECKING:
    import torch

    from alm.train.objective import ObjectiveFactory


@dataclass(frozen=True)
class RunPlan:
    """Everything decided before a run starts; `alm.train.trainer.Trainer` carries it out."""

    run: RunDir
    config: RunConfig  # finalized: vocab_size and seq_len are set
    tokenizer_path: Path
    packed_dir: Path | None = None  # pretraining's shards (fine-tuning reads what its objective names)
    resume_from: Path | None = None  # last.pt when resuming
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # config changes on resume
    command: list[str] = field(default_factory=lambda: list(sys.argv))
    runs_root: Path = DEFAULT_RUNS_ROOT
    objective: ObjectiveFactory | None = None  # what is trained (alm.train.objective); None: pretraining
    lock: locks.FileLock | None = field(default=None, compare=False, repr=False)  # the run's, while planned
    # A parent run's weights (alm.train.parent), loaded into the model on a fresh start; None: random init.
    initial_weights: dict[str, torch.Tensor] | None = field(default=None, compare=False, repr=False)

    def release(self) -> None:
        """Let the run's lock go (the process ending does too)."""
        if self.lock is not None:
            self.lock.release()

    def __enter__(self) -> RunPlan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    @property
    def run_ref(self) -> str:
        return run_ref(self.run, self.runs_root)

    @property
    def resume_command(self) -> str:
        return relaunch(f"alm resume {self.run_ref}")  # with --nproc N under torchrun


def run_ref(run: RunDir, runs_root: str | Path) -> str:
    """How commands name a run: its name when it lives under the runs root, else its path."""
    in_root = run.path.resolve().parent == Path(runs_root).resolve()
    return shlex.quote(run.name if in_root else str(run.path))


def prepare_data(cfg: RunConfig, console: Console | None = None) -> tuple[Path, Path, int]:
    """Build whatever of the dataset is missing; (tokenizer.json, packed dir, vocabulary size)."""
    from alm.data.loader import PackedDataset
    from alm.data.pipeline import ensure_dataset

    paths = ensure_dataset(cfg.data, console=console)
    dataset = PackedDataset.open(paths.packed_dir, split="train")
    return Path(paths.tokenizer_path), Path(paths.packed_dir), int(dataset.vocab_size)


def claim_run(run: RunDir, hint: str) -> locks.FileLock | None:
    """Take `run`'s lock for this process (rank 0; other ranks write nothing): a LockedError (exit 2) naming
    the holder if another process is writing it."""
    if not is_main_process():
        return None
    return locks.acquire(run.lock_path, f"run {run.name}", hint=hint)


@contextlib.contextmanager
def claimed(run: RunDir, hint: str) -> Iterator[locks.FileLock | None]:
    """`claim_run` for the span of planning: should planning fail, the lock is let go again, and the lock file,
    run directory and runs root removed if taking the lock is what created them."""
    created = [path for path in (run.path, *run.path.parents) if not path.exists()]  # deepest first
    new_lock = not run.lock_path.exists()
    lock = claim_run(run, hint)
    try:
        yield lock
    except BaseException:
        if lock is not None:
            lock.release(remove=new_lock)
        for path in created:
            with contextlib.suppress(OSError):  # one that holds something else stays
                path.rmdir()
        raise


def _check_memory(cfg: RunConfig, *, resuming: bool = False) -> None:
    # Under torchrun the states are sharded or replicated per process: the allocator is left to judge.
    if rank_info()[1] == 1:
        check_fits(cfg, resuming=resuming)


def _clear_run(run: RunDir) -> None:
    """Remove what alm wrote into a run (its files and checkpoints), never anything else found there."""
    for path in [*(run.path / name for name in RUN_FILES), *run.checkpoint_files()]:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
    with contextlib.suppress(OSError):  # kept if it holds files of someone else's
        run.checkpoints_dir.rmdir()


def default_run_name_for(model: str | None, init_from: str | None = None) -> str:
    """A run's name when none is given: <timestamp>-<model preset>, or <timestamp>-<parent run> for a run
    started from another's weights."""
    if init_from is not None:
        return default_run_name(Path(split_init_arg(init_from)[0]).name)
    return default_run_name(Path(str(model or DEFAULT_PRESET)).stem)


def plan_train(
    model: str | None = None,
    train: str | None = None,
    data: str | None = None,
    overrides: list[str] | None = None,
    run: str | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    init_from: str | None = None,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    console: Console | None = None,
) -> RunPlan:
    """`alm train`: a fresh run (the default), or `--resume` / `--overwrite` of an existing one. `init_from`
    (`RUN` or `RUN@CHECKPOINT`) starts the fresh run from that run's weights, model and tokenizer
    (`alm.train.parent`): continued pretraining, with a fresh optimizer and schedule."""
    overrides = list(overrides or [])
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other", hint="pick one")
    if init_from is not None:
        _check_init_from(model, resume)
    if resume:
        if run is None:
            raise UsageError("--resume needs the run to continue", hint="alm train --resume --run NAME")
        given = any(v is not None for v in (model, train, data))
        expected = load_run_config(model, train, data, overrides) if given else None
        return plan_resume(run, overrides, runs_root=runs_root, console=console, expected=expected)

    cfg = load_run_config(model, train, data, overrides) if init_from is None else None
    target = RunDir(run_path(run or default_run_name_for(model, init_from), runs_root))
    start = resolve_init_from(init_from, target, runs_root) if init_from is not None else None
    busy = "wait for it to finish or stop it (Ctrl+C in its terminal), or choose another --run NAME"
    with claimed(target, busy) as lock:
        check_new_run(target, overwrite=overwrite)
        parent = None
        if start is not None:
            parent = load_parent(*start, flag="--init-from RUN@CHECKPOINT")
            cfg = load_run_config(None, train, data, overrides, start=parent.start)
            if console is not None:
                described = parent.describe(chosen=start[1] is not None, flag="RUN@CHECKPOINT")
                console.print(f"init: {described}", markup=False, soft_wrap=True)
        assert cfg is not None  # from the presets above, or from the parent
        tokenizer_path, packed_dir, vocab_size = prepare_data(cfg, console)
        cfg = finalize(cfg, vocab_size)
        _check_memory(cfg)
        weights = parent.weights_for(cfg.model) if parent is not None else None
        if overwrite and target.is_populated():
            _clear_run(target)
        return RunPlan(
            run=target,
            config=cfg,
            tokenizer_path=tokenizer_path,
            packed_dir=packed_dir,
            runs_root=Path(runs_root),
            lock=lock,
            initial_weights=weights,
        )


def _check_init_from(model: str | None, resume: bool) -> None:
    if resume:
        raise UsageError(
            "--init-from starts a new run from another's weights; --resume continues a run", hint="pick one"
        )
    if model is not None:
        raise UsageError(
            "--init-from takes the model from RUN; --model would choose another",
            hint="drop --model (single settings still change with --set model.KEY=VALUE)",
        )


def check_new_run(target: RunDir, *, overwrite: bool) -> None:
    """A new run may not land on an existing one unless `overwrite`, nor ever on a directory alm did not write."""
    if not target.is_populated():
        return
    if not target.is_alm_run():
        raise UsageError(
            f"{target.path} is not an alm run directory, yet holds {_found(target)}; alm will not write over it",
            hint="choose another --run NAME",
        )
    if not overwrite:
        raise UsageError(
            f"run {target.name} already exists ({target.path})",
            hint=f"continue it with `alm resume {target.name}` (or --resume), start it over with --overwrite, "
            "or choose another --run NAME",
        )


def _found(run: RunDir) -> str:
    names = [p.name for p in (run.config_path, run.events_path, run.checkpoints_dir) if p.exists()]
    return " and ".join(f"a {n}" if "." in n else f"a {n}/ folder" for n in names)


def _fit_world_size(
    saved: dict[str, Any], cfg: RunConfig, saved_world_size: int
) -> tuple[dict[str, Any], RunConfig, dict[str, tuple[Any, Any]]]:
    """On another number of processes than it was saved on, a run keeps its global batch (grad_accum takes up the
    difference) and a `train.parallel` that cannot run there becomes auto; values given with --set are left to
    check_resume_changes, which judges them against the adjusted ones."""
    world_size = rank_info()[1]
    if saved_world_size == world_size:
        return saved, cfg, {}
    train, fitted = saved["train"], {}
    if cfg.train.grad_accum == train["grad_accum"]:
        fitted["grad_accum"] = resume_grad_accum(train, saved_world_size, world_size)
    parallel = train.get("parallel", "auto")
    if cfg.train.parallel == parallel and (parallel == "none") == (world_size > 1):
        fitted["parallel"] = "auto"  # fsdp or ddp saved, now one process; or none saved, now several
    fitted = {key: value for key, value in fitted.items() if value != train.get(key)}
    saved = {**saved, "train": {**train, **fitted}}
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, **fitted))
    return saved, cfg, {f"train.{key}": (train.get(key), value) for key, value in fitted.items()}


def plan_resume(
    run: str,
    overrides: list[str] | None = None,
    *,
    checkpoint: str = "last",
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    console: Console | None = None,
    expected: RunConfig | None = None,
) -> RunPlan:
    """`alm resume RUN`: continue from last.pt (or `checkpoint`: best, step-N) with the run's saved config plus
    safe `--set` changes."""
    target = resolve_run_dir(run, runs_root)
    busy = "wait for it to finish, or stop it (Ctrl+C in its terminal) and resume it then"
    with claimed(target, busy) as lock:
        start = resume_point(target, checkpoint)
        ckpt: dict[str, Any] = ckpt_io.load_checkpoint(start)
        saved = ckpt["config"]
        if "source" in saved:  # `alm import hf`: weights without a training run to continue
            ref = run_ref(target, runs_root)
            raise UsageError(
                f"run {target.name} was imported ({saved['source'].get('from')}): it holds weights, not a "
                "training run to continue",
                hint=f"train on from its weights in a new run: alm train --init-from {ref} --run NEW",
            )
        if "finetune" in saved:  # its data and objective are alm.finetune's (plan_finetune_resume)
            raise UsageError(
                f"run {target.name} is a fine-tuning run ({saved['finetune'].get('mode')})",
                hint=f"continue it with `alm resume {target.name}`",
            )
        step = int(ckpt["step"])
        cfg = expected or run_config_from_dict(saved, source=str(start), overrides=overrides or [])
        saved_world_size = int((ckpt.get("loader") or {}).get("world_size", 1))
        saved, cfg, fitted = _fit_world_size(saved, cfg, saved_world_size)
        # Refuse incompatible changes before touching the data; check again once the data decided the vocabulary.
        check_resume_changes(saved, to_dict(finalize(cfg, int(saved["model"]["vocab_size"]))), step=step)
        tokenizer_path, packed_dir, vocab_size = prepare_data(cfg, console)
        cfg = finalize(cfg, vocab_size)
        changes = {**check_resume_changes(saved, to_dict(cfg), step=step), **fitted}
        _check_memory(cfg, resuming=True)
        return RunPlan(
            run=target,
            config=cfg,
            tokenizer_path=tokenizer_path,
            packed_dir=packed_dir,
            resume_from=start,
            changes=changes,
            runs_root=Path(runs_root),
            lock=lock,
        )


def resume_point(run: RunDir, which: str = "last") -> Path:
    """The checkpoint a resume starts from: `which` (last, best, step-N, N) of `run`, which must exist."""
    path = run.checkpoint(which)
    if path.is_file():
        return path
    saved = [p.name for p in run.checkpoint_files() if p.suffix == ".pt" and p.is_file()]
    if not saved:
        raise DataError(
            f"run {run.name} has no checkpoint to resume from ({path})",
            hint=f"it stopped before its first save; start it again with `alm train --run {run.name} --overwrite`",
        )
    raise UsageError(
        f"run {run.name} has no checkpoint {path.name}",
        hint=f"pick one of {', '.join(saved)} with --checkpoint (last, best or step-N)",
    )
