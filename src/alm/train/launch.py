"""Turning `alm train` / `alm resume` arguments into a `RunPlan`: configs resolved, data built, run directory
decided — with every refusal (existing run, mistyped name, incompatible resume) made before anything is touched.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from rich.console import Console

from alm.errors import DataError, UsageError
from alm.train import checkpoint as ckpt_io
from alm.train.rundir import DEFAULT_RUNS_ROOT, RunDir, default_run_name, resolve_run_dir, run_path
from alm.train.session import RunConfig, check_resume_changes, finalize, load_run_config, run_config_from_dict
from alm.train.trainer import RunPlan

# What the trainer writes into a run directory; `--overwrite` removes exactly these and nothing else.
RUN_FILES = ("config.yaml", "tokenizer.json", "tokenizer.meta.json", "events.jsonl", "train.pid")


def prepare_data(cfg: RunConfig, console: Console | None = None) -> tuple[Path, Path, int]:
    """Build whatever of the dataset is missing; (tokenizer.json, packed dir, vocabulary size)."""
    from alm.data.loader import PackedDataset
    from alm.data.pipeline import ensure_dataset

    paths = ensure_dataset(cfg.data, console=console)
    dataset = PackedDataset.open(paths.packed_dir, split="train")
    return Path(paths.tokenizer_path), Path(paths.packed_dir), int(dataset.vocab_size)


def _refuse_live(run: RunDir) -> None:
    if run.is_live():
        raise UsageError(
            f"run {run.name} is being trained right now (pid {run.read_pid()})",
            hint="wait for it to finish or stop it first (Ctrl+C in its terminal)",
        )


def _clear_run(run: RunDir) -> None:
    for name in RUN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (run.path / name).unlink()
    if run.checkpoints_dir.is_dir():
        shutil.rmtree(run.checkpoints_dir)


def plan_train(
    model: str | None = None,
    train: str | None = None,
    data: str | None = None,
    overrides: list[str] | None = None,
    run: str | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    console: Console | None = None,
) -> RunPlan:
    """`alm train`: a fresh run (the default), or `--resume` / `--overwrite` of an existing one."""
    overrides = list(overrides or [])
    if resume and overwrite:
        raise UsageError("--resume and --overwrite contradict each other", hint="pick one")
    if resume:
        if run is None:
            raise UsageError("--resume needs the run to continue", hint="alm train --resume --run NAME")
        given = any(v is not None for v in (model, train, data))
        expected = load_run_config(model, train, data, overrides) if given else None
        return plan_resume(run, overrides, runs_root=runs_root, console=console, expected=expected)

    cfg = load_run_config(model, train, data, overrides)
    target = RunDir(run_path(run or default_run_name(cfg.preset), runs_root))
    if target.is_populated():
        _refuse_live(target)
        if not overwrite:
            raise UsageError(
                f"run {target.name} already exists ({target.path})",
                hint=f"continue it with `alm resume {target.name}` (or --resume), start it over with --overwrite, "
                "or choose another --run NAME",
            )
    tokenizer_path, packed_dir, vocab_size = prepare_data(cfg, console)
    cfg = finalize(cfg, vocab_size)
    if overwrite and target.is_populated():
        _clear_run(target)
    return RunPlan(
        run=target,
        config=cfg,
        tokenizer_path=tokenizer_path,
        packed_dir=packed_dir,
        runs_root=Path(runs_root),
    )


def plan_resume(
    run: str,
    overrides: list[str] | None = None,
    *,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    console: Console | None = None,
    expected: RunConfig | None = None,
) -> RunPlan:
    """`alm resume RUN`: continue from last.pt with the run's saved config plus safe `--set` changes."""
    target = resolve_run_dir(run, runs_root)
    _refuse_live(target)
    last = target.checkpoint("last")
    if not last.is_file():
        raise DataError(
            f"run {target.name} has no checkpoint to resume from ({last})",
            hint=f"it stopped before its first save; start it again with `alm train --run {target.name} --overwrite`",
        )
    ckpt: dict[str, Any] = ckpt_io.load_checkpoint(last)
    saved = ckpt["config"]
    step = int(ckpt["step"])
    cfg = expected or run_config_from_dict(saved, source=str(last), overrides=overrides or [])
    # Refuse incompatible changes before touching the data; check again once the data decided the vocabulary.
    check_resume_changes(saved, finalize(cfg, int(saved["model"]["vocab_size"])).to_dict(), step=step)
    tokenizer_path, packed_dir, vocab_size = prepare_data(cfg, console)
    cfg = finalize(cfg, vocab_size)
    changes = check_resume_changes(saved, cfg.to_dict(), step=step)
    return RunPlan(
        run=target,
        config=cfg,
        tokenizer_path=tokenizer_path,
        packed_dir=packed_dir,
        resume_from=last,
        changes=changes,
        runs_root=Path(runs_root),
    )
