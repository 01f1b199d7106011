"""`alm bench sample`: decode tok/s of our KV-cached generator vs full recompute and vs transformers."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from alm.cli.common import DeviceOption, SetOption, console, err_console, handle_errors, overrides
from alm.errors import UsageError

if TYPE_CHECKING:
    from alm.bench.sample import SampleBenchResult


def register(bench_app: typer.Typer) -> None:
    bench_app.command("sample", rich_help_panel="Sampling")(bench_sample)


@handle_errors
def bench_sample(
    model: Annotated[str, typer.Option("--model", "-m", help="Model preset name or YAML file.")] = "pico",
    new_tokens: Annotated[int, typer.Option("--new-tokens", "-n", help="Tokens to generate.")] = 256,
    prompt_tokens: Annotated[int, typer.Option("--prompt-tokens", help="Random prompt length.")] = 16,
    vocab_size: Annotated[
        int, typer.Option("--vocab-size", help="Vocabulary size when the preset leaves it unset.")
    ] = 4096,
    repeats: Annotated[int, typer.Option("--repeats", "-r", help="Timed runs each (best is kept).")] = 3,
    peer: Annotated[
        bool, typer.Option("--peer/--no-peer", help="Also measure transformers' generate().")
    ] = True,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads [default: torch's choice].")
    ] = None,
    profile: Annotated[
        bool, typer.Option("--profile", help="Also print where cached decoding spends its time.")
    ] = False,
    device: DeviceOption = "auto",
    set_: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Greedy decode speed: KV cache ÷ full recompute (target ≥ 5×) and ÷ transformers' generate (≥ 1.5×)."""
    import dataclasses

    import torch

    from alm.bench.sample import profile_cached_decode, run_sample_bench
    from alm.device import resolve_device
    from alm.model.presets import load_model_config

    if new_tokens < 1 or prompt_tokens < 1 or repeats < 1:
        raise UsageError("--new-tokens, --prompt-tokens and --repeats must be at least 1")
    if threads is not None:
        torch.set_num_threads(threads)
    cfg = load_model_config(model, [o.removeprefix("model.") for o in overrides(set_)])
    if cfg.vocab_size is None:
        cfg = dataclasses.replace(cfg, vocab_size=vocab_size)
    dev = resolve_device(device)
    if not as_json:
        err_console.print(f"[dim]decoding {new_tokens} tokens three ways on {dev} …[/]")
    result = run_sample_bench(
        cfg,
        preset=model,
        device=dev,
        new_tokens=new_tokens,
        prompt_tokens=prompt_tokens,
        repeats=repeats,
        with_hf=peer,
    )
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_result(result)
    if profile:
        console.print("\n[bold]cached decoding: top ops by self CPU time (torch.profiler)[/]")
        console.print(
            profile_cached_decode(cfg, device=dev, new_tokens=new_tokens), markup=False, highlight=False
        )


def print_result(result: SampleBenchResult) -> None:
    from rich.table import Table

    from alm.bench.sample import TARGET_VS_HF, TARGET_VS_RECOMPUTE

    console.print(
        f"[bold]{result.preset}[/]: {result.params / 1e6:.2f}M params, prompt {result.prompt_tokens} + "
        f"{result.new_tokens} new tokens (context {result.max_seq_len}), greedy"
    )
    console.print(
        f"device {result.device}, torch {result.torch_version}, "
        f"transformers {result.transformers_version or '-'}"
    )
    table = Table(show_edge=False, pad_edge=False)
    for column in ("decoder", "tok/s", "seconds", "tok per CPU-s", "greedy tokens equal to ours"):
        table.add_column(column, justify="left" if column == "decoder" else "right")
    labels = {"cached": "alm (KV cache)", "recompute": "alm (full recompute)", "hf": "transformers generate"}
    for timing in (result.cached, result.recompute, result.hf):
        if timing is None:
            continue
        agree = f"{result.agreement(timing)}/{len(timing.tokens)}"
        table.add_row(
            labels[timing.name],
            f"{timing.tok_per_s:,.1f}",
            f"{timing.seconds:.3f}",
            f"{timing.tok_per_cpu_s:,.1f}",
            agree,
        )
    console.print(table)
    _ratio("KV cache vs full recompute", result.vs_recompute, result.vs_recompute_cpu, TARGET_VS_RECOMPUTE)
    if result.vs_hf is not None and result.vs_hf_cpu is not None:
        _ratio("KV cache vs transformers generate", result.vs_hf, result.vs_hf_cpu, TARGET_VS_HF)
    if result.hf is not None and result.agreement(result.hf) < len(result.cached.tokens):
        err_console.print(
            f"[yellow]warning:[/] greedy outputs diverge from transformers' after "
            f"{result.agreement(result.hf)} tokens (near-tied logits on random weights, or a mapping bug)"
        )


def _ratio(label: str, wall: float, cpu: float, target: float) -> None:
    verdict = "[green]meets[/]" if wall >= target else "[red]below[/]"
    console.print(
        f"[bold]{label}: {wall:.2f}×[/] wall-clock ({verdict} the {target:g}× target); {cpu:.2f}× in CPU time"
    )
