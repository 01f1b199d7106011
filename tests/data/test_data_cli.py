"""`alm data …`, `alm tokenizer …`, `alm pack` as a user meets them: output, exit codes, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alm.cli.app import app

runner = CliRunner()


def alm(*args: str, stdin: bytes | None = None):
    return runner.invoke(app, list(args), input=stdin)


def only(root: Path, pattern: str) -> Path:
    """The one stage directory of a kind under a data root (tokenizer-*, packed-*)."""
    (found,) = sorted(root.glob(pattern))
    return found


@pytest.fixture
def small(tmp_path):
    """--set options for a tiny dataset under tmp_path."""
    root = tmp_path / "data"
    sets = ["--set", f"root={root}", "--set", "data.sources=[{type: builtin, max_bytes: 40000}]"]
    sets += ["--set", "tokenizer.vocab_size=300", "--set", "packing.shard_tokens=4096"]
    return root, sets


def test_prepare_train_pack_info_encode_decode(small) -> None:
    root, sets = small
    result = alm("data", "prepare", *sets)
    assert result.exit_code == 0, result.output
    assert "prepared" in result.output and "train" in result.output
    assert "up to date" in alm("data", "prepare", *sets).output

    result = alm("tokenizer", "train", *sets, "--type", "unigram")
    assert result.exit_code == 0, result.output
    assert "unigram tokenizer, vocab 300" in result.output

    result = alm("pack", *sets, "--set", "tokenizer.type=unigram")
    assert result.exit_code == 0, result.output
    packed, tokenizer = only(root, "packed-unigram-300-*"), only(root, "tokenizer-unigram-300-*")
    assert "tokens in" in result.output and (packed / "manifest.json").is_file()

    for target, expected in (
        (root, "clean text"),
        (packed, "bytes/token"),
        (packed / "train-00000.bin", "alm token shard v1"),
        (root / "clean" / "stats.json", "documents"),
        (root / "clean", "split   tail: the last 10% of the text held out"),
        (tokenizer / "tokenizer.json", "special ids"),
    ):
        result = alm("data", "info", str(target))
        assert result.exit_code == 0 and expected in result.output, result.output

    tok = str(tokenizer)
    result = alm("tokenizer", "encode", "ROMEO: café 😀", "--tokenizer", tok)
    assert result.exit_code == 0, result.output
    ids = result.stdout.strip().split()
    result = alm("tokenizer", "decode", *ids, "--tokenizer", tok)
    assert result.exit_code == 0 and result.stdout == "ROMEO: café 😀\n"
    result = alm("tokenizer", "encode", "é", "--tokens", "--tokenizer", tok)
    assert result.exit_code == 0 and result.stdout.strip() in ("<c3> <a9>", "<c3a9>", '"é"')
    assert "special ids  bos=0 eos=1 pad=2" in alm("tokenizer", "info", tok).output


def test_stages_remember_their_settings_and_build_side_by_side(small) -> None:
    """Issue 12: flags given to one stage carry to the next; other settings never need --force."""
    root, sets = small
    assert alm("tokenizer", "train", *sets).exit_code == 0
    first = only(root, "tokenizer-bpe-300-*")
    stamp = (first / "tokenizer.json").stat().st_mtime_ns
    result = alm("tokenizer", "train", "--set", f"root={root}", "--vocab-size", "310")
    assert result.exit_code == 0 and "vocab 310" in result.output, result.output  # beside, not over
    assert (first / "tokenizer.json").stat().st_mtime_ns == stamp
    result = alm("pack", "--set", f"root={root}")  # no flags: packs with what the root was built with last
    assert result.exit_code == 0, result.output
    manifest = json.loads((only(root, "packed-bpe-310-*") / "manifest.json").read_text())
    assert manifest["vocab_size"] == 310 and manifest["data"]["sources"][0]["max_bytes"] == 40_000
    report = json.loads(alm("data", "info", str(root), "--json").stdout)
    assert report["current"]["packed"] == only(root, "packed-bpe-310-*").name
    assert len(report["tokenizers"]) == 2 and report["clean"][0]["split"]["method"] == "tail"
    stamp = (only(root, "packed-bpe-310-*") / "manifest.json").stat().st_mtime_ns
    assert "up to date" in alm("pack", "--set", f"root={root}").output
    result = alm("pack", "--set", f"root={root}", "--force")  # --force really rebuilds
    assert result.exit_code == 0 and "packed" in result.output
    assert (only(root, "packed-bpe-310-*") / "manifest.json").stat().st_mtime_ns != stamp


def test_force_is_required_to_replace_what_alm_did_not_write(small) -> None:
    root, sets = small
    assert alm("tokenizer", "train", *sets).exit_code == 0
    target = only(root, "tokenizer-bpe-300-*")
    (target / "tokenizer.meta.json").unlink()  # now it is a directory of files alm cannot vouch for
    result = alm("tokenizer", "train", *sets, "--force")
    assert result.exit_code == 0 and "vocab 300" in result.output
    (root / "clean" / "stats.json").write_text("{}")
    result = alm("data", "prepare", *sets)
    assert result.exit_code == 2, result.output
    assert "refusing to overwrite" in result.output and "--force" in result.output
    assert "Traceback" not in result.output
    assert alm("data", "prepare", *sets, "--force").exit_code == 0


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["data", "prepare", "--set", "colour=blue"], 2, "config key 'colour'"),
        (["data", "prepare", "--set", "data.tokenizer.vocab_size=12"], 2, "tokenizer.vocab_size"),
        (["data", "prepare", "--config", "missing.yaml"], 2, "config file not found"),
        (
            ["data", "prepare", "--set", "sources=[{type: local, paths: [nowhere/*.txt]}]"],
            2,
            "matches no files",
        ),
        (["data", "info", "does/not/exist"], 2, "does not exist"),
        (["tokenizer", "encode", "hi", "--tokenizer", "nowhere/tokenizer.json"], 2, "tokenizer not found"),
        (["tokenizer", "info"], 2, "no tokenizer in data"),
        (["tokenizer", "decode", "1", "x"], 2, "not a token id"),
        (["tokenizer", "encode", "caf\udce9"], 2, "TEXT is not valid UTF-8 (byte 0xe9 at character 3)"),
        (["tokenizer", "encode", "-"], 2, "standard input is not valid UTF-8 (byte 0xe9 at offset 3)"),
        (["data", "prepare", "--set", "sources=[{type: local, paths: [one.txt]}]"], 2, "boundary: line"),
    ],
)
def test_bad_input_exit_codes(tmp_path, monkeypatch, args, code, message) -> None:
    """A file or text the user named that is missing or unusable is exit 2 in every data command."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.txt").write_text("a single document\n")
    if args[0] == "tokenizer" and args[1] in ("decode", "encode") and "--tokenizer" not in args:
        args = [*args, "--tokenizer", str(_tokenizer(tmp_path))]
    result = alm(*args, stdin=b"caf\xe9")
    assert result.exit_code == code, result.output
    assert message in result.output and "Traceback" not in result.output


def test_tokenizer_commands_default_to_the_current_tokenizer_and_round_trip(small, monkeypatch) -> None:
    root, sets = small
    monkeypatch.chdir(root.parent)
    assert alm("tokenizer", "train", *sets, "--set", "root=data").exit_code == 0
    encoded = alm("tokenizer", "encode", "Hello, world")
    assert encoded.exit_code == 0, encoded.output
    result = alm("tokenizer", "decode", *encoded.stdout.split())  # what the README shows
    assert result.exit_code == 0 and result.stdout == "Hello, world\n"
    report = json.loads(alm("tokenizer", "info", "--json").stdout)
    assert report["vocab_size"] == 300 and report["special_ids"] == {"bos": 0, "eos": 1, "pad": 2}
    assert report["chat_ids"] == {"<|system|>": 3, "<|user|>": 4, "<|assistant|>": 5, "<|end|>": 6}
    assert report["settings"]["vocab_size"] == 300 and Path(report["path"]).parent.name.startswith(
        "tokenizer-"
    )


def _tokenizer(tmp_path):
    from alm.tokenizer import TokenizerConfig, train_tokenizer

    return train_tokenizer(
        ["some text to learn from"] * 3, tmp_path / "tok", TokenizerConfig(vocab_size=300), corpus_sha256="x"
    ).path


def test_corrupt_shard_info_is_a_runtime_error(small) -> None:
    root, sets = small
    assert alm("pack", *sets).exit_code == 0
    packed = only(root, "packed-*")
    flipped = packed / "train-00000.bin"
    data = bytearray(flipped.read_bytes())
    data[-1] ^= 0x01
    flipped.write_bytes(bytes(data))
    assert alm("data", "info", str(root)).exit_code == 0  # the cheap checks cannot see a flipped byte ...
    result = alm("data", "info", str(root), "--verify")  # ... --verify reads every payload
    assert result.exit_code == 1 and "sha256 does not match" in result.output
    shard = packed / "val-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-3])
    result = alm("data", "info", str(shard))
    assert result.exit_code == 1 and "truncated" in result.output
    for target in (root, packed):  # used to exit 0 on a truncated shard
        result = alm("data", "info", str(target), "--json")
        assert result.exit_code == 1 and "truncated" in result.output
    result = alm("pack", *sets)  # used to report a truncated shard "up to date"
    assert result.exit_code == 0 and "re-packing" in result.output
    assert f"shards in {packed} are up to date" not in result.output
    result = alm("data", "info", str(root), "--verify")
    assert result.exit_code == 0 and "verified" in result.output, result.output


def test_empty_and_binary_corpora(tmp_path) -> None:
    (tmp_path / "blob.dat").write_bytes(bytes(range(256)) * 64)
    (tmp_path / "empty.txt").write_text("\n\n")
    result = alm(
        "data",
        "prepare",
        "--set",
        f"root={tmp_path / 'data'}",
        "--set",
        f"sources=[{{type: local, paths: ['{tmp_path}/*']}}]",
    )
    assert result.exit_code == 2, result.output  # like a missing file: the named sources hold no text
    assert "skipped" in result.output and "no documents left" in result.output


@pytest.mark.slow
def test_alm_pack_end_to_end_in_a_subprocess(tmp_path) -> None:
    """A fresh directory, no config: `alm pack` builds everything from the built-in corpus by itself."""
    proc = subprocess.run(
        [sys.executable, "-m", "alm", "pack", "--set", "tokenizer.vocab_size=300"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (only(tmp_path / "data", "packed-bpe-300-*") / "manifest.json").is_file()
    assert "prepared" in proc.stdout and "packed" in proc.stdout
    proc = subprocess.run(
        [sys.executable, "-m", "alm", "data", "info"], cwd=tmp_path, capture_output=True, text=True
    )
    assert proc.returncode == 0 and "bytes/token" in proc.stdout
