"""What an export is made from: one checkpoint of a run, loaded on the CPU in fp32, with its tokenizer and run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alm.rundir import RunDir

if TYPE_CHECKING:
    from alm.model import Transformer
    from alm.tokenizer import Tokenizer


@dataclass
class ExportSource:
    checkpoint: Path
    run: RunDir
    model: Transformer  # CPU, fp32, eval mode
    tokenizer: Tokenizer
    config: dict[str, Any]  # the run's resolved {model, train, data} (+ `source` for an imported run)
    step: int

    @property
    def name(self) -> str:
        return self.run.name


def load_export_source(checkpoint: Path) -> ExportSource:
    """Load `checkpoint` (a file inside runs/NAME/checkpoints/) the way `alm sample` does, on the CPU."""
    from alm.train.checkpoint import load_model, run_dir_of_checkpoint

    model, tokenizer, config, step = load_model(checkpoint, device="cpu")
    run = RunDir(run_dir_of_checkpoint(checkpoint).path)
    return ExportSource(checkpoint, run, model.float().eval(), tokenizer, config, step)


__all__ = ["ExportSource", "load_export_source"]
