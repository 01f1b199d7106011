"""Checkpoints: atomic writes, validated reads, and resolving `RUN`/`best`/`step-N` to a file.

Writing: the checkpoint is serialised to a temp file in the target directory, flushed and fsync'ed, then
`os.replace`d over the target and the directory fsync'ed — so `last.pt` is always either the previous complete
file or the new complete file, never a torn one, whatever kills the process. Further names for the same
checkpoint (`best.pt`, `step-N.pt`) are hard links made the same way (copies where links are unsupported).
`save_checkpoint` (the trainer's) also refuses weights holding inf/nan and a disk without room for the file, so
a diverged or failed save never replaces the last good checkpoint.

Reading: `torch.load(weights_only=True, map_location="cpu")` (no code runs from the file); anything that is not a
complete alm checkpoint raises a DataError naming the file, and `load_model` refuses non-finite weights. The
dict layout is in docs/CONTRACTS.md.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from alm.capacity import check_free_space, disk_full_error, is_disk_full
from alm.errors import AlmError, DataError
from alm.fileio import atomic_write
from alm.rundir import DEFAULT_RUNS_ROOT, RunDir, resolve_run_dir
from alm.train.finite import all_finite, nonfinite_names

if TYPE_CHECKING:
    from alm.model import Transformer
    from alm.tokenizer import Tokenizer

FORMAT = "alm-checkpoint"
VERSION = 1
COMPILE_PREFIX = "_orig_mod."
REQUIRED_KEYS = ("model", "step", "config")


def atomic_save(obj: Any, path: str | Path, *, hint: str | None = None) -> Path:
    """`torch.save(obj)` to `path` atomically; a full disk is an AlmError naming `path` (the previous file is
    kept: the write went to a temp file, which is removed)."""
    try:
        return atomic_write(path, lambda fh: torch.save(obj, fh))
    except (OSError, RuntimeError) as exc:
        if is_disk_full(exc):
            raise disk_full_error(path, state_bytes(obj), hint) from None
        raise


def save_checkpoint(ckpt: dict[str, Any], path: str | Path, *, hint: str | None = None) -> Path:
    """Save a training checkpoint as `path` (last.pt): never one whose weights are not finite — the file that
    resume, sample and export trust must stay the last good one — and not into a disk that cannot hold it."""
    weights = ckpt["model"]
    if not all_finite(weights.values()):
        bad = nonfinite_names(weights)
        raise AlmError(
            f"refusing to save step {ckpt.get('step')} as {path}: {len(bad)} weight tensor(s) hold inf or nan "
            f"({', '.join(bad[:3])}{', …' if len(bad) > 3 else ''}); the checkpoints on disk are the last good ones",
            hint="lower train.lr (or raise train.warmup_steps, set train.grad_clip) and start a new run",
        )
    check_free_space(Path(path).parent, state_bytes(ckpt), hint)
    return atomic_save(ckpt, path, hint=hint)


def state_bytes(obj: Any) -> int:
    """The bytes of every tensor in a (nested) state: about what `torch.save` writes."""
    if isinstance(obj, torch.Tensor):
        return obj.nelement() * obj.element_size()
    if isinstance(obj, dict):
        return sum(state_bytes(v) for v in obj.values())
    if isinstance(obj, list | tuple):
        return sum(state_bytes(v) for v in obj)
    return 0


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
    except OSError as exc:
        raise DataError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # a torn or foreign file fails in the unpickler in many ways (IndexError, …)
        raise _unreadable(path, exc) from None
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


def _unreadable(path: Path, exc: BaseException) -> DataError:
    """Why `path` did not load, in alm's words: torch's own text for a refused pickle recommends loading with
    weights_only=False, which would run code from the file; alm never passes that advice on."""
    text = str(exc).strip()
    hint = _other_checkpoints_hint(path)
    found = re.search(r"GLOBAL ([\w.]+)", text)
    if found:
        return DataError(
            f"{path} holds Python objects ({found.group(1)}) that a checkpoint never contains; alm loads "
            "checkpoints without running code from them, so it does not load this file",
            hint=f"use a checkpoint written by alm; {hint}",
        )
    lines = [line.strip() for line in text.splitlines() if line.strip() and "weights_only" not in line]
    cause = (lines[0] if lines else type(exc).__name__).removeprefix("WeightsUnpickler error:").strip()
    return DataError(
        f"{path} is not a readable checkpoint (corrupt, truncated or not a torch file): {cause[:200]}",
        hint=hint,
    )


def _other_checkpoints_hint(path: Path) -> str:
    """Which other checkpoints of the same run could be used instead, and the flag that picks one."""
    others = sorted(p.name for p in path.parent.glob("*.pt") if p.name != path.name)
    if not others:
        return "retrain, or restore the file from a backup"
    listed = ", ".join(others[:6]) + (", …" if len(others) > 6 else "")
    return f"pick another checkpoint of the run with --checkpoint best or step-N (here: {listed})"


def resolve_checkpoint(
    run_or_path: str | Path, which: str | int | None = None, *, root: str | Path = DEFAULT_RUNS_ROOT
) -> Path:
    """A checkpoint file, or `which` (last/best/step-N/N) of a run given by name (under `root`) or directory.

    `which=None` is the default of every command that uses a trained model (sample, eval, export): the run's
    best.pt (lowest val loss) when it has one, else last.pt. Resuming always reads last.pt explicitly."""
    candidate = Path(run_or_path)
    if candidate.is_file():
        return candidate
    run = resolve_run_dir(run_or_path, root)
    if which is None:
        which = "best" if run.checkpoint("best").is_file() else "last"
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
    which: str | int | None = None,  # None: best.pt when the run has one, else last.pt
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
    if not all_finite(ckpt["model"].values()):
        bad = nonfinite_names(ckpt["model"])
        raise DataError(
            f"checkpoint {path} holds non-finite weights ({len(bad)} tensor(s) with inf or nan, e.g. {bad[0]}): "
            "the run diverged before this save, so it cannot be sampled, evaluated or exported",
            hint=_other_checkpoints_hint(path),
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
