"""TrainConfig validation, the learning-rate schedules and the shipped presets."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest

from alm.config import from_dict, load
from alm.errors import ConfigError, UsageError
from alm.train.config import PRESETS, TrainConfig
from alm.train.schedule import LRScheduler, lr_at


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"lr": -1e-3}, "lr"),
        ({"lr": 1e-4, "min_lr": 1e-3}, "min_lr"),
        ({"steps": 10, "warmup_steps": 11}, "warmup_steps"),
        ({"steps": 0}, "steps"),
        ({"grad_accum": 0}, "grad_accum"),
        ({"beta2": 1.0}, "beta2"),
        ({"eval_interval": -1}, "eval_interval"),
        ({"schedule": "linear"}, "schedule"),
        ({"schedule": "wsd", "steps": 100, "warmup_steps": 90, "decay_fraction": 0.2}, "warmup_steps"),
        ({"precision": "fp8"}, "precision"),
        ({"lr_max": 1.0}, "lr_max"),
    ],
)
def test_invalid_values_name_the_key(values: dict, key: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, values, source="train.yaml", prefix="train.")
    assert info.value.key == f"train.{key}"
    assert "train.yaml" in str(info.value)


def test_defaults_are_valid_and_overrides_apply() -> None:
    cfg = load(TrainConfig, None, ["lr=1e-3", "steps=50", "warmup_steps=5"])
    assert (cfg.lr, cfg.steps, cfg.warmup_steps) == (1e-3, 50, 5)


def test_presets_ship_and_load() -> None:
    assert {"micro", "default"} <= set(PRESETS.names())
    micro = PRESETS.load("micro", ["steps=70"])
    assert micro.steps == 70
    assert PRESETS.load("micro", ["train.steps=70"]) == micro  # qualified keys too, resolved the same way
    with pytest.raises(UsageError, match="unknown train preset"):
        PRESETS.load("no-such-preset")
    with pytest.raises(ConfigError) as info:  # a key of another section is an error, never skipped
        PRESETS.load("micro", ["model.d_model=64"])
    assert info.value.key == "model.d_model" and info.value.source == "--set"


def _cfg(**kw) -> TrainConfig:
    base = {"steps": 100, "lr": 1.0, "min_lr": 0.1, "warmup_steps": 10}
    return from_dict(TrainConfig, {**base, **kw})


def test_warmup_is_linear_from_the_first_step() -> None:
    cfg = _cfg()
    assert lr_at(1, cfg) == pytest.approx(0.1)
    assert lr_at(5, cfg) == pytest.approx(0.5)
    assert lr_at(10, cfg) == pytest.approx(1.0)


def test_cosine_decays_monotonically_to_min_lr() -> None:
    cfg = _cfg(schedule="cosine")
    values = [lr_at(s, cfg) for s in range(10, 101)]
    assert all(a >= b for a, b in itertools.pairwise(values))
    assert values[-1] == pytest.approx(0.1)
    midpoint = 10 + 45
    assert lr_at(midpoint, cfg) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_wsd_holds_then_decays_linearly() -> None:
    cfg = _cfg(schedule="wsd", decay_fraction=0.2)
    assert lr_at(50, cfg) == pytest.approx(1.0)
    assert lr_at(80, cfg) == pytest.approx(1.0)
    assert lr_at(90, cfg) == pytest.approx(0.55)
    assert lr_at(100, cfg) == pytest.approx(0.1)


def test_constant_and_no_warmup() -> None:
    cfg = _cfg(schedule="constant", warmup_steps=0)
    assert {lr_at(s, cfg) for s in (1, 50, 100)} == {1.0}


def test_scheduler_sets_every_group_and_round_trips() -> None:
    import torch

    params = [torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))]
    opt = torch.optim.AdamW([{"params": params[:1]}, {"params": params[1:], "weight_decay": 0.0}])
    sched = LRScheduler(opt, _cfg())
    lr = sched.step(5)
    assert [g["lr"] for g in opt.param_groups] == [lr, lr]
    other = LRScheduler(opt, _cfg())
    other.load_state_dict(sched.state_dict())
    assert other.last_step == 5
    assert sched.state_dict() == {"last_step": 5}  # the schedule itself is the run's config


ABLATIONS = sorted((Path(__file__).resolve().parents[2] / "configs" / "ablations").glob("*.yaml"))
ABLATION_KEYS = {"norm", "norm_position", "position", "ffn", "bias", "n_kv_heads"}


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_ablations_are_micro_plus_one_idea_and_train(path: Path) -> None:
    import torch

    from alm.config import to_dict
    from alm.model import Transformer
    from alm.model.presets import load_model_config

    micro = to_dict(load_model_config("micro"))
    cfg = load_model_config(path, ["vocab_size=320", "max_seq_len=32"])
    changed = {k for k, v in to_dict(cfg).items() if k not in ("vocab_size", "max_seq_len") and micro[k] != v}
    assert changed <= ABLATION_KEYS, changed
    model = Transformer(cfg)
    x = torch.randint(0, 320, (2, 16))
    out = model(x, targets=x)
    (out.loss + out.aux_loss).backward()
    assert torch.isfinite(out.loss)
