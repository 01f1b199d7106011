"""What a data root records, and what `--data` and the data commands resolve from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from data_helpers import tiny_config

from alm.config import from_dict, to_dict
from alm.data.config import DataConfig
from alm.data.layout import SETTINGS_FILE, data_paths
from alm.data.pipeline import ensure_dataset, ensure_tokenizer
from alm.data.settings import read_settings, resolve_data_arg, resolve_data_config
from alm.errors import ConfigError, DataError, UsageError


def test_every_stage_records_its_settings_and_commands_start_from_them(tmp_path) -> None:
    root = tmp_path / "data"
    cfg = tiny_config(root, tokenizer={"vocab_size": 290, "type": "unigram"})
    ensure_tokenizer(cfg)
    recorded = read_settings(root)
    assert recorded is not None and recorded["tokenizer"]["type"] == "unigram" and "root" not in recorded
    # a later command that says only one thing keeps the rest of what the root was built with
    later = resolve_data_config({"root": str(root), "packing": {"shard_tokens": 2048}})
    assert later.tokenizer.type == "unigram" and later.tokenizer.vocab_size == 290
    assert later.sources[0].max_bytes == 80_000 and later.packing.shard_tokens == 2048
    assert data_paths(later).tokenizer_dir == data_paths(cfg).tokenizer_dir
    # nothing recorded: the defaults (the built-in corpus)
    assert to_dict(resolve_data_config({"root": str(tmp_path / "fresh")})) == to_dict(
        DataConfig(root=tmp_path / "fresh")
    )


def test_a_damaged_record_names_its_file(tmp_path) -> None:
    (tmp_path / SETTINGS_FILE).write_text(json.dumps({"format": "alm-data-settings", "data": {"colour": 1}}))
    with pytest.raises(ConfigError, match=r"settings\.json"):
        read_settings(tmp_path)
    (tmp_path / SETTINGS_FILE).write_text("[]")
    with pytest.raises(DataError, match=r"settings\.json"):
        read_settings(tmp_path)


@pytest.fixture(scope="module")
def built_root(tmp_path_factory) -> tuple[DataConfig, Path]:
    root = tmp_path_factory.mktemp("root") / "data"
    cfg = tiny_config(root, sources=[{"type": "builtin", "max_bytes": 30_000}])
    ensure_dataset(cfg)
    return cfg, root


def test_data_arg_accepts_a_data_root_and_its_packed_directory(built_root) -> None:
    cfg, root = built_root
    base, source = resolve_data_arg(root)
    assert source == str(root / SETTINGS_FILE)
    assert Path(base["root"]).is_absolute() and Path(base["root"]) == root.resolve()
    assert to_dict(from_dict(DataConfig, base)) == to_dict(
        from_dict(DataConfig, {**to_dict(cfg), "root": base["root"]})
    )
    packed = data_paths(cfg).packed_dir
    base, source = resolve_data_arg(packed)
    assert source == str(packed / "manifest.json")
    assert data_paths(from_dict(DataConfig, base)).packed_dir == packed.resolve()


def test_data_arg_refuses_what_it_cannot_mean(built_root, tmp_path) -> None:
    """The old behaviour: any directory became the root of a freshly built Shakespeare."""
    cfg, _ = built_root
    texts = tmp_path / "kjv"
    texts.mkdir()
    (texts / "bible.txt").write_text("In the beginning God created the heaven and the earth.\n")
    with pytest.raises(UsageError, match=r"holds no corpus\.yaml and no data built by alm") as info:
        resolve_data_arg(texts)
    assert "corpus.yaml" in str(info.value.hint) and info.value.exit_code == 2
    assert not (texts / "clean").exists()
    with pytest.raises(UsageError, match="one stage of the data root"):
        resolve_data_arg(data_paths(cfg).tokenizer_dir)
    with pytest.raises(UsageError, match="no such file or directory"):
        resolve_data_arg(tmp_path / "nowhere")
    with pytest.raises(ConfigError, match="config file not found"):
        resolve_data_arg(tmp_path / "missing.yaml")
    renamed = tmp_path / "packed-renamed"
    data_paths(cfg).packed_dir.rename(renamed)
    try:
        with pytest.raises(UsageError, match="renamed"):
            resolve_data_arg(renamed)
    finally:
        renamed.rename(data_paths(cfg).packed_dir)


def test_data_arg_reads_a_directory_corpus_yaml_over_its_record(tmp_path) -> None:
    (tmp_path / "corpus.yaml").write_text("tokenizer: {vocab_size: 333}\n")
    (tmp_path / SETTINGS_FILE).write_text(
        json.dumps({"format": "alm-data-settings", "version": 1, "data": {"val_fraction": 0.2}})
    )
    base, source = resolve_data_arg(tmp_path)
    cfg = from_dict(DataConfig, base)
    assert source == str(tmp_path / "corpus.yaml") and cfg.root == tmp_path.resolve()
    assert (cfg.tokenizer.vocab_size, cfg.val_fraction) == (333, 0.2)
    base, _ = resolve_data_arg(None)  # the built-in corpus, rooted absolutely so eval finds it from anywhere
    assert base == {"root": str(Path("data").resolve())}
