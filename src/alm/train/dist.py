"""Process topology under torchrun, read from the environment it sets (torch-free): which rank this process is,
how many there are, which one writes files and prints, and how a command is launched again on this topology.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK and LOCAL_WORLD_SIZE for every process it starts; a plain process is
rank 0 of 1. Everything that touches files or the terminal asks `is_main_process()`; the collectives themselves
live in `alm.train.parallel`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from alm.errors import UsageError


def rank_info() -> tuple[int, int]:
    """(rank, world_size) from the torchrun environment; (0, 1) for a plain process."""
    return int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))


def is_main_process() -> bool:
    """Only rank 0 writes files and prints."""
    return rank_info()[0] == 0


def supervised() -> bool:
    """Whether torchrun runs this process among others: it stops them all when one fails (SIGTERM, then SIGKILL
    30 s later)."""
    return rank_info()[1] > 1


def local_rank() -> int:
    """This process's index on its node (the CUDA device it drives)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def nodes() -> tuple[int, int]:
    """(nodes, processes per node) of this launch; (1, 1) for a plain process."""
    world_size = rank_info()[1]
    per_node = int(os.environ.get("LOCAL_WORLD_SIZE", str(world_size)))
    return max(1, world_size // max(1, per_node)), per_node


def relaunch(command: str) -> str:
    """`command` (`alm resume RUN`) as it must be run to continue on this topology: as is for one process,
    with `--nproc N` on one node, and as the torchrun line every node runs for several."""
    world_size = rank_info()[1]
    if world_size <= 1:
        return command
    n_nodes, per_node = nodes()
    if n_nodes == 1:
        return f"{command} --nproc {world_size}"
    module = command.removeprefix("alm ")
    return (
        f"torchrun --nnodes {n_nodes} --nproc-per-node {per_node} --rdzv-backend c10d "
        f"--rdzv-endpoint HOST:PORT -m alm {module}   # on every node"
    )


def resume_grad_accum(saved_train: Mapping[str, Any], saved_world_size: int, world_size: int) -> int:
    """grad_accum that keeps a run's global batch (batch_size × grad_accum × processes) when it continues on
    `world_size` processes instead of the `saved_world_size` it was saved with."""
    batch_size, grad_accum = int(saved_train["batch_size"]), int(saved_train["grad_accum"])
    global_batch = batch_size * grad_accum * saved_world_size
    if global_batch % (batch_size * world_size):
        fits = [n for n in range(1, global_batch // batch_size + 1) if global_batch % (batch_size * n) == 0]
        raise UsageError(
            f"the run's global batch is {global_batch} sequences (batch_size {batch_size} × grad_accum "
            f"{grad_accum} × {saved_world_size} process(es)); {world_size} processes cannot share it evenly",
            hint=f"resume on {', '.join(map(str, fits))} process(es)",
        )
    return global_batch // (batch_size * world_size)


__all__ = ["is_main_process", "local_rank", "nodes", "rank_info", "relaunch", "resume_grad_accum"]
