"""`alm model …`: inspect model presets and config files without training anything."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from alm.cli.common import ModelSetOption, console, handle_errors, overrides
from alm.cli.complete import complete_model_preset
from alm.cli.help import examples

model_app = typer.Typer(
    help="Inspect model presets: parameter counts, FLOPs, KV-cache size.", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(model_app, name="model", rich_help_panel="Model")


@model_app.command(
    "info",
    epilog=examples(
        "alm model info micro",
        "alm model info pico --vocab-size 8192",
        "alm model info configs/ablations/alibi.yaml",
        "alm model info micro --set model.n_kv_heads=1 --json",
    ),
)
@handle_errors
def info(
    model: Annotated[
        str,
        typer.Argument(
            metavar="PRESET|FILE",
            help="A preset (micro, pico, nano, small) or a model YAML.",
            autocompletion=complete_model_preset,
        ),
    ],
    set_: ModelSetOption = None,
    vocab_size: Annotated[
        int | None,
        typer.Option(
            "--vocab-size",
            min=1,
            help="Vocabulary to count with (default: the config's, else the preset's reference).",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Parameter count, FLOPs per token and KV-cache bytes per token of a model config.

    Overrides take model keys, with or without the prefix: --set model.d_model=256 or --set d_model=256.
    """
    import dataclasses

    from alm.format import count
    from alm.model.info import model_summary
    from alm.model.presets import load_model_config, reference_vocab

    cfg = load_model_config(model, overrides(set_))
    vocab_from = "given"
    if vocab_size is not None:
        cfg = dataclasses.replace(cfg, vocab_size=vocab_size)
    elif cfg.vocab_size is None:  # the tokenizer decides: count with the vocabulary the figures assume
        cfg = dataclasses.replace(cfg, vocab_size=reference_vocab(model))
        vocab_from = "assumed"
    else:
        vocab_from = "config"
    summary = model_summary(cfg)
    if as_json:
        typer.echo(json.dumps({"model": model, "vocab_from": vocab_from, **summary}, indent=2))
        return
    vocab_note = {
        "given": "given",
        "config": "from the config",
        "assumed": "assumed (the tokenizer decides): pass --vocab-size",
    }[vocab_from]

    from rich.table import Table

    kv = summary["kv_cache_bytes_per_token"]
    table = Table(title=f"model {model}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_column(style="dim")
    rows = [
        ("params", count(summary["params"]), f"{summary['params']:,}"),
        (
            "params (non-embedding)",
            count(summary["params_non_embedding"]),
            f"{summary['params_non_embedding']:,}",
        ),
        ("vocab", f"{summary['vocab_size']:,}", vocab_note),
        ("layers", str(summary["n_layers"]), ""),
        ("d_model", str(summary["d_model"]), f"head_dim {summary['head_dim']}"),
        ("heads / kv heads", f"{summary['n_heads']} / {summary['n_kv_heads']}", ""),
        ("d_ff", str(summary["d_ff"]), summary["ffn"]),
        ("context", f"{summary['max_seq_len']:,}", summary["position"]),
        ("norm", summary["norm"], "tied embeddings" if summary["tie_embeddings"] else "untied head"),
        ("FLOPs / token", count(summary["flops_per_token"]), "training (fwd+bwd), full context"),
        ("KV cache / token", f"{count(kv['fp32'])}B fp32", f"{count(kv['bf16'])}B bf16"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"[dim]FLOPs: {summary['flops_formula']}[/]")
    if "note" in summary:
        console.print(f"[dim]{summary['note']}[/]")
