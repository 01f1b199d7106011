"""Model presets: `configs/model/*.yaml` in the repo, shipped as package data.

The YAML files live in `src/alm/resources/configs/model/` (setuptools package data, so they exist in an
installed wheel too); the repo's `configs/model` holds copies that tests/data/test_repo_configs.py keeps equal. The
mechanism (`alm.config.Presets`) is the one the train presets use.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alm.config import CONFIG_DIR, Presets
from alm.model.config import ModelConfig

PRESETS = Presets("model", ModelConfig, CONFIG_DIR / "model")
PRESET_DIR = PRESETS.directory

# The vocabulary each preset's parameter count assumes (presets leave vocab_size to the tokenizer; these are
# the figures quoted in each preset's header comment). Used by `alm model info` when no vocab is given.
REFERENCE_VOCAB = {"micro": 4096, "pico": 32000, "nano": 32000, "small": 50304}
# Any other file (an ablation, your own): the default tokenizer's vocabulary, what `alm train` would give it.
DEFAULT_REFERENCE_VOCAB = 4096


def available_presets() -> list[str]:
    return PRESETS.names()


def preset_path(name_or_path: str | Path) -> Path:
    """The YAML file of a preset (or an existing model YAML); UsageError listing the presets when there is none."""
    return PRESETS.path(name_or_path)


def load_model_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> ModelConfig:
    """A preset (by name) or a model YAML file with `--set` overrides: `model.d_model=256` or `d_model=256`."""
    return PRESETS.load(name_or_path, overrides)


def reference_vocab(name_or_path: str | Path) -> int:
    """The vocab size a preset's quoted parameter count assumes; a file named like a preset (the repo's
    configs/model/micro.yaml is a copy of `micro`) counts like it, any other with DEFAULT_REFERENCE_VOCAB."""
    text = str(name_or_path)
    name = Path(text).stem if Path(text).suffix in (".yaml", ".yml") else text
    return REFERENCE_VOCAB.get(name, DEFAULT_REFERENCE_VOCAB)
