"""`alm bench serve RUN`: a bounded local load test of `alm serve` (batching vs one at a time, int8 vs fp32)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from alm.cli.common import console, err_console, handle_errors
from alm.cli.help import examples
from alm.cli.sample import RunArgument
from alm.errors import AlmError, UsageError


def register(bench_app: typer.Typer) -> None:
    bench_app.command(
        "serve",
        rich_help_panel="Sampling",
        epilog=examples(
            "alm bench serve demo",
            "alm bench serve demo --clients 1,8 --requests 4 --no-int8",
        ),
    )(bench_serve)


def _clients(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        values = []
    if not values or min(values) < 1:
        raise UsageError(f"--clients takes positive counts separated by commas, e.g. 1,4,16; got {text!r}")
    return values


@handle_errors
def bench_serve(
    run: RunArgument,
    clients: Annotated[
        str, typer.Option("--clients", help="Concurrent streaming clients per load, comma-separated.")
    ] = "1,4,16",
    requests: Annotated[
        int, typer.Option("--requests", help="Requests each client sends, one after another.")
    ] = 4,
    max_tokens: Annotated[
        int, typer.Option("--max-tokens", "-n", help="Tokens each request generates.")
    ] = 64,
    one_at_a_time: Annotated[
        bool, typer.Option("--one-at-a-time/--no-one-at-a-time", help="Also serve one request at a time.")
    ] = True,
    int8: Annotated[bool, typer.Option("--int8/--no-int8", help="Also serve with --quantize int8.")] = True,
    threads: Annotated[
        int | None, typer.Option("--threads", help="CPU threads of the server (default: torch's choice).")
    ] = None,
    device: Annotated[str, typer.Option("--device", help="The server's device: cpu, cuda, mps.")] = "cpu",
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Load a real `alm serve` on 127.0.0.1 with 1, 4 and 16 concurrent streaming clients.

    Reports requests/s, output tok/s, time to first token (p50/p99) and errors, for continuous batching, one
    request at a time, and int8."""
    from alm.bench.serve import run_serve_bench
    from alm.cli.sample import resolve_checkpoint_arg
    from alm.cli.serve import check_serve_installed

    check_serve_installed()
    counts = _clients(clients)
    for flag, value in (("--requests", requests), ("--max-tokens", max_tokens)):
        if value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    # A missing run is a usage error (2) here, not a server that fails to start (1).
    resolve_checkpoint_arg(run, None)
    result = run_serve_bench(
        run,
        clients=counts,
        requests=requests,
        max_tokens=max_tokens,
        device=device,
        threads=threads,
        one_at_a_time=one_at_a_time,
        int8=int8,
        progress=lambda message: err_console.print(f"[dim]{message}[/]"),
    )
    if as_json:
        console.print_json(json.dumps(result.to_dict()))
        return
    console.print(
        f"[bold]alm serve {run}[/]: {requests} streaming requests per client, {max_tokens} tokens each "
        f"(greedy, ignore_eos), on {device}"
    )
    console.print(
        f"{'server':<15}{'clients':>8}{'req/s':>9}{'out tok/s':>11}{'TTFT p50':>10}{'p99':>9}{'errors':>8}"
    )
    for name, loads in result.loads.items():
        for load in loads:
            console.print(
                f"{name:<15}{load.clients:>8}{load.requests_per_s:>9.2f}{load.tokens_per_s:>11.1f}"
                f"{load.ttft_ms(50):>8.0f}ms{load.ttft_ms(99):>7.0f}ms{load.errors:>8}",
                markup=False,
            )
    for name, ratio in result.ratios().items():
        console.print(f"{name.replace('_', ' ')} at {max(counts)} clients: {ratio:.2f}x")
    if result.errors:
        raise AlmError(f"{result.errors} request(s) failed below the queue bound")
