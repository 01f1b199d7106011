"""`alm bench pack`: packing throughput and peak RSS against the raw tokenizer, same text, same run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alm.cli.common import console, err_console, handle_errors
from alm.cli.help import examples

if TYPE_CHECKING:
    from alm.bench.pack import PackBenchResult


def register(bench_app: typer.Typer) -> None:
    bench_app.command(
        "pack",
        rich_help_panel="Data",
        epilog=examples(
            "alm bench pack",
            "alm bench pack --corpus-mb 10 --workers 1 --workers 4 --json",
            "alm bench pack --corpus-dir my-texts",
        ),
    )(bench_pack)


@handle_errors
def bench_pack(
    corpus_mb: Annotated[
        list[float] | None,
        typer.Option("--corpus-mb", help="Corpus sizes in MB (repeatable) (default: 10 and 100)."),
    ] = None,
    corpus_dir: Annotated[
        Path | None,
        typer.Option(
            "--corpus-dir",
            help="Text files (.txt, .txt.xz, .tokens) to cycle through (default: the built-in corpus).",
        ),
    ] = None,
    vocab_size: Annotated[int, typer.Option("--vocab-size", help="BPE vocabulary size.")] = 4096,
    workers: Annotated[
        list[int] | None,
        typer.Option(
            "--workers",
            help="Packer configurations (repeatable): 1 in-process, N>1 processes (default: 1 2).",
        ),
    ] = None,
    rounds: Annotated[
        int, typer.Option("--rounds", help="Alternating raw/pack rounds per size (median).")
    ] = 3,
    work_dir: Annotated[
        Path | None,
        typer.Option("--work-dir", help="Keep the corpora and shards here (default: a temp dir)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """MB/s, tokens/s and peak RSS of `alm pack` ÷ raw tokenizers encode_batch on the same text (targets ≥0.9×, flat RSS)."""
    from alm.bench.pack import PackBenchSettings, run_pack_bench

    settings = PackBenchSettings(
        sizes_mb=tuple(corpus_mb or (10.0, 100.0)),
        corpus_dir=corpus_dir,
        vocab_size=vocab_size,
        workers=tuple(workers or (1, 2)),
        rounds=rounds,
        work_dir=work_dir,
        keep=work_dir is not None,
    )
    log = (lambda _msg: None) if as_json else (lambda msg: err_console.print(f"[dim]{msg}[/]"))
    result = run_pack_bench(settings, log=log)
    if as_json:
        typer.echo(json.dumps(result.as_dict(), indent=2))
        return
    print_result(result)


def print_result(result: PackBenchResult) -> None:
    from rich.table import Table

    env = result.environment
    console.print(
        f"[bold]alm bench pack[/]  tokenizers {env['tokenizers']}, {env['cores']} cores, {env['platform']}"
    )
    table = Table("corpus", "what", "MB/s", "Mtok/s", "seconds", "peak RSS MB", "÷ raw")
    for size in result.sizes:
        label = f"{size.text_bytes / 1e6:.0f} MB"
        table.add_row(
            label,
            "raw encode_batch_fast",
            f"{size.raw_mb_per_s:.2f}",
            f"{size.raw_tokens_per_s / 1e6:.2f}",
            f"{size.raw_seconds:.1f}",
            "",
            "1.00",
        )
        for run in size.packs:
            what = "alm pack (in-process)" if run.workers <= 1 else f"alm pack ({run.workers} processes)"
            table.add_row(
                label,
                what,
                f"{run.mb_per_s:.2f}",
                f"{run.tokens_per_s / 1e6:.2f}",
                f"{run.seconds:.1f}",
                f"{run.peak_rss_mb:.0f}",
                f"{run.ratio_to_raw:.2f}",
            )
    console.print(table)
    for workers in sorted({p.workers for s in result.sizes for p in s.packs}):
        growth = result.rss_growth(workers)
        if growth is not None:
            console.print(
                f"peak RSS, largest ÷ smallest corpus (workers={workers}): {growth:.2f}× (target ≤ 1.1×)"
            )
