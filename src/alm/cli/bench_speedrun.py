"""`alm bench speedrun`: wall time and tokens for a recipe to reach a val bits-per-byte target on the built-in
corpus, and the best it reaches within a wall-time budget (`alm.bench.speedrun`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from alm.cli.common import (
    SetOption,
    console,
    err_console,
    handle_errors,
    model_option,
    overrides,
    train_option,
)
from alm.cli.help import examples

if TYPE_CHECKING:
    from alm.bench.speedrun import CurvePoint, SpeedrunResult

NANOGPT_GPU_BPC = 2.12  # nanoGPT's shakespeare_char on a GPU: val loss 1.47 nats per character
COLUMNS = f"{'wall':>7} {'train':>7} {'step':>7} {'tokens':>7} {'epochs':>6} {'loss':>7} {'val':>7} {'bpb':>6} {'bpc':>6}"


def register(bench_app: typer.Typer) -> None:
    bench_app.command(
        "speedrun",
        rich_help_panel="Training",
        epilog=examples(
            "alm bench speedrun --model micro",
            "alm bench speedrun --model micro --target-bpb 2.2 --budget-minutes 30 --out speedrun.json",
        ),
    )(bench_speedrun)


@handle_errors
def bench_speedrun(
    model: Annotated[
        str,
        model_option("Model preset name or YAML file."),
    ] = "micro",
    train_config: Annotated[
        str | None,
        train_option("Train preset or YAML file (default: alm train's)."),
    ] = None,
    data: Annotated[
        str | None, typer.Option("--data", "-d", help="corpus.yaml or a data directory; default: built-in.")
    ] = None,
    target_bpb: Annotated[
        float, typer.Option("--target-bpb", help="Val bits per byte of the val text to reach.")
    ] = 2.5,
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", help="Wall time from the trainer's start; then Ctrl+C.")
    ] = 15.0,
    runs_dir: Annotated[
        Path | None,
        typer.Option(
            "--runs-dir", help="Keep the run in DIR/speedrun; default: a temporary directory, removed."
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="JSON result (default: speedrun-MODEL-TIME.json).")
    ] = None,
    set_: SetOption = None,
) -> None:
    """Train a recipe end to end (a real `alm train`): time to --target-bpb, best bits within the budget.

    Reports when validation reaches --target-bpb and the best val bits per byte/character within
    --budget-minutes. Run it alone on the machine: other work skews every figure."""
    from alm.bench.speedrun import SpeedrunSettings, run_speedrun
    from alm.fileio import atomic_write_text

    settings = SpeedrunSettings(
        model=model,
        train=train_config,
        data=data,
        overrides=tuple(overrides(set_)),
        target_bpb=target_bpb,
        budget_minutes=budget_minutes,
        runs_dir=runs_dir,
    )
    settings.check()
    out = out or Path(f"speedrun-{Path(model).stem}-{time.strftime('%Y%m%d-%H%M%S')}.json")
    console.print(
        f"[bold]speedrun[/] {model}: target {target_bpb} bits/byte, budget {budget_minutes:g} min (wall, from the "
        "trainer's start; evals and saves included)"
    )
    header: list[str] = [COLUMNS]  # printed above the first point, below the command

    def on_point(point: CurvePoint) -> None:
        while header:
            console.print(f"[dim]{header.pop()}[/]", highlight=False)
        print_point(point)

    log = lambda msg: err_console.print(f"[dim]{msg}[/]", soft_wrap=True)  # noqa: E731
    result = run_speedrun(settings, log=log, on_point=on_point)
    print_summary(result)
    atomic_write_text(out, json.dumps(result.as_dict(), indent=2) + "\n")
    console.print(f"wrote {out}")


def print_point(p: CurvePoint) -> None:
    from alm.format import count, duration, number

    epochs = f"{p.epochs:.2f}" if p.epochs is not None else "-"
    console.print(
        f"{duration(p.wall_s):>7} {duration(p.train_s):>7} {p.step:>7} {count(p.tokens):>7} {epochs:>6} "
        f"{number(p.train_loss, 3):>7} {number(p.val_loss, 3):>7} {p.bpb:>6.3f} {p.bpc:>6.3f}",
        highlight=False,
    )


def print_summary(result: SpeedrunResult) -> None:
    from alm.format import count, duration

    s, reached, best = result.settings, result.reached, result.best
    if reached is None:
        console.print(
            f"[yellow]target {s.target_bpb} bits/byte not reached[/] within {s.budget_minutes:g} min"
        )
    else:
        console.print(
            f"[green]target {s.target_bpb} bits/byte reached[/] at {duration(reached.wall_s)} (training "
            f"{duration(reached.train_s)}), step {reached.step}, {count(reached.tokens)} tokens"
        )
    if best is not None:
        console.print(
            f"best within {s.budget_minutes:g} min: [bold]{best.bpc:.3f} bits/char[/] ({best.bpb:.3f} bits/byte, "
            f"val loss {best.val_loss:.4f} nats/token) at step {best.step}, {duration(best.wall_s)}; "
            f"nanoGPT on a GPU: {NANOGPT_GPU_BPC} bits/char",
            soft_wrap=True,
        )
    val = result.val
    console.print(
        f"stopped: {result.stop} at step {result.steps}/{result.total_steps}; val text {val.chars:,} chars, "
        f"{val.bytes:,} bytes, {val.tokens:,} tokens, {val.documents:,} documents",
        soft_wrap=True,
    )
