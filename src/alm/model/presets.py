"""Model presets: `configs/model/*.yaml` in the repo, shipped as package data.

The YAML files live in `src/alm/resources/configs/model/` (setuptools package data, so they exist in an
installed wheel too); the repo's `configs/model` is a symlink to that folder, so there is one copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alm.config import load, preset_names, resolve_preset
from alm.model.config import ModelConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "resources" / "configs" / "model"

# The vocabulary each preset's parameter count assumes (presets leave vocab_size to the tokenizer; these are
# the figures quoted in each preset's header comment). Used by `alm model info` when no vocab is given.
REFERENCE_VOCAB = {"micro": 4096, "pico": 32000, "nano": 32000, "small": 50304}
DEFAULT_REFERENCE_VOCAB = 32000


def available_presets() -> list[str]:
    return preset_names(PRESET_DIR)


def preset_path(name: str) -> Path:
    """The YAML file of preset `name`; UsageError listing the presets when there is none."""
    return resolve_preset(name, PRESET_DIR, "model")


def resolve_model_source(name_or_path: str | Path) -> Path:
    """A preset name or an existing YAML file, as a path."""
    return resolve_preset(name_or_path, PRESET_DIR, "model")


def load_model_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> ModelConfig:
    """Load a preset (by name) or a model YAML file, then apply `key=value` overrides.

    Override keys are model-relative (`d_model=256`); a `model.` prefix is accepted and dropped, so the same
    `--set model.d_model=256` works here and in `alm train`.
    """
    relative = [text[len("model.") :] if text.startswith("model.") else text for text in overrides]
    return load(ModelConfig, resolve_model_source(name_or_path), relative)


def reference_vocab(name_or_path: str | Path) -> int:
    """The vocab size a preset's quoted parameter count assumes (DEFAULT_REFERENCE_VOCAB for other files)."""
    return REFERENCE_VOCAB.get(str(name_or_path), DEFAULT_REFERENCE_VOCAB)
