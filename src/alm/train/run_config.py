"""A run's configuration: the root `RunConfig` (model, train and data sections) built from presets, files and
`--set` overrides, or from a saved run; and what a resume may change.

A run's resolved config is `{"model": ..., "train": ..., "data": ..., "init": ...}` with every default filled in
and the values derived at start-up made explicit (`model.vocab_size` from the tokenizer, `train.seq_len`), so
`config.yaml` alone says exactly what was trained — and, in `init`, which run's weights it started from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alm.config import build, qualify_overrides, read_yaml, require, to_dict
from alm.data.config import DataConfig
from alm.data.settings import resolve_data_arg
from alm.errors import ConfigError, UsageError
from alm.model.config import ModelConfig
from alm.model.presets import PRESETS as MODEL_PRESETS
from alm.train.config import PRESETS as TRAIN_PRESETS
from alm.train.config import TrainConfig

DEFAULT_PRESET = "micro"

# Train keys that may change when a run is resumed: they do not alter the optimisation trajectory up to the
# resume point (more steps re-shapes the schedule's tail, which is what "train longer" means).
RESUME_SAFE_TRAIN_KEYS = frozenset(
    {
        "steps",
        "eval_interval",
        "eval_batches",
        "early_stop_patience",
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
        "parallel",  # ddp, fsdp and one process take the same steps (alm.train.parallel)
    }
)


@dataclass
class InitConfig:
    """Where a run's first weights came from, when not from random initialisation: another run's checkpoint
    (`alm train --init-from`, `alm sft`, `alm dpo`; `alm.train.parent`)."""

    run: str = ""  # the parent run's directory
    checkpoint: str = ""  # the checkpoint file the weights came from
    step: int = 0  # that checkpoint's step

    def validate(self) -> None:
        require(bool(self.run), "run", "names no parent run")
        require(bool(self.checkpoint), "checkpoint", "names no checkpoint")


@dataclass
class RunConfig:
    """The root config of a run, one field per section of `alm.config.RUN_SECTIONS`, and where its weights
    started (`init`; null: from random initialisation). `--set` reaches only the RUN_SECTIONS."""

    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    data: DataConfig = field(default_factory=DataConfig)
    init: InitConfig | None = None

    def validate(self) -> None:
        seq_len, context = self.train.seq_len, self.model.max_seq_len
        require(
            seq_len is None or seq_len <= context,
            "train.seq_len",
            f"{seq_len} exceeds the model's context (model.max_seq_len={context}); lower train.seq_len or "
            "raise model.max_seq_len",
        )


def load_data_config(data: str | Path | None, overrides: Iterable[str] = ()) -> DataConfig:
    """The data section alone, from a `--data` argument and `--set data.…` overrides."""
    base, source = resolve_data_arg(data)
    return build(DataConfig, base, overrides, section="data", source=source)


@dataclass(frozen=True)
class StartingPoint:
    """What a run started from another run's checkpoint takes from it (`alm.train.parent.Parent.start`)."""

    init: InitConfig
    model: dict[str, Any]  # the parent's model section
    tokenizer: Path  # the parent's tokenizer.json: the data is packed with it


def load_run_config(
    model: str | Path | None = None,
    train: str | Path | None = None,
    data: str | Path | None = None,
    overrides: Iterable[str] = (),
    *,
    start: StartingPoint | None = None,
) -> RunConfig:
    """Presets (or files) as base values for each section, then `--set model.… train.… data.…` on top; `data`
    is what `alm train --data` takes (`alm.data.settings.resolve_data_arg`). With `start` the model section is
    the parent's and the data is packed with its tokenizer (`data.tokenizer.file`); `model` must then be None."""
    train_path = TRAIN_PRESETS.path(train or DEFAULT_PRESET)
    data_base, data_source = resolve_data_arg(data)
    base: dict[str, Any] = {"train": read_yaml(train_path), "data": data_base}
    sources = {"train": str(train_path)}
    if start is None:
        model_path = MODEL_PRESETS.path(model or DEFAULT_PRESET)
        base["model"], sources["model"] = read_yaml(model_path), str(model_path)
    else:
        base["model"], sources["model"] = start.model, start.init.checkpoint
        base["data"] = {**data_base, "tokenizer": {"file": str(start.tokenizer)}}
        base["init"] = to_dict(start.init)
    if data_source is not None:
        sources["data"] = data_source
    cfg = build(RunConfig, base, qualify_overrides(overrides), source=sources)
    if start is not None and cfg.data.tokenizer.file != start.tokenizer:
        raise UsageError(
            f"data.tokenizer.file: a run started from {start.init.run} packs its data with that run's tokenizer "
            f"({start.tokenizer}), not {cfg.data.tokenizer.file}",
            hint="drop --set data.tokenizer.file",
        )
    return cfg


def run_config_from_dict(
    resolved: Mapping[str, Any], source: str, overrides: Iterable[str] = ()
) -> RunConfig:
    """A saved run's config (config.yaml / checkpoint), with `--set` overrides applied on top."""
    return build(RunConfig, resolved, qualify_overrides(overrides), source=source)


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
