"""Resolving what a run trains: model + train + data configs from presets, files and `--set` overrides, and
deciding whether a saved run may be resumed with a given configuration.

A run's resolved config is `{"model": ..., "train": ..., "data": ...}` with every default filled in and the
values derived at start-up made explicit (`model.vocab_size` from the tokenizer, `train.seq_len`), so
`config.yaml` alone says exactly what was trained.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alm.config import apply_overrides, from_dict, read_yaml, split_overrides, to_dict
from alm.data.config import DataConfig
from alm.errors import ConfigError, UsageError
from alm.model.config import ModelConfig
from alm.train.config import TrainConfig
from alm.train.presets import load_train_config

SECTIONS = ("model", "train", "data")
DEFAULT_PRESET = "micro"
CORPUS_FILE = "corpus.yaml"

# Train keys that may change when a run is resumed: they do not alter the optimisation trajectory up to the
# resume point (more steps re-shapes the schedule's tail, which is what "train longer" means).
RESUME_SAFE_TRAIN_KEYS = frozenset(
    {
        "steps",
        "eval_interval",
        "eval_batches",
        "sample_interval",
        "sample_prompt",
        "sample_tokens",
        "log_interval",
        "ckpt_interval",
        "keep_last",
        "max_bad_steps",
        "progress",
        "device",
        "compile",
    }
)


@dataclass
class RunConfig:
    model: ModelConfig
    train: TrainConfig
    data: DataConfig
    preset: str = DEFAULT_PRESET  # names the run by default: <timestamp>-<preset>

    def to_dict(self) -> dict[str, Any]:
        return {"model": to_dict(self.model), "train": to_dict(self.train), "data": to_dict(self.data)}


def _load_data_file(path: Path | None, overrides: list[str], **defaults: Any) -> DataConfig:
    data = {**defaults, **(read_yaml(path) if path is not None else {})}
    source = str(path) if path is not None else None
    return from_dict(DataConfig, apply_overrides(data, overrides), source=source, prefix="data.")


def load_data_config(data: str | Path | None, overrides: Iterable[str] = ()) -> DataConfig:
    """`--data`: a corpus.yaml; a data directory (built under it, from its corpus.yaml if it has one, else from
    the built-in corpus); or None (the built-in corpus under ./data)."""
    overrides = list(overrides)
    if data is None:
        return _load_data_file(None, overrides)
    path = Path(data)
    if path.is_dir():
        corpus = path / CORPUS_FILE
        if corpus.is_file():
            return _load_data_file(corpus, overrides, root=str(path))  # its own `root:` still wins
        return _load_data_file(None, overrides, root=str(path))
    if path.suffix in (".yaml", ".yml"):
        return _load_data_file(path, overrides)  # a missing file is a ConfigError naming it
    raise UsageError(
        f"--data {data}: not a directory or a .yaml corpus file",
        hint="pass a corpus.yaml (see configs/corpus.yaml) or a data directory",
    )


def load_run_config(
    model: str | Path | None = None,
    train: str | Path | None = None,
    data: str | Path | None = None,
    overrides: Iterable[str] = (),
) -> RunConfig:
    """Build the three configs from presets/files and section-qualified overrides (`model.d_model=128`)."""
    from alm.model.presets import load_model_config

    grouped = split_overrides(overrides, SECTIONS)
    model_ref = model or DEFAULT_PRESET
    model_cfg = load_model_config(str(model_ref), grouped["model"])
    train_cfg = load_train_config(str(train or DEFAULT_PRESET), grouped["train"])
    data_cfg = load_data_config(data, grouped["data"])
    return RunConfig(model_cfg, train_cfg, data_cfg, preset=Path(str(model_ref)).stem)


def run_config_from_dict(
    resolved: Mapping[str, Any], source: str, overrides: Iterable[str] = ()
) -> RunConfig:
    """A saved run's config (config.yaml / checkpoint), with `--set` overrides applied on top."""
    grouped = split_overrides(overrides, SECTIONS)
    sections = {}
    for name, cls in (("model", ModelConfig), ("train", TrainConfig), ("data", DataConfig)):
        values = apply_overrides(resolved.get(name) or {}, grouped[name])
        sections[name] = from_dict(cls, values, source=source, prefix=f"{name}.")
    return RunConfig(sections["model"], sections["train"], sections["data"])


def finalize(cfg: RunConfig, vocab_size: int) -> RunConfig:
    """Fill in what the data decides (vocab size, default sequence length) and check the pieces fit together."""
    model, train = cfg.model, cfg.train
    if model.vocab_size is None:
        model = dataclasses.replace(model, vocab_size=vocab_size)
    elif model.vocab_size < vocab_size:
        raise ConfigError(
            "model.vocab_size",
            f"{model.vocab_size} is smaller than the tokenizer's vocabulary ({vocab_size})",
            hint="leave model.vocab_size unset (null) to take it from the tokenizer",
        )
    if train.seq_len is None:
        train = dataclasses.replace(train, seq_len=model.max_seq_len)
    elif train.seq_len > model.max_seq_len:
        raise ConfigError(
            "train.seq_len",
            f"{train.seq_len} exceeds the model's context (model.max_seq_len={model.max_seq_len})",
            hint="lower train.seq_len or raise model.max_seq_len",
        )
    return dataclasses.replace(cfg, model=model, train=train)


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(saved: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Dotted keys whose values differ between two resolved configs: key -> (saved, new)."""
    old_flat, new_flat = _flatten(saved), _flatten(new)
    return {
        key: (old_flat.get(key), new_flat.get(key))
        for key in sorted(set(old_flat) | set(new_flat))
        if old_flat.get(key) != new_flat.get(key)
    }


def check_resume_changes(
    saved: Mapping[str, Any], new: Mapping[str, Any], step: int
) -> dict[str, tuple[Any, Any]]:
    """The safe changes a resume would make; an unsafe one (model, data, optimisation) is a UsageError."""
    changes = config_changes(saved, new)
    unsafe = [k for k in changes if not (k.startswith("train.") and k[6:] in RESUME_SAFE_TRAIN_KEYS)]
    if unsafe:
        listed = "; ".join(f"{k}: {changes[k][0]!r} -> {changes[k][1]!r}" for k in unsafe[:5])
        raise UsageError(
            f"cannot resume with a changed configuration ({listed})",
            hint="a resumed run keeps its model, data and optimiser settings; only train."
            + ", train.".join(sorted(RESUME_SAFE_TRAIN_KEYS))
            + " may change. Start a new run (--run NEW) to train something different.",
        )
    steps = new["train"]["steps"]
    if steps <= step:
        raise UsageError(
            f"the run is already at step {step} of train.steps={steps}: nothing left to train",
            hint=f"train longer with --set train.steps={max(step * 2, step + 1)}",
        )
    return changes
