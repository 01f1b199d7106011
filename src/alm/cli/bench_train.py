"""`alm bench train`: our training step against transformers' LlamaForCausalLM on the same model, same run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from alm.cli.common import DeviceOption, SetOption, console, err_console, handle_errors, overrides

if TYPE_CHECKING:
    from alm.bench.train import ContenderResult, TrainBenchResult


def register(bench_app: typer.Typer) -> None:
    bench_app.command("train", rich_help_panel="Training")(bench_train)


@handle_errors
def bench_train(
    model: Annotated[str, typer.Option("--model", "-m", help="Model preset name or YAML file.")] = "micro",
    device: DeviceOption = "auto",
    compile: Annotated[bool, typer.Option("--compile", help="torch.compile both models first.")] = False,
    batch: Annotated[int, typer.Option("--batch", "-b", help="Sequences per step.")] = 16,
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
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Tokens/s, ms/step, MFU and peak memory of a full training step, ours ÷ transformers'."""
    from alm.bench.train import TrainBenchSettings, run_train_bench

    settings = TrainBenchSettings(
        model=model,
        overrides=tuple(o.removeprefix("model.") for o in overrides(set_)),
        device=device,
        precision=precision,
        batch=batch,
        seq=seq,
        vocab_size=vocab_size,
        steps=steps,
        warmup=warmup,
        compile=compile,
        peer=peer,
        threads=threads,
        profile=profile,
    )
    log = (lambda _msg: None) if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/]"))
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
    peak = f"{result.peak.flops / 1e9:,.1f} GFLOP/s" if result.peak.known else "unknown"
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


def _row(c: ContenderResult) -> tuple[str, ...]:
    mfu = f"{c.mfu:.1%}" if c.mfu is not None else "unknown"
    mem = f"{c.peak_memory / 2**20:,.0f} MiB" if c.peak_memory else "-"
    times = f"{_ms(min(c.step_times))}–{_ms(max(c.step_times))}"
    return (c.name, f"{c.tokens_per_second:,.0f}", _ms(c.median_step), times, mfu, mem)


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:,.1f}" if ms < 100 else f"{ms:,.0f}"
