"""`alm bench sample`: decode tok/s against the bandwidth roofline, transformers, llama.cpp, and batched decoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
from alm.errors import UsageError

if TYPE_CHECKING:
    from alm.bench.sample import SampleBenchResult


def register(bench_app: typer.Typer) -> None:
    bench_app.command(
        "sample",
        rich_help_panel="Sampling",
        epilog=examples(
            "alm bench sample --model pico",
            "alm bench sample --model pico --device cpu --threads 1 --repeats 3 --max-tokens 256",
            "alm bench sample --run demo  # a trained run's weights",
            "alm bench sample --model pico --int8 --no-peer --no-batch  # int8 vs fp32 weights",
        ),
    )(bench_sample)


@handle_errors
def bench_sample(
    model: Annotated[
        str,
        model_option("Model preset name or YAML file."),
    ] = "pico",
    run: Annotated[
        str | None,
        typer.Option(
            "--run", help="Time a trained run's last checkpoint (RUN|CHECKPOINT) instead of a preset."
        ),
    ] = None,
    gguf: Annotated[
        Path | None,
        typer.Option(
            "--gguf", help="llama.cpp peer: a GGUF of the same weights (default: exported from --run)."
        ),
    ] = None,
    new_tokens: Annotated[int, typer.Option("--max-tokens", "-n", help="Tokens to generate.")] = 256,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", help="Random prompt length.")] = 16,
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", help="Vocabulary size when the preset leaves it unset.")
    ] = 4096,
    repeats: Annotated[int, typer.Option("--repeats", help="Timed runs each (best is kept).")] = 3,
    peer: Annotated[
        bool, typer.Option("--peer/--no-peer", help="Also measure transformers' generate().")
    ] = True,
    compile: Annotated[
        bool, typer.Option("--compile/--no-compile", help="Also time the compiled decode step.")
    ] = True,
    batch: Annotated[
        bool, typer.Option("--batch/--no-batch", help="Also time batched decoding (8 sequences at once).")
    ] = True,
    int8: Annotated[
        bool, typer.Option("--int8/--no-int8", help="Also time a copy with int8 weights.")
    ] = False,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads (default: torch's choice).")
    ] = None,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile", help="Also print where decoding spends its time, at B=1 and (with --batch) B=8."
        ),
    ] = False,
    device: DeviceOption = "auto",
    set_: ModelSetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    new_tokens_alias: Annotated[int | None, typer.Option("--new-tokens", hidden=True)] = None,  # the old name
) -> None:
    """Greedy decode speed against the memory-bandwidth roofline, transformers, llama.cpp and batching.

    Targets: ≥ 80% of the roofline, ≥ 1.5× transformers' generate, ≥ 1× llama.cpp, ≥ 5× full recompute, and
    batched decoding at B=8 ≥ 4× B=1."""
    import dataclasses

    import torch

    from alm.bench.sample import BATCH, profile_decode, run_sample_bench
    from alm.device import resolve_device
    from alm.model.presets import load_model_config

    new_tokens = new_tokens if new_tokens_alias is None else new_tokens_alias
    if new_tokens < 1 or prompt_tokens < 1 or repeats < 1:
        raise UsageError("--max-tokens, --prompt-tokens and --repeats must be at least 1")
    if threads is not None:
        torch.set_num_threads(threads)
    dev = resolve_device(device)
    trained, checkpoint, cfg = None, None, None
    if run is not None:
        from alm.cli.sample import load_for_inference

        trained, _tokenizer, _config, _step, checkpoint = load_for_inference(run, "last", str(dev))
        cfg = trained.config
    else:
        cfg = load_model_config(model, [o.removeprefix("model.") for o in overrides(set_)])
        if cfg.vocab_size is None:
            cfg = dataclasses.replace(cfg, vocab_size=vocab_size)

    def progress(message: str) -> None:
        err_console.print(f"[dim]… {message}[/]")

    result = run_sample_bench(
        cfg,
        model=trained,
        checkpoint=checkpoint,
        gguf=gguf,
        preset=run or model,
        device=dev,
        new_tokens=new_tokens,
        prompt_tokens=prompt_tokens,
        repeats=repeats,
        with_hf=peer,
        compile=compile,
        batch=batch,
        int8=int8,
        progress=progress,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(result)
    if profile:
        for rows in (1, BATCH) if batch else (1,):
            what = "one sequence" if rows == 1 else f"{rows} sequences at once"
            console.print(f"\n[bold]decoding {what}: top ops by self CPU time (torch.profiler)[/]")
            table = profile_decode(cfg, device=dev, new_tokens=new_tokens, compile=compile, rows=rows)
            typer.echo(table)  # as torch prints it: wrapped at the console width it would be unreadable


LABELS = {
    "cached": "alm (eager)",
    "compiled": "alm (compiled)",
    "recompute": "alm (full recompute)",
    "hf": "transformers generate",
    "llama_cpp": "llama.cpp",
    "batched": "alm batched (8 sequences)",
    "int8": "alm int8 weights",
    "llama_cpp_q8_0": "llama.cpp q8_0",
}


def print_result(result: SampleBenchResult) -> None:
    from rich.table import Table

    from alm.bench import sample as bench

    console.print(
        f"[bold]{result.preset}[/]: {result.params / 1e6:.2f}M params, prompt {result.prompt_tokens} + "
        f"{result.new_tokens} new tokens (context {result.max_seq_len}), greedy"
    )
    console.print(
        f"device {result.device}, torch {result.torch_version}, "
        f"transformers {result.transformers_version or '-'}"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("decoder", "tok/s", "seconds", "tok per CPU-s", "greedy tokens equal to alm's"):
        table.add_column(column, justify="left" if column == "decoder" else "right")
    for timing in result.timings():
        agree = f"{result.agreement(timing)}/{len(timing.tokens)}"
        table.add_row(
            LABELS[timing.name],
            f"{timing.tok_per_s:,.1f}",
            f"{timing.seconds:.3f}",
            f"{timing.tok_per_cpu_s:,.1f}",
            agree,
        )
    console.print(table)
    bw = result.bandwidth
    console.print(
        f"memory bandwidth: read {bw.read_gb_s:.1f} GB/s, copy {bw.copy_gb_s:.1f} GB/s; a decode step reads "
        f"{result.bytes_per_token / 1e6:.1f} MB, so the roofline is {result.roofline_tok_s:,.0f} tok/s"
    )
    _verdict(
        f"{LABELS[result.best.name]} vs the roofline",
        result.roofline_fraction,
        None,
        bench.TARGET_ROOFLINE,
        "%",
    )
    _verdict(
        "KV cache vs full recompute", result.vs_recompute, result.vs_recompute_cpu, bench.TARGET_VS_RECOMPUTE
    )
    _verdict(
        f"{LABELS[result.best.name]} vs transformers", result.vs_hf, result.vs_hf_cpu, bench.TARGET_VS_HF
    )
    _verdict(
        f"{LABELS[result.best.name]} vs llama.cpp",
        result.ratio(result.llama_cpp),
        result.ratio(result.llama_cpp, cpu=True),
        bench.TARGET_VS_LLAMA_CPP,
    )
    _verdict("batched B=8 vs B=1 (aggregate)", result.batch_speedup, None, bench.TARGET_BATCH_SPEEDUP)
    if result.int8_speedup is not None:
        console.print(
            f"[bold]int8 weights vs fp32 (both {'compiled' if result.int8_compiled else 'eager'}): "
            f"{result.int8_speedup:.2f}×[/] wall-clock; "
            f"{result.int8_speedup_cpu:.2f}× in CPU time (int8 matmul: {result.int8_kernel})"
        )
    if result.int8_vs_llama_cpp_q8_0 is not None:
        console.print(
            f"[bold]int8 weights vs llama.cpp q8_0: {result.int8_vs_llama_cpp_q8_0:.2f}×[/] wall-clock"
        )
    if result.compile_seconds is not None:
        console.print(
            f"[dim]the compiled decode step was ready in {result.compile_seconds:.0f} s (on a CPU a package kept "
            "by an earlier run loads in seconds; ALM_CACHE_DIR=off times a build)[/]"
        )
    for name, why in result.skipped.items():
        console.print(f"[dim]{LABELS.get(name, name)}: not measured: {why}[/]")
    for timing in result.timings():
        if timing.name in ("int8", "llama_cpp_q8_0"):  # other weights: their greedy text may rightly differ
            continue
        if result.agreement(timing) < min(len(timing.tokens), len(result.cached.tokens)):
            err_console.print(
                f"[yellow]warning:[/] {LABELS[timing.name]}'s greedy output diverges from alm's after "
                f"{result.agreement(timing)} tokens (near-tied logits on random weights, or a bug)"
            )


def _verdict(label: str, wall: float | None, cpu: float | None, target: float, unit: str = "×") -> None:
    if wall is None:
        return
    shown = (lambda v: f"{v:.0%}") if unit == "%" else (lambda v: f"{v:.2f}×")
    verdict = "[green]meets[/]" if wall >= target else "[red]below[/]"
    line = f"[bold]{label}: {shown(wall)}[/] wall-clock ({verdict} the {shown(target)} target)"
    if cpu is not None:
        line += f"; {shown(cpu)} in CPU time"
    console.print(line)
