"""Checkpoints of sharded (FSDP2) runs: the training state through torch.distributed.checkpoint (DCP), committed
by rank 0's `last.pt`, which also holds the consolidated weights.

```
checkpoints/dcp-step-000120/   DCP: .metadata + a file per rank; the model and optimizer shards
checkpoints/last.pt            the usual format (docs/CONTRACTS.md): consolidated weights, trainer state, and
                               "sharded": {"path": "dcp-step-000120", "world_size": 2}; "optimizer" is empty
```
No rank ever holds the whole optimizer state: every rank writes its own shards. The weights are gathered to rank
0's CPU, a tensor at a time, so that `last.pt` stays a single-file checkpoint: `alm sample`, `alm eval`, `alm
export` and the dashboard read FSDP runs like any other, and `best.pt`/`step-N.pt` (names of a `last.pt`) name
their own DCP directory.

Atomicity: every rank writes into `.tmp-dcp-step-N/`; `dcp.save` returns once every rank has written and rank 0
has written `.metadata`, then rank 0 renames the directory into place and only after that replaces `last.pt`. So
`last.pt` always names a complete directory, whatever kills which process when; directories no checkpoint names
any more are removed after the commit.

Resuming reshards: DCP loads the shards into whatever this run's ranks hold (FSDP2 shards for any world size, or
whole tensors for DDP and one process), so a run saved on 2 processes continues on 1 or 4.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
    set_state_dict,
)
from torch.distributed.checkpoint.state_dict_loader import load as dcp_load
from torch.distributed.checkpoint.state_dict_saver import save as dcp_save

from alm.errors import DataError
from alm.fileio import TMP_PREFIX, fsync_dir
from alm.rundir import SHARDED_PREFIX


def sharded_dir_name(step: int) -> str:
    return f"{SHARDED_PREFIX}step-{step:06d}"


class ShardedCheckpoints:
    """Saves the DCP half of an FSDP2 run's checkpoints into `directory` (collective: every rank calls `save`)."""

    def __init__(self, directory: Path, model: nn.Module, optimizer: torch.optim.Optimizer, *, writes: bool):
        self.directory, self.model, self.optimizer, self.writes = directory, model, optimizer, writes
        self.world_size = torch.distributed.get_world_size() if torch.distributed.is_initialized() else 1
        if writes and directory.is_dir():  # before any rank can have begun a save (that needs a step first)
            for stale in directory.glob(f"{TMP_PREFIX}{SHARDED_PREFIX}*"):
                shutil.rmtree(stale, ignore_errors=True)

    def save(self, step: int) -> dict[str, Any]:
        """Write this step's shards (all ranks) and, on rank 0, move them into place; what last.pt records."""
        name = sharded_dir_name(step)
        staging = self.directory / f"{TMP_PREFIX}{name}"
        model_state, optimizer_state = get_state_dict(self.model, self.optimizer)
        dcp_save({"model": model_state, "optimizer": optimizer_state}, checkpoint_id=staging)
        if self.writes:
            final = self.directory / name
            if final.exists():  # saved twice at one step (a resume stopped at once): keep the named one
                final = self.directory / f"{name}-{os.getpid()}"
            os.replace(staging, final)
            fsync_dir(self.directory)
            name = final.name
        return {"path": name, "world_size": self.world_size}


def prune_sharded(directory: Path) -> None:
    """Remove the DCP directories in `directory` that no checkpoint file names any more (after a save replaced
    last.pt; also in a run that now continues unsharded)."""
    found = [path for path in directory.glob(f"{SHARDED_PREFIX}*") if path.is_dir()]
    if not found:
        return
    named = {referenced_dir(path) for path in directory.glob("*.pt")}
    for path in found:
        if path.name not in named:
            shutil.rmtree(path, ignore_errors=True)


def referenced_dir(checkpoint: Path) -> str | None:
    """The DCP directory a checkpoint file names (memory-mapped: its tensors are not read)."""
    with contextlib.suppress(Exception):
        ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
        return str((ckpt.get("sharded") or {}).get("path")) if isinstance(ckpt, dict) else None
    return None


def full_model_state(model: nn.Module) -> dict[str, Any]:
    """The consolidated weights of a sharded model on rank 0's CPU (collective; other ranks get an empty dict)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def load_sharded(
    checkpoint: Path, sharded: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer
) -> None:
    """Load the model and optimizer state a checkpoint's DCP directory holds into this run's (any world size)."""
    directory = checkpoint.parent / str(sharded.get("path"))
    if not (directory / ".metadata").is_file():
        raise DataError(
            f"{checkpoint} names the sharded state in {directory}, which is missing or incomplete",
            hint="resume from a checkpoint whose dcp-step-N directory is intact",
        )
    model_state, optimizer_state = get_state_dict(model, optimizer)
    state = {"model": model_state, "optimizer": optimizer_state}
    with warnings.catch_warnings():  # in one process DCP says it assumes one process: that is the intent
        warnings.filterwarnings("ignore", message=".*assuming the intent is to load in a single process")
        dcp_load(state, checkpoint_id=directory)
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])


def restore_model_and_optimizer(
    checkpoint: Path,
    ckpt: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    sharded: bool,
) -> None:
    """Weights and optimizer state from a checkpoint into this run's, whichever way each side is laid out: the
    DCP shards of an FSDP2 checkpoint (any run), or the whole tensors of last.pt into a plain, DDP or FSDP2 run."""
    if ckpt.get("sharded"):
        load_sharded(checkpoint, ckpt["sharded"], model, optimizer)
    elif sharded:  # every rank read the whole file: each keeps its own shard of it
        set_model_state_dict(model, ckpt["model"], options=StateDictOptions(full_state_dict=True))
        load_full_optimizer_state(model, optimizer, ckpt["optimizer"])
    else:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])


def load_full_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, saved: dict[str, Any]
) -> None:
    """A whole-model optimizer state (`optimizer.state_dict()` of a DDP or one-process run) into a sharded one.

    `saved` keys parameters by their index in the optimizer's groups; the sharded optimizer was built by the same
    `build_optimizer` over the same parameter names, so index i is the i-th name in group order."""
    names = {id(param): name for name, param in model.named_parameters()}
    order = [names[id(param)] for group in optimizer.param_groups for param in group["params"]]
    by_name = {
        "state": {order[int(index)]: value for index, value in saved["state"].items()},
        "param_groups": [
            {**group, "params": [order[int(index)] for index in group["params"]]}
            for group in saved["param_groups"]
        ],
    }
    set_optimizer_state_dict(model, optimizer, by_name, options=StateDictOptions(full_state_dict=True))


__all__ = [
    "ShardedCheckpoints",
    "full_model_state",
    "load_full_optimizer_state",
    "load_sharded",
    "prune_sharded",
    "referenced_dir",
    "restore_model_and_optimizer",
    "sharded_dir_name",
]
