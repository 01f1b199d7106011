"""`alm chat RUN`: a multi-turn conversation with a fine-tuned run, on a terminal or scripted through stdin.

On a terminal each turn is typed at a `you>` prompt and the reply streams as it is generated; Ctrl+C stops a
reply (what was said stays in the history), Ctrl+D quits. When stdin is not a terminal each line is one user
turn and stdout gets the replies alone, one after each turn, so `printf 'Hi\\n/save chat.jsonl\\n' | alm chat RUN`
works in scripts; notices go to stderr. Commands start with a slash (see COMMANDS).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from alm.cli.common import DeviceOption, console, err_console, handle_errors
from alm.cli.help import examples
from alm.cli.sample import (
    CheckpointOption,
    QuantizeOption,
    RunArgument,
    build_sampling_config,
    load_for_inference,
)
from alm.errors import UsageError

if TYPE_CHECKING:
    from alm.chat.session import ChatSession

COMMANDS = {
    "/reset": "forget the conversation (the system prompt stays)",
    "/system TEXT": "set the system prompt; /system alone removes it",
    "/save FILE": "write the conversation as one JSONL line (the fine-tuning format)",
    "/help": "this list",
    "/quit": "end the chat (also Ctrl+D)",
}


def _notice(message: str) -> None:
    err_console.print(f"[dim]{escape(message)}[/]", soft_wrap=True)  # it may quote user text: no markup


def _help() -> str:
    return "\n".join(f"  {name:<14} {what}" for name, what in COMMANDS.items())


def run_command(session: ChatSession, line: str) -> bool:
    """Carry out one slash command; False means quit."""
    name, _, arg = line.strip().partition(" ")
    arg = arg.strip()
    if name in ("/quit", "/exit", "/q"):
        return False
    if name == "/reset":
        session.reset()
        _notice("conversation reset")
    elif name == "/system":
        session.set_system(arg)
        _notice(f"system prompt set: {arg}" if arg else "system prompt removed")
    elif name == "/save":
        if not arg:
            _notice("usage: /save FILE")
            return True
        try:
            path = session.save(arg)
        except OSError as exc:
            _notice(f"cannot save to {arg}: {exc.strerror or exc}")
            return True
        _notice(f"saved {len(session.messages)} messages to {path}")
    elif name == "/help":
        _notice(_help())
    else:
        _notice(f"unknown command {name}; commands:\n{_help()}")
    return True


def say_reply(session: ChatSession, text: str, *, label: bool) -> None:
    """Stream the reply to `text` to stdout (after an `assistant>` label on a terminal), with notices on stderr."""
    left_out_before = session.left_out
    stream = session.reply(text)
    context = session.model.config.max_seq_len
    if stream.left_out > left_out_before:
        _notice(
            f"notice: the conversation no longer fits the context ({context} tokens with room for the reply); "
            f"its {stream.left_out} oldest messages are left out of the prompt"
        )
    if stream.info.prompt_trimmed:
        _notice(
            f"notice: the last message is longer than the context; its first "
            f"{stream.info.prompt_trimmed} tokens were dropped"
        )
    out = sys.stdout
    if label:
        console.print("assistant> ", style="bold green", end="")
    try:
        for piece in stream:
            out.write(piece)
            out.flush()
    finally:
        stream.close()
        out.write("\n")
        out.flush()


def chat_loop(session: ChatSession, lines: Iterable[str], *, label: bool) -> None:
    """One turn per line until EOF or /quit; Ctrl+C stops the reply being generated, not the chat."""
    for line in lines:
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        if text.startswith("/"):
            if not run_command(session, text):
                return
            continue
        try:
            say_reply(session, text, label=label)
        except KeyboardInterrupt:
            _notice("(stopped)")


def _terminal_lines() -> Iterator[str]:
    while True:
        try:
            yield console.input("[bold cyan]you>[/] ")
        except EOFError:
            console.print()
            return


@handle_errors
def chat(
    run: RunArgument,
    system: Annotated[str | None, typer.Option("--system", help="A system prompt to start with.")] = None,
    max_tokens: Annotated[int, typer.Option("--max-tokens", "-n", help="Most new tokens per reply.")] = 256,
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
        typer.Option("--stop", help="End a reply when this text appears (repeatable); not printed."),
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Random seed; a fixed seed reproduces the replies.")
    ] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most likely token.")] = False,
    checkpoint: CheckpointOption = None,
    device: DeviceOption = "auto",
    quantize: QuantizeOption = None,
) -> None:
    """Chat with a fine-tuned run: multi-turn, streaming; /help lists the commands."""
    from alm.chat.format import has_chat_tokens
    from alm.chat.session import ChatSession

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
    )
    model, tokenizer, _config, step, path = load_for_inference(run, checkpoint, device, quantize)
    device_ = next(model.parameters()).device
    if not has_chat_tokens(tokenizer):
        raise UsageError(
            f"run {run} cannot chat: its tokenizer has no chat tokens (it was not fine-tuned for chat)",
            hint=f"fine-tune it first with `alm sft {run} --data FILE.jsonl`",
        )
    session = ChatSession(model, tokenizer, cfg, device=device_, system=system)
    interactive = sys.stdin.isatty()
    err_console.print(f"[dim]{path} (step {step}) on {device_}[/]", soft_wrap=True)
    if interactive:
        _notice("type a message and press Enter; /help lists commands, Ctrl+C stops a reply, Ctrl+D quits")
    chat_loop(session, _terminal_lines() if interactive else sys.stdin, label=interactive)


@handle_errors
def chat_example(
    out: Annotated[Path, typer.Option("--out", "-o", help="Directory to write the JSONL files into.")] = Path(
        "data/chat"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the synthetic problems, splits and shuffles.")] = 0,
    train: Annotated[int, typer.Option("--train", help="Arithmetic problems in the train split.")] = 2000,
    test: Annotated[int, typer.Option("--test", help="Arithmetic problems in the test split.")] = 200,
    no_chatterbot: Annotated[
        bool, typer.Option("--no-chatterbot", help="Leave out the chatterbot-corpus conversations.")
    ] = False,
) -> None:
    """Write example chat data: chatterbot-corpus conversations, a synthetic arithmetic task, preference pairs."""
    from alm.chat.examples import write_chat_examples

    files = write_chat_examples(out, seed=seed, n_train=train, n_test=test, chatterbot=not no_chatterbot)
    width = max(len(str(file.path)) for file in files)
    for file in files:
        name = escape(f"{file.path!s:<{width}}")
        console.print(f"  {name}  {file.lines:>6,} lines  [dim]{file.what}[/]", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command(
        "chat",
        rich_help_panel="Use",
        epilog=examples(
            "alm chat micro-sft",
            'alm chat micro-sft --system "Answer briefly." --greedy',
        ),
    )(chat)
