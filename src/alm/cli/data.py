"""`alm data …`, `alm tokenizer …` and `alm pack`: build and inspect the dataset stage by stage.

Each command starts from the settings the data root was last built with (`<root>/settings.json`; the built-in
tiny Shakespeare when there are none), then applies `--config corpus.yaml`, then `--set key=value` overrides
relative to the data config (a leading `data.` is accepted too) and the command's own flags. So flags given to
one stage carry to the next, and other tokenizer settings build a new tokenizer beside the old one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alm.cli.common import DataSetOption, console, handle_errors, overrides, read_stdin_text
from alm.cli.help import examples

if TYPE_CHECKING:
    from alm.data.config import DataConfig
    from alm.tokenizer import Tokenizer

PANEL = "Data"
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="Data config YAML (see configs/corpus.yaml); default: what the data root was last built with.",
    ),
]
ForceOption = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Rebuild even if up to date, replacing output built from other inputs (or not by alm).",
    ),
]
TokenizerOption = Annotated[
    Path | None,
    typer.Option(
        "--tokenizer",
        help="tokenizer.json, or a directory holding one (data/tokenizer-*, a run); "
        "default: the tokenizer ./data was last built with.",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print the result as one JSON object.")]

data_app = typer.Typer(help="Prepare and inspect corpora: clean text, splits, shards.", no_args_is_help=True)
tokenizer_app = typer.Typer(
    help="Train and use tokenizers (byte-level BPE or Unigram).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data", rich_help_panel=PANEL)
    app.add_typer(tokenizer_app, name="tokenizer", rich_help_panel=PANEL)
    app.command(
        "pack",
        rich_help_panel=PANEL,
        epilog=examples(
            "alm pack  # text, tokenizer and shards of ./data, each built when missing",
            "alm pack --config my-corpus.yaml",
            "alm pack --set tokenizer.vocab_size=8192  # another tokenizer, packed beside the first",
        ),
    )(pack)
    from alm.cli.chat import chat_example  # defined beside `alm chat`, which uses the same data

    data_app.command(
        "chat-example",
        epilog=examples(
            "alm data chat-example  # -> data/chat/",
            "alm data chat-example --out my-chat --seed 1 --no-chatterbot",
        ),
    )(chat_example)


def load_data_config(config: Path | None, sets: list[str] | None) -> DataConfig:
    """The data root's recorded settings, then a corpus.yaml (or a run's config.yaml, whose `data:` section is
    used), then `--set` overrides."""
    from alm.config import apply_overrides, qualify_overrides, read_yaml
    from alm.data.settings import resolve_data_config

    data: dict[str, Any] = {}
    if config is not None:
        data = read_yaml(config)
        if isinstance(data.get("data"), dict) and "model" in data:  # a run's (with init, finetune, …)
            data = data["data"]
    relative = [s.partition(".")[2] for s in qualify_overrides(overrides(sets), reads=("data",))]
    data = apply_overrides(data, relative)
    return resolve_data_config(data, source=str(config) if config else None)


def _say(message: str) -> None:
    console.print(message, soft_wrap=True, highlight=False)


# ------------------------------------------------------------------------------------------------- data


@data_app.command(
    "prepare",
    epilog=examples(
        "alm data prepare  # the built-in tiny Shakespeare",
        "alm data prepare --config my-corpus.yaml",
        "alm data prepare --set split=blocks --force  # other split settings replace the corpus",
    ),
)
@handle_errors
def prepare(config: ConfigOption = None, set_: DataSetOption = None, force: ForceOption = False) -> None:
    """Read the sources, clean and deduplicate documents, split train/val into <root>/clean/."""
    from alm.data.inspect import describe_clean
    from alm.data.pipeline import data_paths, ensure_clean

    cfg = load_data_config(config, set_)
    ensure_clean(cfg, console=console, force=force, rebuild=force)
    _print_report(describe_clean(data_paths(cfg).clean_dir))


@data_app.command(
    "info",
    epilog=examples(
        "alm data info",
        "alm data info data --verify  # re-read every shard",
        "alm data info data/clean --json",
    ),
)
@handle_errors
def info(
    path: Annotated[
        Path,
        typer.Argument(
            help="A data root, a stage directory (clean, tokenizer-*, packed-*), a shard or a manifest."
        ),
    ] = Path("data"),
    verify: Annotated[
        bool, typer.Option("--verify", help="Also read every shard and text file: hashes and token ids.")
    ] = False,
    as_json: JsonOption = False,
) -> None:
    """Describe what is at PATH; exits 1 when something is damaged (shard sizes, hashes with --verify)."""
    from alm.data.inspect import describe, problems
    from alm.errors import DataError

    report = describe(path, verify=verify)
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)
    found = problems(report)
    if found:
        raise DataError(
            f"{len(found)} problem(s) in {path}: {found[0]}",
            hint="rebuild the damaged stage with --force (`alm data prepare`, `alm tokenizer train`, `alm pack`)",
        )
    if verify and not as_json:
        _say("verified: every hash and token id checks out")


def _print_report(report: dict[str, Any]) -> None:
    """The text form of an `alm.data.inspect` report."""
    kind = report["kind"]
    if kind == "root":
        current = report.get("current") or {}
        _say(f"[bold]{report['path']}[/] (data root)")
        if current:
            _say(f"  current  {current['tokenizer']}, {current['packed']} (from settings.json)")
        for part in [*report["clean"], *report["tokenizers"], *report["packed"]]:
            _print_report(part)
    elif kind == "clean":
        _say(f"[bold]{report['path']}[/] (clean text)")
        for split, s in report["splits"].items():
            _say(
                f"  {split:5s} {s['documents']:>10,} documents {s['bytes'] / 1e6:>9.2f} MB  "
                f"sha256 {s['sha256'][:16]}…"
            )
        _say(f"  split   {report['split']['description']}")
        _say(f"  source  {report.get('source') or '?'}")
        _say("  dropped " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in report["dropped"].items()))
    elif kind == "tokenizer":
        _say(
            f"[bold]{report['path']}[/]: {report['backend']} tokenizer, vocab {report['vocab_size']:,}, "
            f"fingerprint {report['fingerprint'][:16]}…"
        )
        ids = report["special_ids"]
        _say(f"  special ids  bos={ids['bos']} eos={ids['eos']} pad={ids['pad']}")
        chat = report["chat_ids"]
        shown = (
            " ".join(f"{name}={i}" for name, i in chat.items())
            if all(i is not None for i in chat.values())
            else "none (trained before they were reserved)"
        )
        _say(f"  chat ids     {shown}")
        sample = report.get("sample") or {}
        if sample:
            _say(
                f"  trained on   {sample.get('bytes', 0) / 1e6:.2f} MB ({sample.get('documents', 0):,} documents) "
                f"of corpus {str(report.get('corpus_sha256') or '?')[:16]}… in {report.get('seconds') or 0:.1f} s"
            )
    elif kind == "packed":
        _say(
            f"[bold]{report['path']}[/]: packed with tokenizer {str(report['tokenizer_fingerprint'])[:12]}, "
            f"vocab {report['vocab_size']:,}, {report['total_tokens']:,} tokens"
        )
        for split, s in report["splits"].items():
            _say(
                f"  {split:5s} {s['tokens']:>12,} tokens in {s['shards']} shard(s), {s['documents']:,} "
                f"documents, {s['source_bytes'] / 1e6:.2f} MB text ({s['bytes_per_token']:.2f} bytes/token)"
            )
    elif kind == "shard":
        _say(
            f"[bold]{report['path']}[/]: alm token shard v{report['version']}, {report['num_tokens']:,} tokens "
            f"({report['token_bytes']}-byte ids), vocab {report['vocab_size']:,}"
        )
    for problem in report.get("problems", []):
        _say(f"  [red]problem:[/] {problem}")


# -------------------------------------------------------------------------------------------- tokenizer


@tokenizer_app.command(
    "train",
    epilog=examples(
        "alm tokenizer train --vocab-size 2048",
        "alm tokenizer train --type unigram --vocab-size 1024  # built beside the first",
        "alm tokenizer train --config my-corpus.yaml",
    ),
)
@handle_errors
def tokenizer_train(
    config: ConfigOption = None,
    set_: DataSetOption = None,
    type_: Annotated[str | None, typer.Option("--type", help="bpe or unigram.")] = None,
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", help="Vocabulary size (with 256 bytes + 7 special tokens).")
    ] = None,
    max_bytes: Annotated[int | None, typer.Option("--max-bytes", help="Cap on training text bytes.")] = None,
    max_lines: Annotated[int | None, typer.Option("--max-lines", help="Cap on training text lines.")] = None,
    force: ForceOption = False,
) -> None:
    """Train a tokenizer on the clean train split (preparing the text first if needed).

    It goes to <root>/tokenizer-<settings>/; later data commands use it."""
    from alm.data.inspect import describe_tokenizer
    from alm.data.pipeline import ensure_tokenizer

    sets = list(overrides(set_))
    for key, value in (
        ("type", type_),
        ("vocab_size", vocab_size),
        ("max_bytes", max_bytes),
        ("max_lines", max_lines),
    ):
        if value is not None:
            sets.append(f"tokenizer.{key}={value}")
    cfg = load_data_config(config, sets)
    paths = ensure_tokenizer(cfg, console=console, force=force, rebuild=force)
    _print_report(describe_tokenizer(paths.tokenizer_path))


@tokenizer_app.command(
    "encode",
    epilog=examples(
        'alm tokenizer encode "Hello, world"',
        'alm tokenizer encode "café 🙂" --tokens',
        'alm tokenizer encode "Hello" --tokenizer runs/demo  # a run\'s own tokenizer',
    ),
)
@handle_errors
def tokenizer_encode(
    text: Annotated[str, typer.Argument(help="Text to encode, or - to read standard input.")],
    tokenizer: TokenizerOption = None,
    ids: Annotated[
        bool, typer.Option("--ids/--tokens", help="Print ids (default) or the token strings.")
    ] = True,
) -> None:
    """Encode TEXT and print its token ids (or tokens)."""
    tok = _load_tokenizer(tokenizer)
    text = read_stdin_text() if text == "-" else _checked_text(text)
    encoded = tok.encode(text)
    if ids:
        typer.echo(" ".join(map(str, encoded)))
    else:
        typer.echo(" ".join(_show_token(tok.token_bytes(i)) for i in encoded))
    typer.echo(f"{len(encoded)} tokens, {len(text.encode('utf-8'))} bytes", err=True)


def _checked_text(text: str) -> str:
    """TEXT as given, or a UsageError when it is not valid UTF-8 (the shell passes such bytes through as lone
    surrogates, which no tokenizer can encode)."""
    from alm.errors import UsageError

    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = ord(text[exc.start])
        byte = f"byte 0x{bad - 0xDC00:02x}" if 0xDC80 <= bad <= 0xDCFF else f"U+{bad:04X}"
        raise UsageError(
            f"TEXT is not valid UTF-8 ({byte} at character {exc.start})",
            hint="pass UTF-8 text (convert with e.g. `iconv -f latin1 -t utf-8`)",
        ) from None
    return text


def _show_token(data: bytes) -> str:
    """A token as a quoted string, or as hex bytes when it holds part of a UTF-8 character."""
    try:
        return json.dumps(data.decode("utf-8"), ensure_ascii=False)
    except UnicodeDecodeError:
        return "<" + " ".join(f"{b:02x}" for b in data) + ">"


@tokenizer_app.command(
    "decode",
    epilog=examples(
        "alm tokenizer decode 72 101 108",
        "alm tokenizer decode 5,17,42 --tokenizer runs/demo",
    ),
)
@handle_errors
def tokenizer_decode(
    ids: Annotated[list[str], typer.Argument(help="Token ids (space or comma separated).")],
    tokenizer: TokenizerOption = None,
) -> None:
    """Decode token ids back to text, e.g. `alm tokenizer decode $(alm tokenizer encode "Hello")`."""
    from alm.errors import UsageError

    values = []
    for part in ",".join(ids).replace("[", "").replace("]", "").split(","):
        for item in part.split():
            try:
                values.append(int(item))
            except ValueError:
                raise UsageError(
                    f"not a token id: {item!r}", hint="pass integers, e.g. alm tokenizer decode 5 17 42"
                ) from None
    tok = _load_tokenizer(tokenizer)
    bad = [v for v in values if not 0 <= v < tok.vocab_size]
    if bad:
        raise UsageError(f"token id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1})")
    typer.echo(tok.decode(values), nl=False)
    typer.echo()


@tokenizer_app.command(
    "info",
    epilog=examples(
        "alm tokenizer info",
        "alm tokenizer info runs/demo --json",
    ),
)
@handle_errors
def tokenizer_info(
    path: Annotated[
        Path | None,
        typer.Argument(help="tokenizer.json or a directory holding one; default: the current one of ./data."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Describe a tokenizer: backend, vocabulary size, special ids, fingerprint, training sample."""
    from alm.data.inspect import describe_tokenizer

    report = describe_tokenizer(_tokenizer_file(path))
    if as_json:
        typer.echo(json.dumps(report, indent=2))
    else:
        _print_report(report)


def _load_tokenizer(path: Path | None) -> Tokenizer:
    from alm.tokenizer import Tokenizer

    return Tokenizer.load(_tokenizer_file(path))


def _tokenizer_file(path: Path | None) -> Path:
    """The tokenizer.json at `path`, or the one ./data was last built with; a missing file is a UsageError
    (exit 2, like any file the user names that is not there)."""
    from alm.data.pipeline import data_paths
    from alm.errors import UsageError
    from alm.tokenizer.tokenizer import resolve_tokenizer_path

    if path is None:
        file = data_paths(load_data_config(None, None)).tokenizer_path
        if not file.is_file():
            raise UsageError(
                f"no tokenizer in {file.parent.parent} for its current settings ({file.parent.name} is missing)",
                hint="train one with `alm tokenizer train`, or pass --tokenizer PATH",
            )
        return file
    file = resolve_tokenizer_path(path)
    if not file.is_file():
        raise UsageError(
            f"tokenizer not found: {file}",
            hint="pass --tokenizer with a tokenizer.json or a directory holding one; "
            "`alm data info` lists the tokenizers under ./data",
        )
    return file


# ------------------------------------------------------------------------------------------------ pack


@handle_errors
def pack(config: ConfigOption = None, set_: DataSetOption = None, force: ForceOption = False) -> None:
    """Tokenise the clean splits into uint32 shards (building the text and the tokenizer first if missing).

    The shards go to <root>/packed-<tokenizer settings>/."""
    from alm.data.inspect import describe_packed
    from alm.data.pipeline import ensure_pack

    cfg = load_data_config(config, set_)
    paths = ensure_pack(cfg, console=console, force=force, rebuild=force)
    _print_report(describe_packed(paths.packed_dir))
