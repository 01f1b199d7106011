from __future__ import annotations

from pathlib import Path

import pytest

from alm.config import from_dict, load, to_dict
from alm.data.config import DataConfig
from alm.errors import ConfigError
from alm.tokenizer import TokenizerConfig

CORPUS_YAML = Path(__file__).resolve().parents[2] / "configs" / "corpus.yaml"


def test_default_is_builtin_tiny_shakespeare_split_at_blank_lines() -> None:
    cfg = DataConfig()
    (source,) = cfg.sources
    assert (source.type, source.name, source.boundary) == ("builtin", "tinyshakespeare", "blank_line")
    assert cfg.tokenizer.vocab_size == 4096 and cfg.root == Path("data")
    assert isinstance(cfg.tokenizer, TokenizerConfig)  # the tokenizer layer's own config, not a copy


def test_corpus_yaml_documents_exactly_the_defaults() -> None:
    assert to_dict(load(DataConfig, CORPUS_YAML)) == to_dict(DataConfig())


def test_round_trips_through_plain_data() -> None:
    cfg = from_dict(
        DataConfig,
        {"sources": [{"type": "local", "paths": ["a/*.txt"], "boundary": "line"}, {"type": "builtin"}]},
    )
    assert to_dict(from_dict(DataConfig, to_dict(cfg))) == to_dict(cfg)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"sources": [{"type": "local"}]}, "sources[0].paths"),
        ({"sources": [{"type": "builtin", "paths": ["x.txt"]}]}, "sources[0].paths"),
        ({"sources": [{"type": "builtin", "name": "nope"}]}, "sources[0].name"),
        ({"sources": [{"type": "huggingface"}]}, "sources[0].repo"),
        ({"sources": [{"type": "local", "paths": ["a"], "repo": "x/y"}]}, "sources[0].repo"),
        ({"sources": [{"type": "ftp"}]}, "sources[0].type"),
        ({"sources": []}, "sources"),
        ({"sources": [{"type": "builtin", "colour": 1}]}, "sources[0].colour"),
        ({"tokenizer": {"vocab_size": 100}}, "tokenizer.vocab_size"),
        ({"tokenizer": {"type": "wordpiece"}}, "tokenizer.type"),
        ({"val_fraction": 0}, "val_fraction"),
        ({"split": "random"}, "split"),
        ({"val_block_bytes": 0}, "val_block_bytes"),
        ({"packing": {"shard_tokens": 10}}, "packing.shard_tokens"),
        ({"cleaning": {"min_chars": 0}}, "cleaning.min_chars"),
        ({"rooot": "data"}, "rooot"),
    ],
)
def test_bad_keys_name_the_key_and_file(data, key) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(DataConfig, data, source="corpus.yaml")
    assert info.value.key == key
    assert "corpus.yaml" in str(info.value) and info.value.exit_code == 2
