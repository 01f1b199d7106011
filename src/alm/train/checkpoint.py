"""Checkpoints: atomic writes, validated reads, and resolving `RUN`/`best`/`step-N` to a file.

Writing: the checkpoint is serialised to a temp file in the target directory, flushed and fsync'ed, then
`os.replace`d over the target and the directory fsync'ed — so `last.pt` is always either the previous complete
file or the new complete file, never a torn one, whatever kills the process. Further names for the same
checkpoint (`best.pt`, `step-N.pt`) are hard links made the same way (copies where links are unsupported).

Reading: `torch.load(weights_only=True, map_location="cpu")` (no code runs from the file); anything that is not a
complete alm checkpoint raises a DataError naming the file. The dict layout is in docs/CONTRACTS.md.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from alm.errors import DataError
from alm.fileio import atomic_write
from alm.train.rundir import DEFAULT_RUNS_ROOT, RunDir, resolve_run_dir

if TYPE_CHECKING:
    from alm.model import Transformer
    from alm.tokenizer import Tokenizer

FORMAT = "alm-checkpoint"
VERSION = 1
COMPILE_PREFIX = "_orig_mod."
REQUIRED_KEYS = ("model", "step", "config")


def atomic_save(obj: Any, path: str | Path) -> Path:
    """`torch.save(obj)` to `path` atomically."""
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def checkpoint_dict(
    model_state: dict[str, Any],
    *,
    step: int,
    tokens_seen: int,
    config: dict[str, Any],
    tokenizer_fingerprint: str,
    vocab_size: int,
    optimizer: dict[str, Any] | None = None,
    scheduler: dict[str, Any] | None = None,
    scaler: dict[str, Any] | None = None,
    loader: dict[str, Any] | None = None,
    rng: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The checkpoint format (docs/CONTRACTS.md). Training state left out (None) is stored empty, which is
    enough for inference: `load_model` reads only the model, step, config and tokenizer."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "model": strip_compile_prefix(model_state),
        "optimizer": optimizer or {},
        "scheduler": scheduler or {},
        "scaler": scaler,
        "step": step,
        "tokens_seen": tokens_seen,
        "loader": loader or {},
        "rng": rng or {},
        "config": config,
        "tokenizer": {"fingerprint": tokenizer_fingerprint, "vocab_size": vocab_size},
        "metrics": metrics if metrics is not None else {"best_val_loss": None},
    }


def strip_compile_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    """torch.compile wraps the model as `_orig_mod`; checkpoints store the plain module's names."""
    return {k.removeprefix(COMPILE_PREFIX): v for k, v in state_dict.items()}


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate an alm checkpoint onto the CPU; a corrupt, truncated or foreign file is a DataError."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, KeyError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file): {first_line[:200]}",
            hint="use another checkpoint of the run (best.pt or a step-N.pt), or retrain",
        ) from None
    except OSError as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise DataError(
            f"{path} is a torch file but not an alm checkpoint",
            hint="alm reads checkpoints written by `alm train`; for Hugging Face weights use the model import",
        )
    if ckpt.get("version") != VERSION:
        raise DataError(
            f"{path} is alm checkpoint version {ckpt.get('version')!r}; this alm reads version {VERSION}",
            hint="use the alm version that wrote it",
        )
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise DataError(f"{path} is an incomplete alm checkpoint (missing {', '.join(missing)})")
    ckpt["model"] = strip_compile_prefix(ckpt["model"])
    return ckpt


def resolve_checkpoint(
    run_or_path: str | Path, which: str | int = "last", *, root: str | Path = DEFAULT_RUNS_ROOT
) -> Path:
    """A checkpoint file, or `which` (last/best/step-N/N) of a run given by name (under `root`) or directory."""
    candidate = Path(run_or_path)
    if candidate.is_file():
        return candidate
    run = resolve_run_dir(run_or_path, root)
    path = run.checkpoint(which)
    if path.is_file():
        return path
    available = (
        sorted(p.name for p in run.checkpoints_dir.glob("*.pt")) if run.checkpoints_dir.is_dir() else []
    )
    hint = f"available: {', '.join(available)}" if available else "this run has not saved a checkpoint yet"
    raise DataError(f"run {run.name} has no checkpoint {path.name}", hint=hint)


def run_dir_of_checkpoint(path: Path) -> RunDir:
    """runs/NAME/checkpoints/last.pt -> runs/NAME."""
    return RunDir(path.resolve().parent.parent)


def load_model(
    run_or_path: str | Path,
    which: str | int = "last",
    device: str | torch.device = "cpu",
    *,
    root: str | Path = DEFAULT_RUNS_ROOT,
) -> tuple[Transformer, Tokenizer, dict[str, Any], int]:
    """(model in eval mode on `device`, its tokenizer, the run's resolved config, the checkpoint's step)."""
    from alm.config import from_dict
    from alm.model import ModelConfig, Transformer
    from alm.tokenizer import Tokenizer

    path = resolve_checkpoint(run_or_path, which, root=root)
    ckpt = load_checkpoint(path)
    config = ckpt["config"]
    model_cfg = from_dict(ModelConfig, config.get("model"), source=f"{path} (model config)")
    tokenizer_path = run_dir_of_checkpoint(path).tokenizer_path
    if not tokenizer_path.is_file():
        raise DataError(
            f"no tokenizer.json beside checkpoint {path} (expected {tokenizer_path})",
            hint="checkpoints are read from inside their run directory (runs/NAME/checkpoints/)",
        )
    tokenizer = Tokenizer.load(tokenizer_path)
    expected = (ckpt.get("tokenizer") or {}).get("fingerprint")
    if expected and tokenizer.fingerprint != expected:
        raise DataError(
            f"{tokenizer_path} is not the tokenizer checkpoint {path.name} was trained with",
            hint="restore the run's original tokenizer.json",
        )
    model = Transformer(model_cfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise DataError(f"checkpoint {path} does not match its model config: {str(exc)[:300]}") from None
    if isinstance(device, str):
        from alm.device import resolve_device

        device = resolve_device(device)
    model.to(device).eval()
    return model, tokenizer, config, int(ckpt["step"])
