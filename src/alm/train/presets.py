"""Train presets: `configs/train/*.yaml` in the repo, shipped as package data.

Same layout as the model presets (`alm.model.presets`): the YAML files live in
`src/alm/resources/configs/train/` (so an installed wheel has them) and the repo's `configs/train` is a symlink
to that folder, so there is one copy.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alm.config import apply_overrides, from_dict, preset_names, read_yaml, resolve_preset
from alm.train.config import TrainConfig

PRESET_DIR = Path(__file__).resolve().parents[1] / "resources" / "configs" / "train"


def available_presets() -> list[str]:
    return preset_names(PRESET_DIR)


def resolve_train_source(name_or_path: str | Path) -> Path:
    """A preset name or an existing YAML file, as a path."""
    return resolve_preset(name_or_path, PRESET_DIR, "train")


def load_train_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    """Load a preset or YAML file, then apply `key=value` overrides (a `train.` prefix is accepted and dropped).

    Error keys read `train.lr`, the way they are written in `--set train.lr=...`.
    """
    path = resolve_train_source(name_or_path)
    relative = [text.removeprefix("train.") for text in overrides]
    return from_dict(
        TrainConfig, apply_overrides(read_yaml(path), relative), source=str(path), prefix="train."
    )
