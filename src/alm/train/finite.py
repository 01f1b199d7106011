"""Whether weights hold only finite numbers: one fused reduction over every tensor, for the post-update guard
(`alm.train.step`) and the guards on saving and loading checkpoints (`alm.train.checkpoint`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch


def max_abs(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The largest |x| over the floating-point `tensors` as a device scalar (no host sync): inf or nan as soon
    as one element is, and unlike a sum of squares it cannot overflow on large but finite weights."""
    floats = [_local(t).detach() for t in tensors if t.is_floating_point()]
    if not floats:
        return torch.zeros(())
    return torch.nn.utils.get_total_norm(floats, norm_type=float("inf"))  # fused per device and dtype


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    return bool(torch.isfinite(max_abs(tensors)))


def nonfinite_names(state: Mapping[str, torch.Tensor]) -> list[str]:
    """The entries of a state dict holding inf or nan (for messages: call after `all_finite` said no)."""
    return [
        name
        for name, value in state.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(value.isfinite().all())
    ]


def _local(tensor: torch.Tensor) -> torch.Tensor:
    """A sharded (FSDP2) tensor's local shard: each rank checks its own, and the caller reduces the verdict."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor  # type: ignore[return-value]


__all__ = ["all_finite", "max_abs", "nonfinite_names"]
