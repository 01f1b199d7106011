"""Text samples during training: every `sample_interval` steps (and at the last step) the model continues
`sample_prompt`, so a person watching the run can read how it is doing."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from alm.events import SampleEvent
from alm.model import Transformer
from alm.sample import SamplingConfig, generate
from alm.tokenizer import Tokenizer
from alm.train.config import TrainConfig
from alm.train.report import Reporter


class Samples:
    def __init__(
        self,
        model: Transformer,
        tokenizer_path: Path,
        cfg: TrainConfig,
        device: torch.device,
        report: Reporter,
    ):
        self.model, self.cfg, self.device, self.report = model, cfg, device, report
        self.tokenizer = Tokenizer.load(tokenizer_path) if cfg.sample_interval else None
        self.last: str | None = None  # prompt + the latest sample

    def due(self, step: int) -> bool:
        interval = self.cfg.sample_interval
        return bool(interval) and (step % interval == 0 or step == self.cfg.steps)

    def after_step(self, step: int) -> None:
        if self.tokenizer is None or not self.due(step):
            return
        prompt = self.cfg.sample_prompt
        # Seeded by the step, and `generate` uses its own generator: the training RNGs are never touched.
        sampling = SamplingConfig(
            temperature=0.8, top_k=50, max_new_tokens=self.cfg.sample_tokens, seed=self.cfg.seed + step
        )
        with _eval_mode(self.model):
            text = "".join(generate(self.model, self.tokenizer, prompt, sampling, device=self.device))
        self.last = prompt + text
        self.report(SampleEvent(step=step, prompt=prompt, text=text))


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    was_training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was_training)
