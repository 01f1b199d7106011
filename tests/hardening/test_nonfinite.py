"""Non-finite numbers never pass silently: not as config values, not as weights after an update, not into
last.pt, and not out of a checkpoint into `alm sample` / `alm eval`."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml
from hardening_helpers import invoke, train_args

from alm.config import load
from alm.device import setup_device
from alm.errors import AlmError, ConfigError, DataError
from alm.events import CheckpointEvent, StopEvent, WarningEvent, read_events
from alm.model import ModelConfig, Transformer
from alm.train.checkpoint import load_checkpoint, load_model, save_checkpoint
from alm.train.config import TrainConfig
from alm.train.optim import build_optimizer
from alm.train.run_config import load_run_config
from alm.train.step import LossOutput, lm_loss, train_step
from alm.train.trainer import Trainer
from testkit.tiny_data import tiny_plan


@pytest.mark.parametrize("value", ["inf", ".inf", "-.inf", "nan", ".nan", "1e999", "-1e999"])
def test_non_finite_config_values_are_refused(value: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"'train\.lr' \(in --set\): must be a finite number"):
        load_run_config(overrides=[f"train.lr={value}"])
    with pytest.raises(ConfigError, match=r"'model\.rope_theta' \(in --set\): must be a finite number"):
        load_run_config(overrides=[f"model.rope_theta={value}"])
    path = tmp_path / "train.yaml"
    path.write_text(f"eps: {value}\n")
    with pytest.raises(ConfigError, match=rf"'eps' \(in {path}\): must be a finite number"):
        load(TrainConfig, path)


def test_cli_refuses_lr_inf_before_training(tiny_data, tmp_path: Path) -> None:
    result = invoke(train_args(tiny_data, tmp_path / "runs" / "inf", "train.lr=inf"))
    assert result.exit_code == 2, result.output
    assert "train.lr" in result.output and "finite" in result.output
    assert not (tmp_path / "runs" / "inf").exists()  # refused before the run directory appeared


def _tiny_step(lr: float) -> tuple[Transformer, bool]:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=64, d_model=32, n_layers=1, n_heads=2, max_seq_len=16)
    model = Transformer(cfg)
    optimizer = build_optimizer(model, TrainConfig(lr=lr, min_lr=0.0))
    _, precision = setup_device("cpu", "fp32")
    x = torch.randint(0, 64, (2, 16))
    result = train_step(model, [(x, x)], lm_loss, optimizer, precision=precision)
    assert not result.skipped  # the loss and gradients were finite: only the update overflowed
    return model, result.weights_finite


def test_an_update_that_overflows_the_weights_is_caught() -> None:
    model, finite = _tiny_step(lr=1e39)  # finite as a float64 config value, inf in the fp32 optimizer
    assert not finite
    assert not all(bool(p.isfinite().all()) for p in model.parameters())
    _, finite = _tiny_step(lr=1e-3)
    assert finite


def test_a_wrecking_update_stops_the_run_and_saves_nothing_of_it(tiny_data, tmp_path: Path) -> None:
    plan = tiny_plan(tiny_data, tmp_path / "runs" / "wreck", lr=1e39, min_lr=0.0, steps=6, ckpt_interval=1)
    result = Trainer(plan).run()
    assert result.reason == "nan" and result.step == 1
    assert result.detail and "left inf or nan in the weights" in result.detail
    assert result.last_checkpoint is None  # step 1 was the wreck: nothing was saved
    events = read_events(plan.run.events_path)
    assert not [e for e in events if isinstance(e, CheckpointEvent)]
    stop = events[-1]
    assert isinstance(stop, StopEvent) and stop.reason == "nan" and "inf or nan" in stop.detail


def test_a_run_that_ends_on_skipped_steps_is_not_finished(tiny_data, tmp_path: Path) -> None:
    """`lr=1e6, steps=4` used to report "done" with a collapsed model: its last steps had been skipped."""
    calls = {"n": 0}

    def nan_at_the_end(model, batch) -> LossOutput:
        calls["n"] += 1
        out = lm_loss(model, batch)
        return out if calls["n"] <= 2 else LossOutput(out.loss * math.nan, out.reported * math.nan)

    plan = tiny_plan(tiny_data, tmp_path / "runs" / "end", steps=4, eval_interval=0, ckpt_interval=2)
    result = Trainer(plan, loss_fn=nan_at_the_end).run()
    assert result.reason == "nan" and result.step == 4
    assert result.detail == "the run ended on skipped updates: steps 3-4 were not finite (loss or gradients)"
    warnings = [e for e in read_events(plan.run.events_path) if isinstance(e, WarningEvent)]
    assert [w.step for w in warnings] == [3, 4]
    ckpt = load_checkpoint(plan.run.checkpoint("last"))
    assert all(bool(t.isfinite().all()) for t in ckpt["model"].values())


def _poisoned(run: Path) -> Path:
    """The run's last.pt with one weight set to nan, as a diverged run would have saved it before this guard."""
    path = run / "checkpoints" / "last.pt"
    ckpt = load_checkpoint(path)
    ckpt["model"]["tok_emb.weight"][0, 0] = math.nan
    torch.save(ckpt, path)
    return path


def test_save_checkpoint_refuses_non_finite_weights(tiny_data, tmp_path: Path) -> None:
    plan = tiny_plan(tiny_data, tmp_path / "runs" / "s", steps=2, eval_interval=0, ckpt_interval=0)
    Trainer(plan).run()
    last = plan.run.checkpoint("last")
    good = last.read_bytes()
    ckpt = load_checkpoint(last)
    ckpt["model"]["norm.weight"][0] = math.inf
    with pytest.raises(AlmError, match=r"refusing to save step 2 .*norm\.weight.*last good ones"):
        save_checkpoint(ckpt, last)
    assert last.read_bytes() == good


def test_sample_and_eval_refuse_a_checkpoint_with_non_finite_weights(tiny_data, tmp_path: Path) -> None:
    plan = tiny_plan(tiny_data, tmp_path / "runs" / "nanrun", steps=2, eval_interval=0, ckpt_interval=0)
    Trainer(plan).run()
    path = _poisoned(plan.run.path)
    with pytest.raises(DataError, match=r"non-finite weights .*tok_emb\.weight"):
        load_model(path)
    sampled = invoke(["sample", str(path), "--prompt", "ROMEO:", "--max-tokens", "4", "--device", "cpu"])
    assert sampled.exit_code == 1 and "non-finite weights" in sampled.output, sampled.output
    evaluated = invoke(["eval", str(path), "--text", str(tiny_data.root / "corpus.txt"), "--device", "cpu"])
    assert evaluated.exit_code == 1 and "non-finite weights" in evaluated.output, evaluated.output
    assert "loss nan" not in evaluated.output


def test_a_config_file_with_inf_is_blamed_on_the_file(tmp_path: Path) -> None:
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({"d_model": 64, "n_heads": 4, "norm_eps": float("inf")}))
    with pytest.raises(ConfigError, match=rf"'model\.norm_eps' \(in {path}\): must be a finite number"):
        load_run_config(model=str(path))
