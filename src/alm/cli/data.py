"""`alm data …`, `alm tokenizer …` and `alm pack`: build and inspect the dataset stage by stage.

Each command loads the data config (`--config corpus.yaml`, default: the built-in tiny Shakespeare) with
`--set key=value` overrides relative to the data config (a leading `data.` is accepted too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from alm.cli.common import SetOption, console, handle_errors, overrides

if TYPE_CHECKING:
    from alm.data.config import DataConfig

PANEL = "Data"
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="Data config YAML (see configs/corpus.yaml); default: built-in corpus."
    ),
]
ForceOption = Annotated[
    bool, typer.Option("--force", help="Rebuild, replacing output built from other inputs (or not by alm).")
]
TokenizerOption = Annotated[
    Path,
    typer.Option(
        "--tokenizer", "-t", help="tokenizer.json, or a directory (data/tokenizer, a run) holding one."
    ),
]
DEFAULT_TOKENIZER = Path("data/tokenizer")

data_app = typer.Typer(help="Prepare and inspect corpora: clean text, splits, shards.", no_args_is_help=True)
tokenizer_app = typer.Typer(
    help="Train and use tokenizers (byte-level BPE or Unigram).", no_args_is_help=True
)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data", rich_help_panel=PANEL)
    app.add_typer(tokenizer_app, name="tokenizer", rich_help_panel=PANEL)
    app.command("pack", rich_help_panel=PANEL)(pack)


def load_data_config(config: Path | None, sets: list[str] | None) -> DataConfig:
    """A corpus.yaml (or a run's config.yaml, whose `data:` section is used) plus `--set` overrides."""
    from alm.config import apply_overrides, from_dict, read_yaml
    from alm.data.config import DataConfig

    data: dict[str, Any] = {}
    if config is not None:
        data = read_yaml(config)
        if isinstance(data.get("data"), dict) and set(data) <= {"model", "train", "data"}:
            data = data["data"]
    normalized = [s.removeprefix("data.") for s in overrides(sets)]
    data = apply_overrides(data, normalized)
    return from_dict(DataConfig, data, source=str(config) if config else None)


def _say(message: str) -> None:
    console.print(message, soft_wrap=True)


# ------------------------------------------------------------------------------------------------- data


@data_app.command("prepare")
@handle_errors
def prepare(config: ConfigOption = None, set_: SetOption = None, force: ForceOption = False) -> None:
    """Read the sources, clean and deduplicate documents, split train/val into <root>/clean/."""
    from alm.data.pipeline import ensure_clean

    cfg = load_data_config(config, set_)
    _print_clean_stats(ensure_clean(cfg, console=console, force=force, rebuild=force))


@data_app.command("info")
@handle_errors
def info(
    path: Annotated[
        Path, typer.Argument(help="A shard (.bin), manifest.json, packed/clean/tokenizer dir, or data root.")
    ] = Path("data"),
) -> None:
    """Describe what is at PATH: a shard header, a manifest, clean-text stats, a tokenizer, or all of a data root."""
    from alm.data.pack import MANIFEST_FILE
    from alm.data.prepare import STATS_FILE
    from alm.data.shards import read_header
    from alm.data.stage import read_json
    from alm.errors import UsageError
    from alm.tokenizer.tokenizer import TOKENIZER_FILE

    if not path.exists():
        raise UsageError(f"{path} does not exist", hint="pass a shard, a manifest, or a data directory")
    if path.is_file() and path.suffix == ".bin":
        header = read_header(path)
        _say(
            f"[bold]{path}[/]: alm token shard v{header.version}, {header.num_tokens:,} tokens "
            f"({header.token_bytes}-byte ids), vocab {header.vocab_size:,}"
        )
        return
    if path.is_file() and path.name == TOKENIZER_FILE:
        _print_tokenizer(path)
        return
    if path.is_file():
        doc = read_json(path)
        kind = (doc or {}).get("format")
        if kind == "alm-packed":
            _print_manifest(path, doc or {})
        elif kind == "alm-clean":
            _print_clean_stats(doc or {})
        else:
            raise UsageError(f"{path} is not a shard, manifest, stats.json or tokenizer.json written by alm")
        return
    found = False
    for sub in (path, path / "clean", path / "tokenizer", path / "packed"):
        if (sub / STATS_FILE).is_file():
            _say(f"[bold]{sub}[/] (clean text)")
            _print_clean_stats(read_json(sub / STATS_FILE) or {})
            found = True
        if (sub / TOKENIZER_FILE).is_file():
            _print_tokenizer(sub / TOKENIZER_FILE)
            found = True
        if (sub / MANIFEST_FILE).is_file():
            _print_manifest(sub / MANIFEST_FILE, read_json(sub / MANIFEST_FILE) or {})
            found = True
    if not found:
        raise UsageError(
            f"nothing alm wrote was found in {path}", hint="build it with `alm data prepare` / `alm pack`"
        )


def _print_clean_stats(stats: dict[str, Any]) -> None:
    if not stats:
        return
    for split, s in stats.get("splits", {}).items():
        _say(
            f"  {split:5s} {s['documents']:>10,} documents {s['bytes'] / 1e6:>9.2f} MB  sha256 {s['sha256'][:16]}…"
        )
    dropped = stats.get("dropped", {})
    _say(f"  source  {stats.get('source', '?')}")
    _say("  dropped " + ", ".join(f"{v:,} {k.replace('_', ' ')}" for k, v in dropped.items()))


def _print_manifest(path: Path, manifest: dict[str, Any]) -> None:
    _say(
        f"[bold]{path}[/]: packed with tokenizer {str(manifest.get('tokenizer_fingerprint', '?'))[:12]}, "
        f"vocab {manifest.get('vocab_size', 0):,}, {manifest.get('total_tokens', 0):,} tokens"
    )
    for split, s in manifest.get("splits", {}).items():
        ratio = s["source_bytes"] / s["tokens"] if s["tokens"] else 0.0
        _say(
            f"  {split:5s} {s['tokens']:>12,} tokens in {len(s['shards'])} shard(s), {s['documents']:,} "
            f"documents, {s['source_bytes'] / 1e6:.2f} MB text ({ratio:.2f} bytes/token)"
        )


def _print_tokenizer(path: Path) -> None:
    from alm.tokenizer import Tokenizer

    tok = Tokenizer.load(path)
    meta = tok.meta or {}
    _say(
        f"[bold]{tok.path}[/]: {tok.backend_type} tokenizer, vocab {tok.vocab_size:,}, "
        f"fingerprint {tok.fingerprint[:16]}…"
    )
    _say(f"  special ids  bos={tok.bos_id} eos={tok.eos_id} pad={tok.pad_id}")
    if meta:
        sample = meta.get("sample", {})
        _say(
            f"  trained on   {sample.get('bytes', 0) / 1e6:.2f} MB ({sample.get('documents', 0):,} documents) "
            f"of corpus {str(meta.get('corpus_sha256', '?'))[:16]}… in {meta.get('seconds', 0):.1f} s"
        )


# -------------------------------------------------------------------------------------------- tokenizer


@tokenizer_app.command("train")
@handle_errors
def tokenizer_train(
    config: ConfigOption = None,
    set_: SetOption = None,
    type_: Annotated[str | None, typer.Option("--type", help="bpe or unigram.")] = None,
    vocab_size: Annotated[
        int | None, typer.Option("--vocab-size", help="Vocabulary size (with 256 bytes + 3 specials).")
    ] = None,
    max_bytes: Annotated[int | None, typer.Option("--max-bytes", help="Cap on training text bytes.")] = None,
    max_lines: Annotated[int | None, typer.Option("--max-lines", help="Cap on training text lines.")] = None,
    force: ForceOption = False,
) -> None:
    """Train the tokenizer on the clean train split (preparing the text first if needed) into <root>/tokenizer/."""
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
    path = ensure_tokenizer(cfg, console=console, force=force, rebuild=force)
    _print_tokenizer(path)


@tokenizer_app.command("encode")
@handle_errors
def tokenizer_encode(
    text: Annotated[str, typer.Argument(help="Text to encode, or - to read standard input.")],
    tokenizer: TokenizerOption = DEFAULT_TOKENIZER,
    ids: Annotated[
        bool, typer.Option("--ids/--tokens", help="Print ids (default) or the token strings.")
    ] = True,
) -> None:
    """Encode TEXT and print its token ids (or tokens)."""
    from alm.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer)
    if text == "-":
        text = sys.stdin.read()
    encoded = tok.encode(text)
    if ids:
        typer.echo(" ".join(map(str, encoded)))
    else:
        typer.echo(" ".join(_show_token(tok.token_bytes(i)) for i in encoded))
    typer.echo(f"{len(encoded)} tokens, {len(text.encode('utf-8'))} bytes", err=True)


def _show_token(data: bytes) -> str:
    """A token as a quoted string, or as hex bytes when it holds part of a UTF-8 character."""
    try:
        return json.dumps(data.decode("utf-8"), ensure_ascii=False)
    except UnicodeDecodeError:
        return "<" + " ".join(f"{b:02x}" for b in data) + ">"


@tokenizer_app.command("decode")
@handle_errors
def tokenizer_decode(
    ids: Annotated[list[str], typer.Argument(help="Token ids (space or comma separated).")],
    tokenizer: TokenizerOption = DEFAULT_TOKENIZER,
) -> None:
    """Decode token ids back to text."""
    from alm.errors import UsageError
    from alm.tokenizer import Tokenizer

    tok = Tokenizer.load(tokenizer)
    values = []
    for part in ",".join(ids).replace("[", "").replace("]", "").split(","):
        for item in part.split():
            try:
                values.append(int(item))
            except ValueError:
                raise UsageError(
                    f"not a token id: {item!r}", hint="pass integers, e.g. alm tokenizer decode 5 17 42"
                ) from None
    bad = [v for v in values if not 0 <= v < tok.vocab_size]
    if bad:
        raise UsageError(f"token id {bad[0]} is outside the vocabulary (0..{tok.vocab_size - 1})")
    typer.echo(tok.decode(values), nl=False)
    typer.echo()


@tokenizer_app.command("info")
@handle_errors
def tokenizer_info(
    path: Annotated[
        Path, typer.Argument(help="tokenizer.json or a directory holding one.")
    ] = DEFAULT_TOKENIZER,
) -> None:
    """Describe a tokenizer: backend, vocabulary size, special ids, fingerprint, training sample."""
    _print_tokenizer(path)


# ------------------------------------------------------------------------------------------------ pack


@handle_errors
def pack(config: ConfigOption = None, set_: SetOption = None, force: ForceOption = False) -> None:
    """Tokenise the clean splits into uint32 shards under <root>/packed/ (building text and tokenizer if missing)."""
    from alm.data.pipeline import ensure_pack
    from alm.data.stage import read_json

    cfg = load_data_config(config, set_)
    paths = ensure_pack(cfg, console=console, force=force, rebuild=force)
    _print_manifest(paths.manifest_path, read_json(paths.manifest_path) or {})
