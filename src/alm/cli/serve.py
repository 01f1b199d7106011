"""`alm serve RUN`: an OpenAI-compatible HTTP server (and a web chat page) for a trained run."""

from __future__ import annotations

import importlib.util
from typing import Annotated

import typer
from rich.markup import escape

from alm.cli.common import DeviceOption, err_console, handle_errors
from alm.cli.help import examples
from alm.cli.sample import CheckpointOption, QuantizeOption, RunArgument, load_for_inference
from alm.cli.sampling import spec_option
from alm.errors import AlmError, ConfigError, UsageError
from alm.sample.options import COMPILE

SERVE_EXTRA_HINT = "install the server extra: pip install 'alm[serve]' (FastAPI and uvicorn)"
# The line that says where the server listens; `alm bench serve` and the tests read the URL from it.
LISTENING = "serving {name} at {url}"


def check_serve_installed() -> None:
    missing = [name for name in ("fastapi", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise AlmError(
            f"alm serve needs {' and '.join(missing)}, which is not installed", hint=SERVE_EXTRA_HINT
        )


@handle_errors
def serve(
    run: RunArgument,
    checkpoint: CheckpointOption = None,
    host: Annotated[
        str,
        typer.Option("--host", help="Address to listen on; anything but loopback is reachable by others."),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on; 0 takes any free one.")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            envvar="ALM_API_KEY",
            help="Require `Authorization: Bearer KEY` on every /v1 request (or set ALM_API_KEY).",
            show_envvar=False,
        ),
    ] = None,
    quantize: QuantizeOption = None,
    max_concurrency: Annotated[
        int, typer.Option("--max-concurrency", help="Sequences decoded together, in one batched forward.")
    ] = 8,
    max_queue: Annotated[
        int, typer.Option("--max-queue", help="Sequences that may wait for a slot; beyond them: 429.")
    ] = 32,
    max_tokens_limit: Annotated[
        int, typer.Option("--max-tokens-limit", help="The largest max_tokens a request may ask for.")
    ] = 2048,
    drain_seconds: Annotated[
        float,
        typer.Option(
            "--drain-seconds", help="On Ctrl+C/SIGTERM, how long requests in flight may take to finish."
        ),
    ] = 10.0,
    compile: Annotated[bool, spec_option(COMPILE)] = COMPILE.default,
    device: DeviceOption = "auto",
) -> None:
    """Serve a trained run over an OpenAI-compatible API, with a chat page at /.

    Endpoints: /v1/models, /v1/completions and /v1/chat/completions (streaming or not). Ctrl+C drains the
    requests in flight, then stops."""
    check_serve_installed()
    from alm.serve.config import ServeConfig

    cfg = ServeConfig(
        host=host,
        port=port,
        api_key=api_key,
        max_concurrency=max_concurrency,
        max_queue=max_queue,
        max_tokens_limit=max_tokens_limit,
        drain_seconds=drain_seconds,
    )
    try:
        cfg.validate()
    except ConfigError as exc:
        raise UsageError(f"--{exc.key.replace('_', '-')}: {exc.detail}") from None
    from alm.serve.model import served_model
    from alm.serve.server import Server
    from alm.train.checkpoint import run_dir_of_checkpoint

    model, tokenizer, config, step, path = load_for_inference(run, checkpoint, device, quantize)
    name = run_dir_of_checkpoint(path).name
    served = served_model(model, tokenizer, config, name=name, step=step, checkpoint=path, quantized=quantize)
    server = Server(served, cfg, compile=compile)
    if not cfg.loopback:
        exposure = "with an API key" if api_key else "WITHOUT an API key: anyone who can reach it can use it"
        err_console.print(
            f"[yellow]warning:[/] listening on {escape(host)}, reachable from other machines, {exposure}",
            soft_wrap=True,
        )
    weights = f", {quantize} weights" if quantize else ""
    chat = "chat and completions" if served.chat else "completions only (not fine-tuned for chat)"
    err_console.print(
        f"[dim]{escape(str(path))} (step {step}) on {served.device}{weights}; {chat}[/]", soft_wrap=True
    )
    err_console.print(LISTENING.format(name=name, url=server.url), markup=False, soft_wrap=True)
    err_console.print(
        f"[dim]chat page {server.url}/ · API {server.url}/v1 · {cfg.max_concurrency} sequences at once, "
        f"{cfg.max_queue} queued · Ctrl+C stops[/]",
        soft_wrap=True,
    )
    server.run()
    err_console.print("[dim]stopped[/]")


def register(app: typer.Typer) -> None:
    app.command(
        "serve",
        rich_help_panel="Use",
        epilog=examples(
            "alm serve demo  # http://127.0.0.1:8000: chat page at /, API at /v1",
            "alm serve micro-sft --quantize int8 --port 8080 --max-concurrency 16",
            "alm serve demo --host 0.0.0.0 --api-key secret  # reachable by others: with a key",
        ),
    )(serve)
