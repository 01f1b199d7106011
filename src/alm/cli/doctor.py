"""`alm doctor`: what torch sees on this machine and what alm would choose."""

from __future__ import annotations

import platform
import sys
from typing import Annotated

import typer
from rich.table import Table

from alm.cli.common import console, handle_errors


def register(app: typer.Typer) -> None:
    app.command("doctor", rich_help_panel="Setup")(doctor)


@handle_errors
def doctor(
    device: Annotated[
        str, typer.Option("--device", help="Device to evaluate: auto, cpu, cuda, mps.")
    ] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto, fp32, bf16 or fp16.")] = "auto",
) -> None:
    """Show torch, devices, backends and the precision alm would choose."""
    import torch

    from alm import __version__
    from alm.device import (
        available_device_types,
        choose_precision,
        memory_stats,
        probe_capabilities,
        resolve_device,
    )

    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan")
    table.add_column()
    table.add_row("alm", __version__)
    table.add_row("python", sys.version.split()[0])
    table.add_row("platform", f"{platform.system()} {platform.release()} ({platform.machine()})")
    if platform.mac_ver()[0]:
        table.add_row("macOS", platform.mac_ver()[0])
    table.add_row("torch", torch.__version__)
    table.add_row("cpu threads", str(torch.get_num_threads()))
    table.add_row("devices", ", ".join(available_device_types()))
    table.add_row(
        "cuda", f"available, {torch.cuda.device_count()} device(s)" if torch.cuda.is_available() else "no"
    )
    table.add_row("mps", "available" if torch.backends.mps.is_available() else "no")
    chosen = resolve_device(device)
    caps = probe_capabilities(chosen)
    plan = choose_precision(caps, precision)  # type: ignore[arg-type]
    table.add_row("chosen device", f"{chosen} ({caps.name})")
    table.add_row(
        "precision", plan.precision + (f" (autocast {plan.autocast_dtype})" if plan.autocast_dtype else "")
    )
    table.add_row("grad scaler", "yes" if plan.use_grad_scaler else "no")
    table.add_row("matmul precision", plan.matmul_precision)
    table.add_row("why", plan.reason)
    if caps.total_memory:
        table.add_row("device memory", f"{caps.total_memory / 2**30:.1f} GiB")
    usage = memory_stats(chosen)
    table.add_row("memory in use", ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in usage.items()))
    if chosen.type == "cuda":
        table.add_row("flash sdp", str(torch.backends.cuda.flash_sdp_enabled()))
        table.add_row("cudnn", str(torch.backends.cudnn.version()))
    for warning in plan.warnings:
        table.add_row("[yellow]warning[/]", warning)
    console.print(table)
