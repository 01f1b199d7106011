"""Resolving run configs (presets, files, --set) and deciding what a resume may change."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alm.config import to_dict
from alm.errors import ConfigError, UsageError
from alm.model.presets import load_model_config
from alm.rundir import default_run_name, run_path
from alm.train.config import PRESETS as TRAIN_PRESETS
from alm.train.run_config import (
    check_resume_changes,
    config_changes,
    finalize,
    load_data_config,
    load_run_config,
    run_config_from_dict,
)


def test_defaults_are_the_micro_presets_on_the_builtin_corpus() -> None:
    cfg = load_run_config()
    assert cfg.model == load_model_config("micro") and cfg.train == TRAIN_PRESETS.load("micro")
    assert cfg.model.d_model == 128 and cfg.train.steps > 0
    assert cfg.data.sources[0].type == "builtin"


def test_section_qualified_overrides() -> None:
    cfg = load_run_config(overrides=["model.n_layers=2", "train.lr=1e-3", "data.val_fraction=0.2"])
    assert (cfg.model.n_layers, cfg.train.lr, cfg.data.val_fraction) == (2, 1e-3, 0.2)
    with pytest.raises(ConfigError, match="model, train, data"):
        load_run_config(overrides=["optim.lr=1"])
    with pytest.raises(ConfigError, match=r"train\.warmup_steps"):
        load_run_config(overrides=["train.steps=5"])  # the micro warmup is longer than 5 steps


def test_data_argument_forms(tmp_path: Path) -> None:
    corpus = tmp_path / "c.yaml"
    corpus.write_text(yaml.safe_dump({"val_fraction": 0.3}))
    assert load_data_config(corpus).val_fraction == 0.3
    with pytest.raises(
        UsageError, match=r"no corpus\.yaml"
    ):  # `--data DIR` names data; an empty DIR holds none
        load_data_config(tmp_path)
    (tmp_path / "corpus.yaml").write_text(yaml.safe_dump({"val_fraction": 0.25}))
    from_dir = load_data_config(tmp_path)
    assert from_dir.val_fraction == 0.25 and from_dir.root == tmp_path.resolve()
    assert load_data_config(tmp_path, ["val_fraction=0.5"]).val_fraction == 0.5
    assert load_data_config(tmp_path, ["data.val_fraction=0.5"]).val_fraction == 0.5
    with pytest.raises(ConfigError, match="not found"):
        load_data_config(tmp_path / "missing.yaml")
    with pytest.raises(UsageError, match=r"notes\.txt"):
        load_data_config(tmp_path / "notes.txt")


def test_finalize_fills_vocab_and_seq_len() -> None:
    cfg = finalize(load_run_config(), vocab_size=512)
    assert cfg.model.vocab_size == 512 and cfg.train.seq_len == cfg.model.max_seq_len
    with pytest.raises(ConfigError, match=r"train\.seq_len"):
        finalize(load_run_config(overrides=["train.seq_len=100000"]), 512)
    with pytest.raises(ConfigError, match=r"model\.vocab_size"):
        finalize(load_run_config(overrides=["model.vocab_size=300"]), 512)


def test_resume_allows_only_safe_changes() -> None:
    saved = to_dict(finalize(load_run_config(), 512))
    more = to_dict(finalize(load_run_config(overrides=["train.steps=900", "train.eval_interval=7"]), 512))
    before = saved["train"]
    assert check_resume_changes(saved, more, step=100) == {
        "train.eval_interval": (before["eval_interval"], 7),
        "train.steps": (before["steps"], 900),
    }
    assert config_changes(saved, saved) == {}
    for change in ("model.d_model=64", "train.lr=0.1", "train.seed=1", "data.val_fraction=0.3"):
        other = to_dict(finalize(load_run_config(overrides=[change]), 512))
        with pytest.raises(UsageError, match="cannot resume with a changed configuration"):
            check_resume_changes(saved, other, step=100)
    with pytest.raises(UsageError, match="nothing left to train"):
        check_resume_changes(saved, saved, step=before["steps"])


def test_run_names_and_paths(tmp_path: Path) -> None:
    assert default_run_name("micro", now=0).endswith("-micro")
    assert default_run_name("../x y").endswith("-..-x-y")
    assert run_path("exp", tmp_path) == tmp_path / "exp"
    assert run_path("some/dir/exp", tmp_path) == Path("some/dir/exp")
    with pytest.raises(UsageError):
        run_path("  ", tmp_path)


def test_one_root_config_built_by_from_dict() -> None:
    from alm.config import from_dict
    from alm.train.run_config import RunConfig

    cfg = finalize(load_run_config(overrides=["model.n_layers=2"]), 512)
    assert from_dict(RunConfig, to_dict(cfg)) == cfg
    assert run_config_from_dict(to_dict(cfg), "ckpt.pt", ["train.steps=700"]).train.steps == 700
    with pytest.raises(ConfigError, match="must start with one of: model, train, data"):
        load_run_config(overrides=["d_model=64"])  # several sections: a bare key is ambiguous


def test_errors_blame_where_the_value_came_from(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_run_config(overrides=["model.n_layers=0"])
    assert info.value.key == "model.n_layers" and info.value.source == "--set"
    bad_train = tmp_path / "train.yaml"
    bad_train.write_text(yaml.safe_dump({"lr": -1.0}))
    with pytest.raises(ConfigError) as info:
        load_run_config(train=str(bad_train))
    assert info.value.key == "train.lr" and info.value.source == str(bad_train)
    saved = to_dict(finalize(load_run_config(), 512))
    saved["train"]["lr"] = -1.0
    with pytest.raises(ConfigError) as info:
        run_config_from_dict(saved, "runs/x/checkpoints/last.pt")
    assert info.value.key == "train.lr" and info.value.source == "runs/x/checkpoints/last.pt"
    with pytest.raises(ConfigError, match=r"train\.seq_len.*model\.max_seq_len"):  # a rule across sections
        load_run_config(overrides=["train.seq_len=100000"])
