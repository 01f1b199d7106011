"""`alm doctor`: what torch sees on this machine and what alm would choose."""

from __future__ import annotations

import json
import platform
import sys
from typing import Annotated, Any

import typer
from rich.table import Table

from alm.cli.common import console, handle_errors
from alm.cli.help import examples


def register(app: typer.Typer) -> None:
    app.command(
        "doctor",
        rich_help_panel="Setup",
        epilog=examples(
            "alm doctor",
            "alm doctor --device mps  # what training on Apple Silicon would use",
            "alm doctor --precision bf16",
            "alm doctor --json",
        ),
    )(doctor)


@handle_errors
def doctor(
    device: Annotated[
        str, typer.Option("--device", help="Device to evaluate: auto, cpu, cuda, mps.")
    ] = "auto",
    precision: Annotated[str, typer.Option("--precision", help="auto, fp32, bf16 or fp16.")] = "auto",
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as one JSON object.")] = False,
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
    from alm.train.parallel import readiness

    chosen = resolve_device(device)
    caps = probe_capabilities(chosen)
    plan = choose_precision(caps, precision)  # type: ignore[arg-type]
    cuda = torch.cuda.device_count() if torch.cuda.is_available() else 0
    report: dict[str, Any] = {
        "alm": __version__,
        "python": sys.version.split()[0],
        "platform": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "macos": platform.mac_ver()[0] or None,
        "torch": torch.__version__,
        "cpu_threads": torch.get_num_threads(),
        "devices": available_device_types(),
        "cuda_devices": cuda,
        "mps": torch.backends.mps.is_available(),
        "device": str(chosen),
        "device_name": caps.name,
        "precision": plan.precision,
        "autocast_dtype": str(plan.autocast_dtype).removeprefix("torch.") if plan.autocast_dtype else None,
        "grad_scaler": plan.use_grad_scaler,
        "matmul_precision": plan.matmul_precision,
        "why": plan.reason,
        "device_memory_bytes": caps.total_memory or None,
        "memory_in_use_bytes": memory_stats(chosen),
        "distributed": dict(readiness(chosen)),  # torchrun: backends, and what `--nproc N` can use here
        "warnings": list(plan.warnings),
    }
    if chosen.type == "cuda":
        report["flash_sdp"] = torch.backends.cuda.flash_sdp_enabled()
        report["cudnn"] = torch.backends.cudnn.version()
    if as_json:
        typer.echo(json.dumps(report, indent=2))
        return
    _print_report(report)


def _print_report(report: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold cyan")
    table.add_column()
    rows = [
        ("alm", report["alm"]),
        ("python", report["python"]),
        ("platform", report["platform"]),
        ("macOS", report["macos"]),
        ("torch", report["torch"]),
        ("cpu threads", str(report["cpu_threads"])),
        ("devices", ", ".join(report["devices"])),
        ("cuda", f"available, {report['cuda_devices']} device(s)" if report["cuda_devices"] else "no"),
        ("mps", "available" if report["mps"] else "no"),
        ("chosen device", f"{report['device']} ({report['device_name']})"),
        (
            "precision",
            report["precision"]
            + (f" (autocast {report['autocast_dtype']})" if report["autocast_dtype"] else ""),
        ),
        ("grad scaler", "yes" if report["grad_scaler"] else "no"),
        ("matmul precision", report["matmul_precision"]),
        ("why", report["why"]),
    ]
    if report["device_memory_bytes"]:
        rows.append(("device memory", f"{report['device_memory_bytes'] / 2**30:.1f} GiB"))
    usage = report["memory_in_use_bytes"]
    rows.append(("memory in use", ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in usage.items())))
    if "cudnn" in report:
        rows += [("flash sdp", str(report["flash_sdp"])), ("cudnn", str(report["cudnn"]))]
    rows += list(report["distributed"].items())
    rows += [("[yellow]warning[/]", warning) for warning in report["warnings"]]
    for label, value in rows:
        if value is not None:
            table.add_row(label, value)
    console.print(table)
