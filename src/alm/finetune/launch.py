"""Turning `alm sft` / `alm dpo` arguments (and `alm resume` of a fine-tuning run) into a `RunPlan`.

A fine-tuning run starts from a parent run's checkpoint (best.pt when it has one, else last.pt, unless told), with
the parent's model config and weights, the fine-tuning train preset, and the parent's tokenizer — extended with
the chat tokens when it lacks them (`alm.chat.vocab.ensure_chat_vocab`: new embedding rows, recorded in the run).
Every refusal (unknown parent, no checkpoint, an existing run, malformed or too-long data) comes before the run
directory is touched; the extended tokenizer is written there only once everything has been checked.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path
from typing import Any, cast

from rich.console import Console
from rich.markup import escape

from alm.config import build, qualify_overrides, read_yaml, to_dict
from alm.errors import ConfigError, DataError, UsageError
from alm.finetune.config import FinetuneRunConfig, Mode
from alm.finetune.data import ChatData, load_chat_data
from alm.finetune.objectives import objective_factory
from alm.rundir import DEFAULT_RUNS_ROOT, RunDir, resolve_run_dir, run_path
from alm.tokenizer.tokenizer import META_FILE
from alm.train import checkpoint as ckpt_io
from alm.train.config import PRESETS as TRAIN_PRESETS
from alm.train.launch import RunPlan, claimed
from alm.train.parent import check_not_parent, load_parent
from alm.train.run_config import check_resume_changes, finalize

WHAT = {"sft": "conversations", "dpo": "preference pairs"}


def plan_finetune(
    mode: Mode,
    parent: str,
    data: str | Path,
    *,
    run: str | None = None,
    checkpoint: str | None = None,
    val_data: str | Path | None = None,
    val_fraction: float | None = None,
    beta: float | None = None,
    train: str | None = None,
    overrides: list[str] | None = None,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    console: Console | None = None,
) -> RunPlan:
    """`alm sft` / `alm dpo`: a new run `run` (default PARENT-MODE) starting from `parent`'s weights."""
    if val_data is not None and val_fraction is not None:
        raise UsageError(
            "--val-fraction holds out part of --data; with --val-data nothing is", hint="give one"
        )
    parent_dir = resolve_run_dir(parent, runs_root)
    target = RunDir(run_path(run or f"{parent_dir.name}-{mode}", runs_root))
    check_not_parent(target, parent_dir)
    with claimed(target, "wait for it to finish, or choose another --run NAME") as lock:
        if target.is_populated():
            raise UsageError(
                f"run {target.name} already exists ({target.path})",
                hint=f"continue it with `alm resume {target.name}`, or choose another --run NAME",
            )
        source = load_parent(parent_dir, checkpoint, flag="--checkpoint", purpose="fine-tune")
        model, tokenizer = source.model, source.tokenizer
        finetune: dict[str, Any] = {
            "mode": mode,
            "data": str(Path(data).expanduser().resolve()),
            "val_data": str(Path(val_data).expanduser().resolve()) if val_data is not None else None,
        }
        finetune.update({k: v for k, v in (("val_fraction", val_fraction), ("beta", beta)) if v is not None})
        with tempfile.TemporaryDirectory() as staging:
            from alm.chat.vocab import ensure_chat_vocab

            # The parent's tokenizer, or a copy with the chat tokens appended (and `model` grown to match).
            tokenizer, resized = ensure_chat_vocab(model, tokenizer, Path(staging) / "tokenizer.json")
            finetune["chat_tokens_added"] = resized.to_dict() if resized is not None else None
            train_file = TRAIN_PRESETS.path(train or mode)
            # The data section is the parent's, for the record: fine-tuning reads `finetune.data`.
            base = {
                "model": to_dict(model.config),
                "train": read_yaml(train_file),
                "data": source.config.get("data") or {},
                "init": to_dict(source.init),
                "finetune": finetune,
            }
            start = str(source.checkpoint)
            sources = {"model": start, "data": start, "init": start, "train": str(train_file)}
            sets = qualify_overrides(overrides or [], reads=("train",))
            cfg = cast(
                FinetuneRunConfig,
                finalize(build(FinetuneRunConfig, base, sets, source=sources), tokenizer.vocab_size),
            )
            chat = load_chat_data(cfg.finetune, tokenizer, _seq_len(cfg), cfg.train.seed)
            # Everything is checked: the run gets the extended tokenizer (the trainer copies a parent's own).
            tokenizer_path = Path(tokenizer.path or "")
            if resized is not None:
                for name in (target.tokenizer_path.name, META_FILE):
                    shutil.copyfile(Path(staging) / name, target.path / name)
                tokenizer_path = target.tokenizer_path
        if console is not None:
            _describe(console, cfg, source.describe(chosen=checkpoint is not None, flag="--checkpoint"), chat)
        return RunPlan(
            run=target,
            config=cfg,
            tokenizer_path=tokenizer_path,
            runs_root=Path(runs_root),
            objective=objective_factory(cfg.finetune, chat, tokenizer),
            lock=lock,
            initial_weights=source.weights_for(cfg.model),  # `model` as grown by the chat tokens, if it was
        )


def plan_finetune_resume(
    run: str,
    overrides: list[str] | None = None,
    *,
    runs_root: str | Path = DEFAULT_RUNS_ROOT,
    console: Console | None = None,
) -> RunPlan:
    """`alm resume RUN` for a fine-tuning run: its saved config (plus safe `--set train.…` changes), its data
    rendered again with its own tokenizer (the data order refuses data that changed since)."""
    from alm.tokenizer import Tokenizer

    target = resolve_run_dir(run, runs_root)
    busy = "wait for it to finish, or stop it (Ctrl+C in its terminal) and resume it then"
    with claimed(target, busy) as lock:
        last = target.checkpoint("last")
        if not last.is_file():
            raise DataError(
                f"run {target.name} has no checkpoint to resume from ({last})",
                hint=f"it stopped before its first save; remove {target.path} and start it again",
            )
        ckpt = ckpt_io.load_checkpoint(last)
        saved, step = ckpt["config"], int(ckpt["step"])
        sets = qualify_overrides(overrides or [], reads=("train",))
        cfg = build(FinetuneRunConfig, saved, sets, source=str(last))
        changes = check_resume_changes(saved, to_dict(cfg), step=step)
        tokenizer = Tokenizer.load(target.tokenizer_path)
        chat = load_chat_data(cfg.finetune, tokenizer, _seq_len(cfg), cfg.train.seed)
        if console is not None:
            console.print(f"[dim]{escape(chat.describe(WHAT[cfg.finetune.mode]))}[/]")
        return RunPlan(
            run=target,
            config=cfg,
            tokenizer_path=target.tokenizer_path,
            resume_from=last,
            changes=changes,
            runs_root=Path(runs_root),
            objective=objective_factory(cfg.finetune, chat, tokenizer),
            lock=lock,
        )


def finetune_mode(run: str, runs_root: str | Path = DEFAULT_RUNS_ROOT) -> str | None:
    """ "sft"/"dpo" for a fine-tuning run (by its config.yaml), None for any other (or no) run."""
    with contextlib.suppress(UsageError, ConfigError):
        section = read_yaml(resolve_run_dir(run, runs_root).config_path).get("finetune")
        return str(section.get("mode")) if isinstance(section, dict) else None
    return None


def _seq_len(cfg: FinetuneRunConfig) -> int:
    return cfg.train.seq_len or cfg.model.max_seq_len  # `finalize` has set it


def _describe(console: Console, cfg: FinetuneRunConfig, start: str, chat: ChatData) -> None:
    ft = cfg.finetune
    console.print(f"{ft.mode}: {escape(start)}", soft_wrap=True)
    added = ft.chat_tokens_added
    if added:
        console.print(
            f"  the parent's tokenizer lacks the chat tokens: added {' '.join(added['added_tokens'])} as ids "
            f"{', '.join(map(str, added['new_ids']))}; embedding rows {added['old_rows']} -> {added['new_rows']} "
            "(new rows start at the mean of the trained ones)",
            soft_wrap=True,
            markup=False,
        )
    console.print(f"  data: {escape(chat.describe(WHAT[ft.mode]))}", soft_wrap=True)
    if ft.mode == "dpo":
        console.print(
            f"  reference: the starting checkpoint (beta {ft.beta:g}); its log-probs for every pair are "
            "computed once, before the first step",
            soft_wrap=True,
        )
    console.print(f"  train: {cfg.train.steps} steps, batch {cfg.train.batch_size}, lr {cfg.train.lr:g}")


__all__ = ["finetune_mode", "plan_finetune", "plan_finetune_resume"]
