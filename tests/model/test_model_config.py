"""ModelConfig validation and the presets, as a user meets them: errors name the key and say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest

from alm.config import from_dict, load
from alm.errors import ConfigError, UsageError
from alm.model import ModelConfig, Transformer
from alm.model.info import count_params
from alm.model.presets import available_presets, load_model_config, preset_path, reference_vocab

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"d_model": 100, "n_heads": 3}, "n_heads", "not divisible"),
        ({"n_heads": 6, "n_kv_heads": 4}, "n_kv_heads", "not divisible"),
        ({"d_model": 36, "n_heads": 4}, "n_heads", "head_dim"),  # head_dim 9 cannot rotate in pairs
        ({"n_kv_heads": 0}, "n_kv_heads", "positive"),
        ({"vocab_size": 0}, "vocab_size", "positive"),
        ({"dropout": 1.0}, "dropout", "[0, 1)"),
        ({"norm": "none", "norm_position": "post"}, "norm_position", "needs a norm"),
        ({"router": {"capacity_factor": 0}}, "router.capacity_factor", "> 0"),
        ({"router": {"small_d_ff": -1}}, "router.small_d_ff", "positive"),
        ({"position": "sinusoidal"}, "position", "must be one of"),
        ({"d_modle": 64}, "d_modle", "unknown key"),
    ],
)
def test_impossible_values_are_config_errors_naming_the_key(values: dict, key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(ModelConfig, values)
    assert info.value.key == key
    assert fragment in info.value.detail


def test_odd_head_dim_is_fine_without_rope() -> None:
    from_dict(ModelConfig, {"d_model": 36, "n_heads": 4, "position": "alibi"})


def test_ffn_width_defaults() -> None:
    assert ModelConfig(d_model=384, multiple_of=64).ffn_dim == 1024  # 8/3·384
    assert ModelConfig(d_model=100, multiple_of=64).ffn_dim == 320  # 266.7 rounded up
    assert ModelConfig(d_model=100, ffn="gelu").ffn_dim == 400
    dual = ModelConfig(d_model=384, ffn="dual")
    assert (dual.small_ffn_dim, dual.large_ffn_dim) == (256, 1024)


def test_a_model_needs_a_vocab_size() -> None:
    with pytest.raises(ConfigError, match="vocab_size"):
        Transformer(ModelConfig(d_model=32, n_heads=4, n_layers=1))


def test_presets_exist_load_and_have_the_advertised_sizes() -> None:
    assert available_presets() == ["micro", "nano", "pico", "small"]
    expected_millions = {"micro": (1, 3), "pico": (28, 30), "nano": (57, 63), "small": (120, 128)}
    for name, (low, high) in expected_millions.items():
        path = preset_path(name)
        first_line = path.read_text().splitlines()[0]
        assert first_line.startswith(f"# {name}:") and f"vocab_size {reference_vocab(name)}" in first_line
        cfg = load_model_config(name)
        assert cfg.vocab_size is None  # the tokenizer decides
        total, _ = count_params(ModelConfig(**{**cfg.__dict__, "vocab_size": reference_vocab(name)}))
        assert low * 1e6 <= total <= high * 1e6, (name, total)
    small = load_model_config("small")
    assert (small.n_layers, small.d_model, small.max_seq_len) == (12, 768, 1024)


def test_unknown_preset_lists_the_available_ones() -> None:
    with pytest.raises(UsageError, match="available: micro, nano, pico, small"):
        load_model_config("huge")
    with pytest.raises(UsageError, match="not found"):
        load_model_config("no/such/model.yaml")


def test_overrides_accept_the_model_prefix_and_files_work(tmp_path: Path) -> None:
    cfg = load_model_config("micro", ["model.d_model=256", "n_kv_heads=2", "router.aux_loss_weight=0.1"])
    assert (cfg.d_model, cfg.n_kv_heads, cfg.router.aux_loss_weight) == (256, 2, 0.1)
    custom = tmp_path / "mine.yaml"
    custom.write_text("vocab_size: 512\nd_model: 64\nn_heads: 2\nn_layers: 1\n")
    assert load_model_config(custom).d_model == 64
    assert load(ModelConfig, custom, ["model.n_layers=3"], section="model").n_layers == 3
    with pytest.raises(ConfigError) as info:
        load_model_config(custom, ["n_heads=3"])
    assert info.value.key == "model.n_heads" and "--set" in str(info.value)  # the --set key, blamed on --set
    with pytest.raises(ConfigError) as info:
        load_model_config(custom, ["train.lr=1"])  # another section's key: an error, never skipped
    assert info.value.key == "train.lr"
