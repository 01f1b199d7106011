"""`alm sample` (stream text from a trained run) and `alm eval` (loss, perplexity and bits per byte)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from alm.cli.common import (
    DeviceOption,
    console,
    err_console,
    handle_errors,
    overrides,
    progress_bar,
    read_stdin_text,
    report_error,
    set_option,
)
from alm.cli.complete import complete_run
from alm.cli.help import examples
from alm.cli.prompts import suggested_prompt
from alm.cli.sampling import sampling_options, spec_option
from alm.errors import DataError, UsageError
from alm.rundir import DEFAULT_RUNS_ROOT
from alm.sample.options import (
    CHECKPOINT,
    COMPILE,
    NUM_SAMPLES,
    PROMPT,
    QUANTIZE,
    RUNS_DIR,
    SamplingConfig,
    check_num_samples,
    sampling_config,
)

if TYPE_CHECKING:
    from alm.sample.stream import BatchStream

RunArgument = Annotated[
    str,
    typer.Argument(
        metavar="RUN|CHECKPOINT",
        help="A run name (under --runs-dir), a run directory or a .pt file.",
        autocompletion=complete_run,
    ),
]
RunsDirOption = Annotated[str, spec_option(RUNS_DIR)]
CheckpointOption = Annotated[str | None, spec_option(CHECKPOINT)]
QuantizeOption = Annotated[str | None, spec_option(QUANTIZE)]
QUIT_COMMANDS = (":q", ":quit", ":exit")


def resolve_checkpoint_arg(run: str, which: str | None, runs_dir: Path | str | None = None) -> Path:
    """The checkpoint file for RUN|CHECKPOINT (a name under `runs_dir`, default runs/); anything missing is a
    usage error (exit 2) naming what exists.

    `which=None` (no --checkpoint) is the run's best.pt when it has one, else last.pt; stderr says which."""
    from alm.train.checkpoint import resolve_checkpoint

    root = Path(runs_dir) if runs_dir else DEFAULT_RUNS_ROOT
    try:
        path = resolve_checkpoint(run, which, root=root)
    except DataError as exc:  # the run exists but lacks that checkpoint: the user named something absent
        raise UsageError(exc.message, hint=exc.hint) from None
    except UsageError as exc:
        runs = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        listing = f"runs under {root}/: {', '.join(runs)}" if runs else f"there are no runs under {root}/"
        raise UsageError(exc.message, hint=f"{exc.hint} ({listing})" if exc.hint else listing) from None
    if which is None and not Path(run).is_file():
        best = path.name == "best.pt"
        why = (
            "its lowest val loss; --checkpoint last for the latest" if best else "the run has no best.pt yet"
        )
        err_console.print(f"[dim]checkpoint {path.name}: {why}[/]")
    return path


def load_for_inference(
    run: str,
    which: str | None,
    device: str,
    quantize: str | None = None,
    *,
    runs_dir: Path | str | None = None,
):
    """(model, tokenizer, config, step, checkpoint path) for `alm sample` / `alm eval` / `alm chat` /
    `alm serve`; `quantize` ("int8") swaps the linear layers for quantised ones (`--quantize`)."""
    from alm.train.checkpoint import load_model

    if quantize is not None:
        from alm.model.quant import check_mode

        check_mode(quantize)  # before the load, which can take a while
    path = resolve_checkpoint_arg(run, which, runs_dir)
    model, tokenizer, config, step = load_model(path, device=device)
    if quantize is not None:
        from alm.model.quant import quantize as quantize_model

        quantize_model(model, quantize)
    return model, tokenizer, config, step, path


def build_sampling_config(**values: Any) -> SamplingConfig:
    """A SamplingConfig from field values; a bad value exits 2 naming its flag (see alm.sample.options)."""
    return sampling_config(values)


def _read_prompt(prompt: str | None) -> str | None:
    """The prompt text; None means "ask interactively". Text that is not UTF-8 is a usage error (exit 2)."""
    from alm.sample.text import check_text

    if prompt == "-":
        return read_stdin_text("--prompt -: stdin")
    if prompt is not None:
        return check_text(prompt, "--prompt")
    if sys.stdin.isatty():
        return None
    raise UsageError(
        "no prompt given and stdin is not a terminal",
        hint="pass --prompt TEXT, or --prompt - to read the prompt from stdin",
    )


def _samples(
    model, tokenizer, prompt: str, cfg: SamplingConfig, device, num_samples: int, compile: bool
) -> None:
    """Draw `num_samples` samples as one batch and print them in order, each streamed as soon as the ones
    before it are complete, with a one-line summary per sample on stderr."""
    from alm.sample import generate_many

    cfgs = cfg.per_sample(num_samples)
    mode = "on" if compile else "off"
    stream = generate_many(model, tokenizer, prompt, cfgs, device=device, compile=mode)
    if stream.infos[0].prompt_trimmed:
        err_console.print(
            f"[yellow]notice:[/] the prompt is longer than the model's context ({model.config.max_seq_len} "
            f"tokens); its first {stream.infos[0].prompt_trimmed} tokens were dropped"
        )
    _print_in_order(stream, prompt, time.perf_counter())
    if compile and not stream.engine.decoder.compiled:
        err_console.print(
            f"[yellow]note:[/] the decode step ran eagerly: {stream.engine.decoder.compile_note}"
        )


def _print_in_order(stream: BatchStream, prompt: str, start: float) -> None:
    out = sys.stdout
    n = len(stream.infos)
    held: list[list[str]] = [[] for _ in range(n)]
    current = 0

    def begin(i: int) -> None:
        if n > 1:
            err_console.rule(f"sample {i + 1}/{n}", style="dim")
            if not out.isatty():  # piped: the samples stay apart in the output too
                out.write(f"--- sample {i + 1}/{n} ---\n")
        if out.isatty():
            console.print(prompt, style="bold", end="", markup=False, soft_wrap=True)
        out.write("".join(held[i]))
        out.flush()

    def end(i: int) -> None:
        out.write("\n")
        out.flush()
        info = stream.infos[i]
        compiling = stream.engine.decoder.compile_seconds  # a minute once per model: not the decode speed
        elapsed = max(time.perf_counter() - start - compiling, 1e-9)
        compiled = f", compiling {compiling:.0f} s" if compiling >= 0.5 else ""
        err_console.print(
            f"[dim]{info.new_tokens} tokens, {info.new_tokens / elapsed:.1f} tok/s{compiled}, "
            f"stopped by {info.stop_reason or 'interrupt'}, seed {info.seed}[/]"
        )

    ended = [False] * n
    begin(0)
    try:
        for i, piece, done in stream:
            if i == current:
                out.write(piece)
                out.flush()
            else:
                held[i].append(piece)
            ended[i] = done
            while current < n and ended[current]:
                end(current)
                current += 1
                if current < n:
                    begin(current)
    finally:
        stream.close()
        for i in range(current, n):  # interrupted: what each unfinished sample has so far
            if i > current:
                begin(i)
            end(i)


def interactive_loop(lines: Iterable[str], generate_one, default: str | None = None) -> None:
    """Generate for each prompt line until EOF or :q; an empty line prompts with `default` (when there is one).
    Ctrl+C stops the current sample, not the session, and a line that cannot be sampled (e.g. invalid text) is
    reported and skipped."""
    for line in lines:
        prompt = line.rstrip("\n")
        if prompt.strip() in QUIT_COMMANDS:
            return
        if not prompt.strip():
            if default is None:
                continue
            prompt = default
        try:
            generate_one(prompt)
        except KeyboardInterrupt:
            err_console.print("[yellow](stopped)[/]")
        except UsageError as exc:
            report_error(exc)


def _terminal_lines() -> Iterable[str]:
    while True:
        try:
            yield console.input("[bold cyan]prompt>[/] ")
        except EOFError:
            console.print()
            return


@handle_errors
@sampling_options
def sample(
    run: RunArgument,
    prompt: Annotated[str | None, spec_option(PROMPT)] = PROMPT.default,
    sampling: SamplingConfig | None = None,
    num_samples: Annotated[int, spec_option(NUM_SAMPLES)] = NUM_SAMPLES.default,
    compile: Annotated[bool, spec_option(COMPILE)] = COMPILE.default,
    checkpoint: CheckpointOption = CHECKPOINT.default,
    device: DeviceOption = "auto",
    quantize: QuantizeOption = QUANTIZE.default,
    runs_dir: RunsDirOption = RUNS_DIR.default,
) -> None:
    """Stream text from a trained model, continuing a prompt."""
    assert sampling is not None  # filled in from the sampling flags by @sampling_options
    check_num_samples(num_samples)
    text = _read_prompt(prompt)
    model, tokenizer, config, step, path = load_for_inference(
        run, checkpoint, device, quantize, runs_dir=runs_dir
    )
    device_ = next(model.parameters()).device
    weights = f", {quantize} weights" if quantize else ""
    err_console.print(f"[dim]{path} (step {step}) on {device_}{weights}[/]", soft_wrap=True)
    if text is not None:
        _samples(model, tokenizer, text, sampling, device_, num_samples, compile)
        return
    default = suggested_prompt(config.get("train", {}).get("sample_prompt", ""), config.get("data") or {})
    enter = f" (Enter alone: {default!r})" if default is not None else ""
    err_console.print(
        f"[dim]type a prompt and press Enter{escape(enter)}; Ctrl+D or :q quits, Ctrl+C stops a sample[/]"
    )
    interactive_loop(
        _terminal_lines(),
        lambda line: _samples(model, tokenizer, line, sampling, device_, num_samples, compile),
        default,
    )


def _packed_dir(config: dict[str, Any], checkpoint: Path, sets: list[str]) -> Path:
    """The packed shards of the run's data config plus `--set data.…` (data.root is relative to where training
    ran: `--set data.root=DIR` points elsewhere)."""
    from alm.config import build
    from alm.data.config import DataConfig
    from alm.data.pipeline import data_paths

    data_cfg = build(
        DataConfig, config.get("data"), sets, section="data", source=f"{checkpoint} (data config)"
    )
    return data_paths(data_cfg).packed_dir


@handle_errors
def evaluate(
    run: RunArgument,
    text: Annotated[
        Path | None, typer.Option("--text", help="Evaluate on this UTF-8 text file instead of a split.")
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
    checkpoint: CheckpointOption = CHECKPOINT.default,
    device: DeviceOption = "auto",
    set_: Annotated[list[str] | None, set_option("data.root=/elsewhere/data")] = None,
    task: Annotated[
        str | None,
        typer.Option(
            "--task", help="Accuracy of a chat run on a task: arithmetic, arithmetic-choice or a task .jsonl."
        ),
    ] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="With --task: score only the first N examples.")
    ] = None,
    runs_dir: RunsDirOption = RUNS_DIR.default,
) -> None:
    """Loss, perplexity and bits per byte on a text file or a packed split; with --task, task accuracy.

    A task is scored by exact match of greedy replies, or by multiple choice, on a fine-tuned run.

    Runs under the precision training would use on this device (fp32 on the CPU), as training's own evals do.
    """
    from alm.device import choose_precision, probe_capabilities
    from alm.evaluate import evaluate_split, evaluate_text

    if task is not None or limit is not None:
        from alm.cli.finetune import task_eval

        others = {"--text": text, "--stride": stride, "--max-batches": max_batches, "--set": set_ or None}
        given = [flag for flag, value in others.items() if value is not None] + (
            ["--split"] * (split != "val")
        )
        if task is None or given:
            raise UsageError(
                f"{', '.join(given) or '--limit'} does not apply here: --task measures a task's accuracy, the "
                "other options perplexity",
                hint="use --task NAME|FILE.jsonl [--limit N] on its own",
            )
        task_eval(
            run,
            task,
            limit=limit,
            checkpoint=checkpoint,
            device=device,
            as_json=as_json,
            runs_dir=Path(runs_dir),
        )
        return
    for flag, value in (("--batch-size", batch_size), ("--stride", stride), ("--max-batches", max_batches)):
        if value is not None and value < 1:
            raise UsageError(f"{flag} must be at least 1, got {value}")
    if text is None and stride is not None:
        raise UsageError("--stride applies to --text only (a packed split is read in whole windows)")
    if text is not None and max_batches is not None:
        raise UsageError("--max-batches applies to a packed split only, not to --text")
    if text is not None and set_:
        raise UsageError("--set changes the run's data config, which --text does not read")
    if text is not None:
        if not text.is_file():
            raise UsageError(f"text file not found: {text}")
        try:
            content = text.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise UsageError(f"{text} is not UTF-8 text") from None
    model, tokenizer, config, step, path = load_for_inference(run, checkpoint, device, runs_dir=runs_dir)
    device_ = next(model.parameters()).device
    precision = choose_precision(probe_capabilities(device_))
    if text is not None:
        source = str(text)
        with progress_bar(f"eval {text.name} (tokens)") as progress:
            result = evaluate_text(
                model,
                tokenizer,
                content,
                stride=stride,
                batch_size=batch_size,
                device=device_,
                precision=precision,
                progress=progress,
            )
    else:
        packed = _packed_dir(config, path, overrides(set_))
        source = f"{packed} ({split})"
        with progress_bar(f"eval {split} split (tokens)") as progress:
            result = evaluate_split(
                model,
                packed,
                split,
                batch_size=batch_size,
                max_batches=max_batches,
                tokenizer_fingerprint=tokenizer.fingerprint,
                device=device_,
                precision=precision,
                progress=progress,
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
    app.command(
        "sample",
        rich_help_panel="Use",
        epilog=examples(
            'alm sample demo --prompt "ROMEO:" --greedy',
            'alm sample demo --prompt "ROMEO:" --temperature 0.8 --top-p 0.9 --seed 7 --num-samples 3',
            "alm sample demo --checkpoint last",
            "alm sample runs/demo/checkpoints/best.pt --prompt -  # the prompt from stdin",
            "alm sample demo  # no prompt on a terminal: an interactive loop",
        ),
    )(sample)
    app.command(
        "eval",
        rich_help_panel="Use",
        epilog=examples(
            "alm eval demo  # the run's packed val split",
            "alm eval demo --text notes.txt --stride 128 --json",
            "alm eval demo --set data.root=/elsewhere/data  # the run's data moved",
            "alm eval micro-sft --task arithmetic",
        ),
    )(evaluate)
