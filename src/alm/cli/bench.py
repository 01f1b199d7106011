"""`alm bench …`: benchmarks that print ratios against a peer measured in the same run."""

from __future__ import annotations

import importlib

import typer

bench_app = typer.Typer(
    help="Benchmarks against a peer measured in the same run (figures go to docs/BENCHMARKS.md).",
    no_args_is_help=True,
)

# Each benchmark module adds its own command to `bench_app` via register(bench_app).
BENCH_MODULES = ("bench_train", "bench_sample", "bench_pack", "bench_speedrun", "bench_serve")


def register(app: typer.Typer) -> None:
    registered = 0
    for name in BENCH_MODULES:
        try:
            module = importlib.import_module(f"alm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"alm.cli.{name}":
                continue
            raise
        module.register(bench_app)
        registered += 1
    if registered:
        app.add_typer(bench_app, name="bench", rich_help_panel="Measure")
