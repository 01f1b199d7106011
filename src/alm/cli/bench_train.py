"""`alm bench train`: our training step against transformers' LlamaForCausalLM on the same model, same run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alm.cli.common import (
    DeviceOption,
    ModelSetOption,
    console,
    err_console,
    handle_errors,
    model_option,
    overrides,
)
from alm.cli.help import examples

if TYPE_CHECKING:
    from alm.bench.scaling import ScalingResult
    from alm.bench.train import ContenderResult, TrainBenchResult


def register(bench_app: typer.Typer) -> None:
    bench_app.command(
        "train",
        rich_help_panel="Training",
        epilog=examples(
            "alm bench train --model micro",
            "alm bench train --model pico --batch-size 8 --threads 1 --json",
            "alm bench train --nproc 2  # tok/s on 1 and 2 processes",
        ),
    )(bench_train)


@handle_errors
def bench_train(
    model: Annotated[
        str,
        model_option("Model preset name or YAML file."),
    ] = "micro",
    device: DeviceOption = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile both models first.")] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Sequences per step.")] = 16,
    seq: Annotated[
        int | None,
        typer.Option("--seq", help="Tokens per sequence (default: min(256, the model's max_seq_len))."),
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Measured steps per model.")] = 10,
    warmup: Annotated[int, typer.Option("--warmup", help="Unmeasured warm-up steps per model.")] = 2,
    vocab_size: Annotated[
        int | None,
        typer.Option(
            "--vocab-size",
            help="Vocabulary size (default: the preset's, else the vocab its param count assumes).",
        ),
    ] = None,
    precision: Annotated[str, typer.Option("--precision", help="auto, fp32, bf16 or fp16.")] = "auto",
    peer: Annotated[
        bool, typer.Option("--peer/--no-peer", help="Also measure transformers' LlamaForCausalLM.")
    ] = True,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads", help="CPU threads (default: torch's choice; 1 is steadier on a busy machine)."
        ),
    ] = None,
    profile: Annotated[
        bool, typer.Option("--profile", help="Also print each model's top ops (torch.profiler).")
    ] = False,
    set_: ModelSetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            help="Instead: scaling from 1 to N processes under torchrun (--batch-size per process; no peer).",
        ),
    ] = None,
    parallel: Annotated[str, typer.Option("--parallel", help="With --nproc: ddp or fsdp.")] = "ddp",
    batch: Annotated[int | None, typer.Option("--batch", hidden=True)] = None,  # the old name of --batch-size
) -> None:
    """Tokens/s, ms/step, MFU and peak memory of a full training step, ours ÷ transformers'; with --nproc N, how our step scales to N processes."""
    from alm.bench.train import TrainBenchSettings, run_train_bench

    log = (lambda _msg: None) if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/]"))
    common: dict[str, Any] = {
        "model": model,
        "overrides": tuple(overrides(set_)),
        "device": device,
        "precision": precision,
        "batch": batch if batch is not None else batch_size,
        "seq": seq,
        "vocab_size": vocab_size,
        "steps": steps,
        "warmup": warmup,
        "threads": threads,
    }
    if nproc is not None:
        from alm.bench.scaling import ScalingSettings, run_scaling_bench
        from alm.train.torchrun import check_nproc

        check_nproc(nproc)
        scaled = run_scaling_bench(ScalingSettings(nproc=nproc, parallel=parallel, **common), log=log)
        if as_json:
            typer.echo(json.dumps(scaled.as_dict(), indent=2))
        else:
            print_scaling(scaled)
        return
    settings = TrainBenchSettings(**common, compile=compile, peer=peer, profile=profile)
    result = run_train_bench(settings, log=log)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    print_result(result)
    for name, table in result.profiles.items():
        typer.echo(f"\n{name}: top ops by self time (one step, torch.profiler)\n{table}")


def print_result(result: TrainBenchResult) -> None:
    from rich.table import Table

    s = result.settings
    console.print(
        f"[bold]{s.model}[/]: {result.params / 1e6:.2f}M params, batch {s.batch} × seq {result.seq} = "
        f"{result.ours.tokens_per_step:,} tokens/step, {result.flops_per_token / 1e6:.1f} MFLOPs/token"
    )
    dev = result.device
    console.print(
        f"device {dev['device']} ({dev['name'] or dev['type']}), {dev['precision']}, {dev['threads']} threads, "
        f"torch {result.versions['torch']}, transformers {result.versions.get('transformers', '-')}"
        f"{', compiled' if s.compile else ''}"
    )
    flops = result.peak.flops if result.peak.known else None
    peak = f"{flops / 1e9:,.1f} GFLOP/s" if flops is not None else "unknown"
    console.print(f"peak: {peak} ({result.peak.source})")
    table = Table(show_edge=False, pad_edge=False)
    for column in ("model", "tok/s", "ms/step", "min–max ms", "MFU", "peak mem"):
        table.add_column(column, justify="left" if column == "model" else "right")
    for contender in (result.ours, result.peer):
        if contender is not None:
            table.add_row(*_row(contender))
    console.print(table)
    console.print(
        f"[dim]ms/step: median of {s.steps} after {s.warmup} warm-up; peak mem: {result.memory_kind}[/]"
    )
    if result.peer is None:
        console.print(f"ratio: no peer ({result.peer_skipped})")
    else:
        low, high = result.ratio_iqr or (0.0, 0.0)
        cpu = f", CPU time {result.cpu_ratio:.2f}×" if result.cpu_ratio is not None else ""
        console.print(
            f"[bold]ratio alm/transformers: {result.ratio:.2f}×[/] (median of {len(result.pair_ratios)} "
            f"interleaved step pairs, IQR {low:.2f}–{high:.2f}×; median tok/s {result.tokens_per_second_ratio:.2f}×"
            f"{cpu})",
            soft_wrap=True,
        )
        console.print(
            f"loss at step 0: alm {result.ours.step0_loss:.5f}, transformers {result.peer.step0_loss:.5f} "
            f"(diff {result.step0_loss_diff:.1e}); at step {s.warmup + s.steps}: "
            f"{result.ours.final_loss:.5f} vs {result.peer.final_loss:.5f}",
            soft_wrap=True,
        )
    for warning in result.warnings:
        err_console.print(f"[yellow]warning:[/] {warning}")


def print_scaling(result: ScalingResult) -> None:
    from rich.table import Table

    s = result.settings
    dev = result.multi.device
    console.print(
        f"[bold]{s.model}[/]: batch {s.batch} per process, {s.parallel} on {dev.get('device')} "
        f"({dev.get('precision')}), {s.threads_per_process} CPU thread(s) per process"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("processes", "tok/s", "ms/step", "tokens/step"):
        table.add_column(column, justify="right")
    for launch in (result.single, result.multi):
        table.add_row(
            str(launch.processes),
            f"{launch.tokens_per_second:,.0f}",
            _ms(launch.median_step),
            f"{launch.tokens_per_step:,}",
        )
    console.print(table)
    console.print(
        f"[bold]speedup {result.speedup:.2f}× on {s.nproc} processes: scaling efficiency {result.efficiency:.0%}[/] "
        f"(median of {s.steps} steps after {s.warmup} warm-up; 1 process had the resources of one of the {s.nproc})"
    )


def _row(c: ContenderResult) -> tuple[str, ...]:
    mfu = f"{c.mfu:.1%}" if c.mfu is not None else "unknown"
    mem = f"{c.peak_memory / 2**20:,.0f} MiB" if c.peak_memory else "-"
    times = f"{_ms(min(c.step_times))}–{_ms(max(c.step_times))}"
    return (c.name, f"{c.tokens_per_second:,.0f}", _ms(c.median_step), times, mfu, mem)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"
