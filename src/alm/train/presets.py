"""Train presets: `configs/train/NAME.yaml`, or any YAML file path."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from alm.config import apply_overrides, from_dict, read_yaml
from alm.errors import UsageError
from alm.train.config import TrainConfig

PRESET_DIR = Path(__file__).resolve().parents[3] / "configs" / "train"


def available_presets() -> list[str]:
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_train_config(name_or_path: str | Path, overrides: Iterable[str] = ()) -> TrainConfig:
    path = Path(name_or_path)
    if not path.is_file():
        path = PRESET_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise UsageError(
                f"unknown train preset or file {str(name_or_path)!r}",
                hint=f"presets: {', '.join(available_presets())}; or pass a YAML file path",
            )
    # keys in errors read `train.lr`, the way they are written in `--set train.lr=...`
    return from_dict(
        TrainConfig, apply_overrides(read_yaml(path), overrides), source=str(path), prefix="train."
    )
