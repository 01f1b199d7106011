from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from data_helpers import tiny_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alm.data.docfile import iter_documents
from alm.data.layout import MANIFEST_FILE
from alm.data.loader import BatchSampler, PackedDataset, check_compatible, iter_eval_batches
from alm.data.pack import batch_pieces, encode_batch, encode_documents, pack_dataset
from alm.data.pipeline import ensure_dataset
from alm.data.shards import (
    HEADER_BYTES,
    MAGIC,
    ShardWriter,
    encode_header,
    open_tokens,
    read_header,
    read_manifest,
    verify_split,
)
from alm.errors import DataError, UsageError
from alm.tokenizer import Tokenizer, TokenizerConfig
from alm.tokenizer.pieces import MAX_PIECE_CHARS, split_long_document


def test_shard_writer_splits_at_fixed_counts_and_headers_round_trip(tmp_path) -> None:
    writer = ShardWriter(tmp_path, "train", shard_tokens=1024, vocab_size=300)
    stream = np.arange(2500, dtype=np.uint32) % 300
    for piece in np.array_split(stream, 7):
        writer.write(piece)
    shards = writer.close()
    assert [s["tokens"] for s in shards] == [1024, 1024, 452]
    assert [s["file"] for s in shards] == ["train-00000.bin", "train-00001.bin", "train-00002.bin"]
    back = np.concatenate([np.asarray(open_tokens(tmp_path / s["file"])) for s in shards])
    np.testing.assert_array_equal(back, stream)
    raw = (tmp_path / "train-00000.bin").read_bytes()
    assert raw[:8] == MAGIC and len(raw) == HEADER_BYTES + 4 * 1024
    assert int.from_bytes(raw[HEADER_BYTES : HEADER_BYTES + 4], "little") == 0  # little-endian uint32 payload
    header = read_header(tmp_path / "train-00001.bin")
    assert (header.num_tokens, header.vocab_size, header.token_bytes) == (1024, 300, 4)


def test_packed_tokens_are_the_documents_separated_by_eos(built) -> None:
    _, paths = built
    tok = Tokenizer.load(paths.tokenizer_path)
    ds = PackedDataset.open(paths.packed_dir, "val", verify_checksums=True)
    docs = list(iter_documents(paths.clean_dir / "val.txt"))
    tokens = ds.read(0, ds.num_tokens)
    assert tokens.dtype == np.uint32 and int(tokens[-1]) == tok.eos_id
    pieces = np.split(tokens, np.flatnonzero(tokens == tok.eos_id) + 1)[:-1]
    assert [tok.decode(p[:-1].tolist()) for p in pieces] == docs
    manifest = ds.manifest
    assert manifest["tokenizer_fingerprint"] == tok.fingerprint == ds.tokenizer_fingerprint
    assert ds.source_bytes == sum(len(d.encode()) for d in docs)
    assert manifest["splits"]["val"]["documents"] == len(docs)


def test_dataset_is_memmapped_and_reads_across_shards(built) -> None:
    _, paths = built
    ds = PackedDataset.open(paths.packed_dir, "train")
    assert len(ds.shards) >= 3 and all(isinstance(s, np.memmap) for s in ds.shards)
    whole = np.concatenate([np.asarray(s) for s in ds.shards])
    edge = int(ds.offsets[1])
    np.testing.assert_array_equal(ds.read(edge - 10, 4096 + 20), whole[edge - 10 : edge + 4096 + 10])
    with pytest.raises(IndexError):
        ds.read(ds.num_tokens - 3, 5)


def test_sampler_order_is_a_pure_function_of_seed_epoch_position(built) -> None:
    _, paths = built
    ds = PackedDataset.open(paths.packed_dir, "train")
    a, b = BatchSampler(ds, 4, 32, seed=7), BatchSampler(ds, 4, 32, seed=7)
    for _ in range(3):
        (xa, ya), (xb, yb) = a.next_batch(), b.next_batch()
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert xa.dtype == torch.int64 and xa.shape == (4, 32) and xa.device.type == "cpu"
    assert torch.equal(xa[:, 1:], ya[:, :-1])
    other = BatchSampler(ds, 4, 32, seed=8).next_batch()[0]
    assert not torch.equal(other, BatchSampler(ds, 4, 32, seed=7).next_batch()[0])


def test_resume_from_state_dict_is_exact_and_epochs_reshuffle(built) -> None:
    _, paths = built
    ds = PackedDataset.open(paths.packed_dir, "val")
    sampler = BatchSampler(ds, 8, 64, seed=3)
    windows_per_epoch = (ds.num_tokens - 1) // 64  # upper bound; offsets shrink it by at most one
    for _ in range(5):
        sampler.next_batch()
    state = json.loads(json.dumps(sampler.state_dict()))  # it must survive a checkpoint
    expected = [sampler.next_batch() for _ in range(windows_per_epoch // 4)]
    assert sampler.epoch >= 1  # crossed into a new epoch
    resumed = BatchSampler(ds, 8, 64, seed=0)
    resumed.load_state_dict(state)
    for x, y in expected:
        rx, ry = resumed.next_batch()
        assert torch.equal(rx, x) and torch.equal(ry, y)
    first = BatchSampler(ds, 1, 64, seed=3)
    epoch0 = [first.next_batch()[0] for _ in range(3)]
    first.load_state_dict({**first.state_dict(), "epoch": 1, "position": 0})
    epoch1 = [first.next_batch()[0] for _ in range(3)]
    assert not all(torch.equal(p, q) for p, q in zip(epoch0, epoch1, strict=True))
    with pytest.raises(DataError, match="seq_len"):
        BatchSampler(ds, 8, 32, seed=3).load_state_dict(state)


def test_ranks_take_disjoint_slices_of_the_global_batch(built) -> None:
    _, paths = built
    ds = PackedDataset.open(paths.packed_dir, "train")
    whole = BatchSampler(ds, 4, 16, seed=1).next_batch()[0]
    r0 = BatchSampler(ds, 2, 16, seed=1, rank=0, world_size=2).next_batch()[0]
    r1 = BatchSampler(ds, 2, 16, seed=1, rank=1, world_size=2).next_batch()[0]
    assert torch.equal(torch.cat([r0, r1]), whole)


def test_eval_batches_are_deterministic_and_cover_the_split(built) -> None:
    _, paths = built
    ds = PackedDataset.open(paths.packed_dir, "val")
    first = list(iter_eval_batches(ds, batch_size=4, seq_len=50))
    again = list(iter_eval_batches(ds, batch_size=4, seq_len=50))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(first, again, strict=True))
    assert sum(x.shape[0] for x, _ in first) == (ds.num_tokens - 1) // 50
    flat = torch.cat([x.reshape(-1) for x, _ in first])
    assert torch.equal(flat, torch.from_numpy(ds.read(0, flat.numel()).astype(np.int64)))
    assert len(list(iter_eval_batches(ds, 4, 50, max_batches=2))) == 2
    with pytest.raises(DataError, match="fewer than seq_len"):
        list(iter_eval_batches(ds, 4, ds.num_tokens))


def test_check_compatible(built) -> None:
    _, paths = built
    ds = PackedDataset.open(paths.packed_dir, "train")
    check_compatible(ds, ds.vocab_size, ds.tokenizer_fingerprint)
    check_compatible(ds, ds.vocab_size + 64)  # a padded embedding table is fine
    with pytest.raises(DataError, match="300-token vocabulary"):
        check_compatible(ds, 256)
    with pytest.raises(DataError, match="packed with tokenizer"):
        check_compatible(ds, ds.vocab_size, "f" * 64)


@pytest.fixture
def packed_copy(built, tmp_path):
    _, paths = built
    copy = tmp_path / "packed"
    shutil.copytree(paths.packed_dir, copy)
    return copy


def test_truncated_shard(packed_copy) -> None:
    shard = packed_copy / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-6])
    with pytest.raises(DataError, match="truncated"):
        PackedDataset.open(packed_copy)


def test_wrong_magic(packed_copy) -> None:
    shard = packed_copy / "train-00001.bin"
    shard.write_bytes(b"GPT2TOKS" + shard.read_bytes()[8:])
    with pytest.raises(DataError, match="not an alm token shard"):
        PackedDataset.open(packed_copy)


def test_checksum_mismatch_only_with_verification(packed_copy) -> None:
    shard = packed_copy / "val-00000.bin"
    data = bytearray(shard.read_bytes())
    data[HEADER_BYTES + 8] ^= 0x01
    shard.write_bytes(bytes(data))
    PackedDataset.open(packed_copy, "val")  # headers and sizes still agree
    with pytest.raises(DataError, match="sha256 does not match"):
        PackedDataset.open(packed_copy, "val", verify_checksums=True)


def test_manifest_naming_a_missing_shard(packed_copy) -> None:
    (packed_copy / "train-00002.bin").unlink()
    with pytest.raises(DataError, match=r"names shard train-00002\.bin, which is missing"):
        PackedDataset.open(packed_copy)


def test_header_disagreeing_with_manifest_and_missing_manifest(packed_copy, tmp_path) -> None:
    shard = packed_copy / "train-00000.bin"
    payload = shard.read_bytes()[HEADER_BYTES:]
    shard.write_bytes(encode_header(len(payload) // 4, 999) + payload)
    with pytest.raises(DataError, match="vocab 999"):
        PackedDataset.open(packed_copy)
    with pytest.raises(DataError, match=r"manifest\.json missing"):
        PackedDataset.open(tmp_path)
    (packed_copy / MANIFEST_FILE).write_text("{broken")
    with pytest.raises(DataError, match="not valid JSON"):
        PackedDataset.open(packed_copy)
    manifest = {"format": "alm-packed", "version": 1, "splits": {"train": {}}, "vocab_size": 1}
    (packed_copy / MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match="no 'test' split"):
        PackedDataset.open(packed_copy, "test")


def test_pipeline_is_incremental_and_keeps_other_settings_side_by_side(tmp_path) -> None:
    cfg = tiny_config(tmp_path / "data", sources=[{"type": "builtin", "max_bytes": 30_000}])
    paths = ensure_dataset(cfg)
    stamps = {p: p.stat().st_mtime_ns for p in paths.root.rglob("*") if p.is_file()}
    assert ensure_dataset(cfg) == paths  # everything up to date: nothing rewritten
    assert {p: p.stat().st_mtime_ns for p in paths.root.rglob("*") if p.is_file()} == stamps

    bigger = tiny_config(
        tmp_path / "data", sources=[{"type": "builtin", "max_bytes": 30_000}], tokenizer={"vocab_size": 320}
    )
    other = ensure_dataset(bigger)  # another tokenizer: built beside the first, which a run may depend on
    assert other.tokenizer_dir != paths.tokenizer_dir and other.packed_dir != paths.packed_dir
    assert other.clean_dir == paths.clean_dir
    assert PackedDataset.open(other.packed_dir).vocab_size == 320
    assert Tokenizer.load(paths.tokenizer_path).vocab_size == 300
    untouched = {p: t for p, t in stamps.items() if p != paths.settings_path}  # the record says 320 now
    assert {p: p.stat().st_mtime_ns for p in untouched} == untouched  # nothing of the first build changed


def test_a_rebuilt_corpus_retrains_and_repacks_what_was_built_on_it(tmp_path) -> None:
    cfg = tiny_config(tmp_path / "data", sources=[{"type": "builtin", "max_bytes": 30_000}])
    paths = ensure_dataset(cfg)
    old = Tokenizer.load(paths.tokenizer_path).fingerprint
    shorter = tiny_config(tmp_path / "data", sources=[{"type": "builtin", "max_bytes": 20_000}])
    with pytest.raises(UsageError, match=r"max_bytes changed.*refusing to overwrite"):
        ensure_dataset(shorter)  # one corpus per root: replacing it takes force
    ensure_dataset(shorter, force=True)
    assert Tokenizer.load(paths.tokenizer_path).fingerprint != old  # stale by construction: retrained
    ds = PackedDataset.open(paths.packed_dir)
    assert ds.tokenizer_fingerprint == Tokenizer.load(paths.tokenizer_path).fingerprint


def test_pack_repacks_damaged_shards_instead_of_calling_them_up_to_date(built, tmp_path) -> None:
    cfg, paths = built
    copy = tmp_path / "packed"
    shutil.copytree(paths.packed_dir, copy)
    shard = copy / "train-00001.bin"
    shard.write_bytes(shard.read_bytes()[:-40])
    messages: list[str] = []

    class Console:
        def print(self, message, **_):
            messages.append(message)

    pack_dataset(paths.clean_dir, paths.tokenizer_path, copy, cfg.packing, console=Console())
    assert any("re-packing" in m and "truncated" in m for m in messages), messages
    assert not any("up to date" in m for m in messages)
    assert (copy / "train-00001.bin").read_bytes() == (paths.packed_dir / "train-00001.bin").read_bytes()


def test_pack_refuses_foreign_directories_and_checks_the_clean_text(built, tmp_path) -> None:
    cfg, paths = built
    foreign = tmp_path / "packed"
    foreign.mkdir()
    (foreign / "keep.me").write_text("x")
    with pytest.raises(UsageError, match="not packed shards written by alm"):
        pack_dataset(paths.clean_dir, paths.tokenizer_path, foreign, cfg.packing)
    assert (foreign / "keep.me").exists()
    clean = tmp_path / "clean"
    shutil.copytree(paths.clean_dir, clean)
    with (clean / "val.txt").open("a") as f:
        f.write("sneaky edit\x1e\n")
    with pytest.raises(DataError, match="changed since `alm data prepare`"):
        pack_dataset(clean, paths.tokenizer_path, tmp_path / "out", cfg.packing)
    assert not (tmp_path / "out").exists() and not (tmp_path / ".out.staging").exists()


def test_process_pool_packs_identical_shards(built, tmp_path) -> None:
    cfg, paths = built
    cfg.packing.workers = 2
    try:
        manifest = pack_dataset(paths.clean_dir, paths.tokenizer_path, tmp_path / "pool", cfg.packing)
    finally:
        cfg.packing.workers = 0
    reference = json.loads(paths.manifest_path.read_text())
    assert manifest["splits"] == reference["splits"]


@pytest.fixture(scope="module")
def both_tokenizers(built, tmp_path_factory) -> list[Tokenizer]:
    from alm.tokenizer import train_tokenizer

    _, paths = built
    docs = list(iter_documents(paths.clean_dir / "val.txt"))
    unigram = train_tokenizer(
        docs,
        tmp_path_factory.mktemp("uni"),
        TokenizerConfig(type="unigram", vocab_size=300),
        corpus_sha256="x",
    )
    return [Tokenizer.load(paths.tokenizer_path), unigram]


_PIECES = st.sampled_from(
    [
        "word",
        "Word",
        " ",
        "  ",
        "\n",
        "\n\n",
        " \n",
        "\t",
        "'s",
        "'ll",
        "42",
        "3.14",
        "!?",
        "café",
        "😀",
        "中文",
        "\u00a0",
        "\u2009",
        "\x1c",
        "<|eos|>",
        "a-b",
        " \t\n ",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(_PIECES, min_size=1, max_size=80).map("".join), st.integers(2, 30))
def test_long_documents_are_cut_without_changing_a_single_id(both_tokenizers, text, max_chars) -> None:
    pieces = split_long_document(text, max_chars)
    assert "".join(pieces) == text
    for tok in both_tokenizers:
        got = [tok.encode(p) for p in pieces]
        assert [i for ids in got for i in ids] == tok.encode(text)


def test_encode_documents_puts_eos_after_each_whole_document(built) -> None:
    _, paths = built
    tok = Tokenizer.load(paths.tokenizer_path)
    docs = ["short one", "long line of words\n" * 10_000, "end"]
    ids = encode_documents(tok.backend, docs, tok.eos_id)
    expected = [i for d in docs for i in (*tok.encode(d), tok.eos_id)]
    assert ids.tolist() == expected


def test_a_long_document_spreads_over_bounded_batches_with_the_same_ids(built) -> None:
    """A 50 MB line used to be one encode call (gigabytes of encodings); now no batch is much over its size."""
    _, paths = built
    tok = Tokenizer.load(paths.tokenizer_path)
    docs = ["short one", "long line of words " * 30_000, "end"]  # 570 kB without a newline
    batches = list(batch_pieces(docs, batch_chars=1_000))
    assert len(batches) >= 9 and max(sum(map(len, p)) for p, _ in batches) <= 1_000 + MAX_PIECE_CHARS
    assert sum(sum(ends) for _, ends in batches) == len(docs)  # one end flag per document
    ids = np.concatenate([encode_batch(tok.backend, b, tok.eos_id) for b in batches])
    assert ids.tolist() == [i for d in docs for i in (*tok.encode(d), tok.eos_id)]


def test_out_of_range_ids_are_caught_when_written_verified_or_loaded(packed_copy) -> None:
    with pytest.raises(DataError, match="outside the 300-token vocabulary"):
        ShardWriter(packed_copy, "x", 1024, vocab_size=300).write(np.array([1, 2, 300], dtype=np.uint32))
    shard = packed_copy / "val-00000.bin"
    data = bytearray(shard.read_bytes())
    data[HEADER_BYTES : HEADER_BYTES + 4] = (70_000).to_bytes(4, "little")
    shard.write_bytes(bytes(data))
    ds = PackedDataset.open(packed_copy, "val")  # headers and sizes agree: the cheap checks pass
    with pytest.raises(DataError, match="token id 70000, outside its 300-token vocabulary") as info:
        next(iter_eval_batches(ds, batch_size=2, seq_len=16))  # not an IndexError deep in the model
    assert "--verify" in str(info.value)
    with pytest.raises(DataError, match="sha256 does not match"):
        verify_split(packed_copy, read_manifest(packed_copy), "val")
