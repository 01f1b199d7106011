"""`alm sample` (stream text from a trained run) and `alm eval` (loss, perplexity and bits per byte)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alm.cli.common import DeviceOption, console, err_console, handle_errors
from alm.errors import ConfigError, DataError, UsageError

if TYPE_CHECKING:
    from alm.sample import SamplingConfig

RunArgument = Annotated[
    str,
    typer.Argument(metavar="RUN|CHECKPOINT", help="A run name (under runs/), a run directory or a .pt file."),
]
CheckpointOption = Annotated[
    str, typer.Option("--checkpoint", "-c", help="Which checkpoint of the run: last, best, step-N or N.")
]
QUIT_COMMANDS = (":q", ":quit", ":exit")
# SamplingConfig fields -> the option that sets them, so a bad value names what the user typed.
_OPTION_OF_FIELD = {"max_new_tokens": "--max-tokens", "stop": "--stop"}


def resolve_checkpoint_arg(run: str, which: str) -> Path:
    """The checkpoint file for RUN|CHECKPOINT; anything missing is a usage error (exit 2) naming what exists."""
    from alm.train.checkpoint import resolve_checkpoint
    from alm.train.rundir import DEFAULT_RUNS_ROOT

    try:
        return resolve_checkpoint(run, which)
    except DataError as exc:  # the run exists but lacks that checkpoint: the user named something absent
        raise UsageError(exc.message, hint=exc.hint) from None
    except UsageError as exc:
        root = DEFAULT_RUNS_ROOT
        runs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        listing = f"runs under {root}/: {', '.join(runs)}" if runs else f"there are no runs under {root}/"
        raise UsageError(exc.message, hint=f"{exc.hint} ({listing})" if exc.hint else listing) from None


def load_for_inference(run: str, which: str, device: str):
    """(model, tokenizer, config, step, checkpoint path) for `alm sample` / `alm eval`."""
    from alm.train.checkpoint import load_model

    path = resolve_checkpoint_arg(run, which)
    model, tokenizer, config, step = load_model(path, device=device)
    return model, tokenizer, config, step, path


def build_sampling_config(**values: Any) -> SamplingConfig:
    from alm.config import from_dict
    from alm.sample import SamplingConfig

    try:
        return from_dict(SamplingConfig, values)
    except ConfigError as exc:
        option = _OPTION_OF_FIELD.get(exc.key, "--" + exc.key.replace("_", "-"))
        raise UsageError(f"{option}: {exc.detail}") from None


def _read_prompt(prompt: str | None) -> str | None:
    """The prompt text; None means "ask interactively"."""
    if prompt == "-":
        return sys.stdin.read()
    if prompt is not None:
        return prompt
    if sys.stdin.isatty():
        return None
    raise UsageError(
        "no prompt given and stdin is not a terminal",
        hint="pass --prompt TEXT, or --prompt - to read the prompt from stdin",
    )


def _stream_one(model, tokenizer, prompt: str, cfg: SamplingConfig, device) -> None:
    """Print one sample as it is generated, then a one-line summary on stderr."""
    from alm.sample import generate

    stream = generate(model, tokenizer, prompt, cfg, device=device)
    info = stream.info
    if info.prompt_trimmed:
        err_console.print(
            f"[yellow]notice:[/] the prompt is longer than the model's context ({model.config.max_seq_len} "
            f"tokens); its first {info.prompt_trimmed} tokens were dropped"
        )
    out = sys.stdout
    if out.isatty():
        console.print(prompt, style="bold", end="", markup=False, soft_wrap=True)
    start = time.perf_counter()
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
    finally:
        stream.close()
        out.write("\n")
        out.flush()
    elapsed = max(time.perf_counter() - start, 1e-9)
    err_console.print(
        f"[dim]{info.new_tokens} tokens, {info.new_tokens / elapsed:.1f} tok/s, "
        f"stopped by {info.stop_reason or 'interrupt'}, seed {info.seed}[/]"
    )


def _samples(model, tokenizer, prompt: str, cfg: SamplingConfig, device, num_samples: int) -> None:
    for i in range(num_samples):
        if num_samples > 1:
            err_console.rule(f"sample {i + 1}/{num_samples}", style="dim")
        # Each sample gets its own seed (seed, seed+1, …) so they differ yet a fixed --seed reproduces them all.
        seed = None if cfg.seed is None else cfg.seed + i
        _stream_one(model, tokenizer, prompt, cfg.replace(seed=seed), device)


def interactive_loop(lines: Iterable[str], generate_one) -> None:
    """Generate for each prompt line until EOF or :q; Ctrl+C stops the current sample, not the session."""
    for line in lines:
        prompt = line.rstrip("\n")
        if prompt.strip() in QUIT_COMMANDS:
            return
        if not prompt.strip():
            continue
        try:
            generate_one(prompt)
        except KeyboardInterrupt:
            err_console.print("[yellow](stopped)[/]")


def _terminal_lines() -> Iterable[str]:
    while True:
        try:
            yield console.input("[bold cyan]prompt>[/] ")
        except EOFError:
            console.print()
            return


@handle_errors
def sample(
    run: RunArgument,
    prompt: Annotated[
        str | None,
        typer.Option("--prompt", "-p", help="Text to continue; '-' reads stdin. Omit on a terminal to chat."),
    ] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", help="New tokens per sample.")] = 256,
    temperature: Annotated[float, typer.Option(help="Softmax temperature; 0 means greedy.")] = 0.8,
    top_k: Annotated[
        int, typer.Option(help="Keep the k most likely tokens; 0 turns it off (not greedy).")
    ] = 0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling mass in (0, 1]; 1 turns it off.")] = 1.0,
    min_p: Annotated[
        float, typer.Option(help="Drop tokens below min_p × the top probability; 0 is off.")
    ] = 0.0,
    repetition_penalty: Annotated[
        float, typer.Option(help="Penalise tokens already present; 1 is off.")
    ] = 1.0,
    stop: Annotated[
        list[str] | None,
        typer.Option("--stop", help="Stop when this text appears (repeatable); not printed."),
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed; a fixed seed reproduces the sample.")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most likely token.")] = False,
    num_samples: Annotated[int, typer.Option("--num-samples", help="How many samples to draw.")] = 1,
    ignore_eos: Annotated[
        bool,
        typer.Option("--ignore-eos", help="Keep going past the end of a document (shown as a blank line)."),
    ] = False,
    checkpoint: CheckpointOption = "last",
    device: DeviceOption = "auto",
) -> None:
    """Stream text from a trained model, continuing a prompt."""
    if num_samples < 1:
        raise UsageError(f"--num-samples must be at least 1, got {num_samples}")
    cfg = build_sampling_config(
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        min_p=min_p,
        repetition_penalty=repetition_penalty,
        greedy=greedy,
        max_new_tokens=max_tokens,
        stop=list(stop or []),
        seed=seed,
        ignore_eos=ignore_eos,
    )
    text = _read_prompt(prompt)
    model, tokenizer, _config, step, path = load_for_inference(run, checkpoint, device)
    device_ = next(model.parameters()).device
    err_console.print(f"[dim]{path} (step {step}) on {device_}[/]", soft_wrap=True)
    if text is not None:
        _samples(model, tokenizer, text, cfg, device_, num_samples)
        return
    err_console.print("[dim]type a prompt and press Enter; Ctrl+D or :q quits, Ctrl+C stops a sample[/]")
    interactive_loop(
        _terminal_lines(), lambda line: _samples(model, tokenizer, line, cfg, device_, num_samples)
    )


def _packed_dir(config: dict[str, Any], checkpoint: Path) -> Path:
    """The packed shards of the run's data config (data.root is relative to where training ran)."""
    from alm.config import from_dict
    from alm.data.config import DataConfig
    from alm.data.pipeline import data_paths

    data_cfg = from_dict(DataConfig, config.get("data"), source=f"{checkpoint} (data config)")
    return data_paths(data_cfg).packed_dir


@handle_errors
def evaluate(
    run: RunArgument,
    text: Annotated[
        Path | None, typer.Option("--text", "-t", help="Evaluate on this UTF-8 text file instead of a split.")
    ] = None,
    split: Annotated[
        str, typer.Option(help="Packed split of the run's data to evaluate (without --text).")
    ] = "val",
    stride: Annotated[
        int | None, typer.Option(help="With --text: window step in tokens (default: half the context).")
    ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", help="Windows per forward pass.")] = 8,
    max_batches: Annotated[
        int | None, typer.Option("--max-batches", help="Without --text: stop after this many batches.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")] = False,
    checkpoint: CheckpointOption = "last",
    device: DeviceOption = "auto",
) -> None:
    """Loss, perplexity and bits per byte of a trained model on a text file or a packed split."""
    from alm.evaluate import evaluate_split, evaluate_text

    if text is None and stride is not None:
        raise UsageError("--stride applies to --text only (a packed split is read in whole windows)")
    if text is not None and max_batches is not None:
        raise UsageError("--max-batches applies to a packed split only, not to --text")
    if text is not None:
        if not text.is_file():
            raise UsageError(f"text file not found: {text}")
        try:
            content = text.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{text} is not UTF-8 text") from None
    model, tokenizer, config, step, path = load_for_inference(run, checkpoint, device)
    device_ = next(model.parameters()).device
    if text is not None:
        source = str(text)
        result = evaluate_text(
            model, tokenizer, content, stride=stride, batch_size=batch_size, device=device_
        )
    else:
        packed = _packed_dir(config, path)
        source = f"{packed} ({split})"
        result = evaluate_split(
            model,
            packed,
            split,
            batch_size=batch_size,
            max_batches=max_batches,
            tokenizer_fingerprint=tokenizer.fingerprint,
            device=device_,
        )
    if as_json:
        record = {"checkpoint": str(path), "step": step, "source": source, **result.to_dict()}
        sys.stdout.write(json.dumps(record) + "\n")
        return
    console.print(f"[bold]{path}[/] (step {step}) on {source}", soft_wrap=True)
    console.print(
        f"  tokens {result.tokens:,}   bytes {result.bytes:,}   loss {result.mean_loss:.4f}   "
        f"perplexity {result.perplexity:.2f}   bits/byte {result.bits_per_byte:.4f}",
        soft_wrap=True,
    )


def register(app: typer.Typer) -> None:
    app.command("sample", rich_help_panel="Use")(sample)
    app.command("eval", rich_help_panel="Use")(evaluate)
