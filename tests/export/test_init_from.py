"""Continued pretraining from another run's weights: `alm import hf` makes a run that `alm train --init-from`
starts from — its model, its weights (the first step's loss is the imported model's), its tokenizer (the data is
packed with it, `data.tokenizer.file`) — and `alm resume` of the imported run says to do exactly that."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from hf_models import sentencepiece_style_tokenizer
from typer.testing import CliRunner

from alm.cli.app import app
from alm.config import build
from alm.data.config import DataConfig
from alm.data.docfile import iter_documents
from alm.data.loader import BatchSampler, PackedDataset
from alm.data.pipeline import ensure_clean, ensure_dataset
from alm.errors import DataError
from alm.events import StartEvent, StepEvent, read_events
from alm.tokenizer import Tokenizer, TokenizerConfig
from alm.train.checkpoint import load_model
from alm.train.step import lm_loss
from testkit.corpus import shipped_text

runner = CliRunner()
TRAIN = {
    "steps": 3,
    "batch_size": 2,
    "seq_len": 64,
    "warmup_steps": 1,
    "log_interval": 1,
    "eval_interval": 0,
    "sample_interval": 0,
    "ckpt_interval": 3,
    "progress": "none",
    "device": "cpu",
}
SETS = [arg for key, value in TRAIN.items() for arg in ("--set", f"train.{key}={value}")]


@pytest.fixture
def imported(llama_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with runs/imported (the tiny HF Llama) and a corpus.yaml: a slice of the built-in
    corpus."""
    monkeypatch.chdir(tmp_path)
    assert runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "imported"]).exit_code == 0
    corpus = {"sources": [{"type": "builtin", "max_bytes": 60_000}], "root": str(tmp_path / "data")}
    (tmp_path / "corpus.yaml").write_text(yaml.safe_dump(corpus))
    return tmp_path


def train(*args: str):
    return runner.invoke(app, ["train", "--data", "corpus.yaml", *args, *SETS])


def test_an_imported_model_trains_on_from_its_weights_with_its_tokenizer(imported: Path) -> None:
    result = train("--init-from", "imported", "--run", "more")
    assert result.exit_code == 0, result.output
    assert "init: from" in result.output and "last.pt (step 0, the parent has no best.pt" in result.output
    parent, run = imported / "runs" / "imported", imported / "runs" / "more"
    config = yaml.safe_load((run / "config.yaml").read_text())
    checkpoint = str((parent / "checkpoints" / "last.pt").resolve())
    assert config["init"] == {"run": str(parent.resolve()), "checkpoint": checkpoint, "step": 0}
    assert config["data"]["tokenizer"] == {
        **config["data"]["tokenizer"],
        "file": str(parent / "tokenizer.json"),
    }
    assert config["model"] == yaml.safe_load((parent / "config.yaml").read_text())["model"]
    events = read_events(run / "events.jsonl")
    start = next(e for e in events if isinstance(e, StartEvent))
    assert start.config["init"] == config["init"] and start.resumed_from is None
    # The run's tokenizer is the imported one, with its roles: documents end with </s> (id 2).
    assert (run / "tokenizer.json").read_bytes() == (parent / "tokenizer.json").read_bytes()
    tokenizer = Tokenizer.load(run / "tokenizer.json")
    assert (tokenizer.eos_token, tokenizer.eos_id) == ("</s>", 2)
    packed = imported / "data" / next(p.name for p in (imported / "data").glob("packed-file-*"))
    dataset = PackedDataset.open(packed, split="train")
    assert dataset.tokenizer_fingerprint == tokenizer.fingerprint

    # Step 1's loss is the imported model's loss on the first batch: the weights were loaded.
    model, _, _, _ = load_model(parent, device="cpu")
    x, y = BatchSampler(dataset, TRAIN["batch_size"], TRAIN["seq_len"], config["train"]["seed"]).next_batch()
    expected = lm_loss(model.train(), (x, y)).reported.item()
    first = next(e for e in events if isinstance(e, StepEvent) and e.step == 1)
    assert first.loss == pytest.approx(expected, rel=1e-5)

    sampled = runner.invoke(
        app, ["sample", "more", "--prompt", "ROMEO:", "--greedy", "-n", "8", "--device", "cpu"]
    )
    assert sampled.exit_code == 0 and sampled.stdout.strip(), sampled.output


def test_resuming_an_imported_run_names_init_from(imported: Path) -> None:
    result = runner.invoke(app, ["resume", "imported", "--device", "cpu"])
    assert result.exit_code == 2, result.output
    assert "was imported" in result.stderr and "alm train --init-from imported --run NEW" in result.stderr
    assert "changed configuration" not in result.stderr and "Traceback" not in result.output


def test_init_from_refusals_touch_nothing(imported: Path) -> None:
    cases = [
        (["--init-from", "imported", "--model", "micro"], "--model would choose another"),
        (["--init-from", "imported", "--resume", "--run", "imported"], "--resume continues a run"),
        (["--init-from", "imported", "--run", "imported", "--overwrite"], "cannot replace its parent"),
        (["--init-from", "imported@best"], "no checkpoint best.pt to start from"),
        (["--init-from", "imported", "--set", "model.d_model=32"], "do not fit the model as configured"),
        (["--init-from", "imported", "--set", "data.tokenizer.vocab_size=500"], "tokenizer given as a file"),
        (["--init-from", "nothing"], "nothing"),
    ]
    for args, message in cases:
        result = train(*args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
        assert "Traceback" not in result.output
    assert sorted(p.name for p in (imported / "runs").iterdir()) == ["imported"]


def test_a_checkpoint_is_picked_with_run_at_checkpoint(imported: Path) -> None:
    assert train("--init-from", "imported", "--run", "first").exit_code == 0
    # A run trained from the imported one is itself a parent: its step-3 checkpoint, by name.
    result = train("--init-from", "first@step-3", "--run", "second")
    assert result.exit_code == 0, result.output
    init = yaml.safe_load((imported / "runs" / "second" / "config.yaml").read_text())["init"]
    assert init["step"] == 3 and init["checkpoint"].endswith("step-000003.pt")


def test_a_sentencepiece_tokenizer_packs_whole_documents_with_unchanged_ids(tmp_path: Path) -> None:
    """Llama 2's tokenizer prepends "▁" to every text it encodes: cutting a long document into pieces would
    start each piece with a new word. Such a tokenizer encodes documents whole, so the shards hold its ids."""
    text = shipped_text(200_000)
    tokenizer_file = sentencepiece_style_tokenizer(tmp_path / "tok", text)
    long_document = " ".join(text.split())[:100_000]  # longer than a packing piece (64K characters)
    (tmp_path / "corpus.txt").write_text(long_document + "\n\n" + text[100_000:130_000])
    corpus = {"sources": [{"type": "local", "paths": [str(tmp_path / "corpus.txt")]}], "root": str(tmp_path)}
    cfg = build(DataConfig, corpus, [f"tokenizer.file={tokenizer_file}"], section="data")
    paths = ensure_dataset(cfg)
    tokenizer = Tokenizer.load(paths.tokenizer_path)
    assert (
        tokenizer.fingerprint == Tokenizer.load(tokenizer_file).fingerprint and tokenizer.eos_token == "</s>"
    )
    documents = list(iter_documents(paths.clean_dir / "train.txt"))
    assert documents[0] == long_document
    dataset = PackedDataset.open(paths.packed_dir, split="train")
    expected = [i for doc in documents for i in (*tokenizer.encode(doc), tokenizer.eos_id)]
    assert dataset.read(0, dataset.num_tokens).tolist() == expected


def test_a_document_too_long_to_encode_whole_is_refused_by_name(tmp_path: Path, monkeypatch) -> None:
    from alm.data import pack

    tokenizer = Tokenizer.load(sentencepiece_style_tokenizer(tmp_path / "tok", shipped_text(50_000)))
    monkeypatch.setattr(pack, "MAX_WHOLE_CHARS", 1_000)  # the real bound is 16M characters
    split = pack.document_splitter(tokenizer)
    assert split("x" * 1_000) == ["x" * 1_000]
    with pytest.raises(DataError, match=r"normalizer='Sequence'\) cannot cut it") as caught:
        split("x" * 1_001)
    assert "boundary" in (caught.value.hint or "")


def test_a_tokenizer_file_is_copied_once_again_when_it_changes_and_outlives_its_source(
    tmp_path: Path,
) -> None:
    from alm.data.settings import resolve_data_config

    (tmp_path / "corpus.txt").write_text(shipped_text(40_000))
    source = sentencepiece_style_tokenizer(tmp_path / "tok", shipped_text(40_000))
    corpus = {
        "sources": [{"type": "local", "paths": [str(tmp_path / "corpus.txt")]}],
        "root": str(tmp_path / "d"),
    }
    cfg = build(DataConfig, corpus, [f"tokenizer.file={source}"], section="data")
    paths = ensure_dataset(cfg)
    copied = paths.tokenizer_path.stat().st_mtime_ns
    assert paths.tokenizer_dir.name.startswith("tokenizer-file-") and paths.packed_dir.name.startswith(
        "packed-file-"
    )
    assert ensure_dataset(cfg) == paths and paths.tokenizer_path.stat().st_mtime_ns == copied  # up to date

    sentencepiece_style_tokenizer(tmp_path / "tok", shipped_text(40_000)[::-1])  # the file changes in place
    ensure_dataset(cfg)
    changed = Tokenizer.load(source).fingerprint
    assert Tokenizer.load(paths.tokenizer_path).fingerprint == changed
    assert PackedDataset.open(paths.packed_dir).tokenizer_fingerprint == changed  # re-packed with it

    source.unlink()  # its run deleted: the copy serves
    assert PackedDataset.open(ensure_dataset(cfg).packed_dir).tokenizer_fingerprint == changed

    # The root records the file; naming a tokenizer to train instead replaces that record whole.
    assert resolve_data_config({"root": str(tmp_path / "d")}).tokenizer.file == source
    trained = resolve_data_config({"root": str(tmp_path / "d"), "tokenizer": {"vocab_size": 300}}).tokenizer
    assert trained.file is None and trained.vocab_size == 300
    ensure_clean(build(DataConfig, corpus, ["tokenizer.vocab_size=300"], section="data"))  # records it
    given = resolve_data_config({"root": str(tmp_path / "d"), "tokenizer": {"file": str(source)}}).tokenizer
    assert given == TokenizerConfig(file=source)  # not refused for the recorded vocab_size
