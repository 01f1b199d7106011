"""`alm import hf`: a Hugging Face causal LM (a local directory or a Hub repo id) -> an alm run directory.

The run holds what `alm sample`, `alm eval` and the dashboard read: config.yaml, tokenizer.json with a
tokenizer.meta.json naming which tokens play bos/eos/pad (the HF files decide, never alm's 0/1/2 defaults), and
checkpoints/last.pt at step 0 with the weights in fp32. Architectures alm cannot compute exactly are refused by
config.json field (`alm.model.hf`); the run directory appears only once complete.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alm.errors import DataError, UsageError
from alm.fileio import atomic_write_json, atomic_write_text
from alm.interop.output import staged
from alm.rundir import DEFAULT_RUNS_ROOT, RunDir, run_path
from alm.tokenizer.tokenizer import DEFAULT_ROLES, META_FILE, META_ROLES, TOKENIZER_FILE

if TYPE_CHECKING:
    from alm.model import Transformer
    from alm.tokenizer import Tokenizer


@dataclass(frozen=True)
class ImportResult:
    run: RunDir
    source: str
    model_type: str
    params: int
    vocab_size: int
    roles: dict[str, tuple[str, int]]  # role -> (token, id)


def resolve_hf_source(source: str, revision: str | None = None) -> Path:
    """A local model directory as given, or a Hub repo id downloaded into the Hugging Face cache."""
    from alm.interop.hub import download_model

    path = Path(source).expanduser()
    if path.is_dir():
        if revision is not None:
            raise UsageError("--revision applies to a Hub repo id, not a local directory")
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        raise UsageError(
            f"{source} is neither a model directory nor a Hub repo id",
            hint="give a directory holding config.json, or owner/name on the Hugging Face Hub",
        )
    return download_model(source, revision)


def read_json(path: Path, *, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise UsageError(
                f"{path} not found", hint="a Hugging Face model directory has config.json beside its weights"
            )
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path} is not readable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} does not hold a JSON object")
    return data


def hf_special_tokens(
    directory: Path, config: dict[str, Any], token_of_id: Callable[[int], str | None]
) -> dict[str, str]:
    """role -> token text for bos/eos/pad, as transformers would use them: the ids in generation_config.json
    and config.json first (generation stops on those), then tokenizer_config.json and special_tokens_map.json.
    A model without a pad (or bos) token uses its eos for it."""
    by_id = [read_json(directory / "generation_config.json", required=False), config]
    by_name = [
        read_json(directory / n, required=False) for n in ("tokenizer_config.json", "special_tokens_map.json")
    ]

    def find(role: str) -> str | None:
        for data in by_id:
            token_id = data.get(f"{role}_token_id")
            if isinstance(token_id, list):  # several stop ids: the first is the document end
                token_id = token_id[0] if token_id else None
            if isinstance(token_id, int) and token_of_id(token_id) is not None:
                return token_of_id(token_id)
        for data in by_name:
            value = data.get(f"{role}_token")
            value = value.get("content") if isinstance(value, dict) else value
            if isinstance(value, str) and value:
                return value
        return None

    eos = find("eos")
    if eos is None:
        raise UsageError(
            f"{directory} names no eos token (generation_config.json / config.json eos_token_id, or "
            "tokenizer_config.json eos_token)",
            hint="alm needs to know where a document ends; add eos_token_id to config.json",
        )
    return {"bos": find("bos") or eos, "eos": eos, "pad": find("pad") or eos}


def read_hf_weights(directory: Path) -> dict[str, Any]:
    """Every tensor of the checkpoint: model.safetensors (or its shards), else pytorch_model.bin (or shards),
    the latter read with `weights_only=True` (no code runs from the file)."""
    import torch
    from safetensors.torch import load_file

    for single, index, load in (
        ("model.safetensors", "model.safetensors.index.json", lambda p: load_file(str(p))),
        (
            "pytorch_model.bin",
            "pytorch_model.bin.index.json",
            lambda p: torch.load(p, map_location="cpu", weights_only=True, mmap=True),
        ),
    ):
        if (directory / index).is_file():
            shards = sorted(set(read_json(directory / index).get("weight_map", {}).values()))
        elif (directory / single).is_file():
            shards = [single]
        else:
            continue
        tensors: dict[str, Any] = {}
        for shard in shards:
            try:
                tensors.update(load(directory / shard))
            except Exception as exc:  # safetensors and torch raise assorted types for damaged files
                raise DataError(f"{directory / shard} is not a readable weights file ({exc})") from None
        return tensors
    raise UsageError(
        f"no weights in {directory}", hint="expected model.safetensors (or shards) or pytorch_model.bin"
    )


def load_hf_model(directory: Path) -> tuple[dict[str, Any], Transformer]:
    """(config.json, our fp32 Transformer holding the weights) for a Hugging Face model directory."""
    import torch

    from alm.model import Transformer
    from alm.model.hf import from_hf_state_dict, model_config_from_hf

    config = read_json(directory / "config.json")
    model_cfg = model_config_from_hf(config)
    state = from_hf_state_dict(read_hf_weights(directory), model_cfg)
    model = Transformer(model_cfg)
    try:
        model.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})  # alm keeps fp32 weights
    except RuntimeError as exc:
        raise DataError(f"the weights in {directory} do not fit config.json: {str(exc)[:300]}") from None
    return config, model


def read_hf_tokenizer_roles(directory: Path, config: dict[str, Any]) -> dict[str, str]:
    """bos/eos/pad token texts for the directory's tokenizer.json (which must exist and parse)."""
    from tokenizers import Tokenizer as HFTokenizer

    path = directory / TOKENIZER_FILE
    if not path.is_file():
        raise UsageError(
            f"{directory} has no tokenizer.json",
            hint="alm reads fast (tokenizers) tokenizers; save one with AutoTokenizer(...).save_pretrained",
        )
    try:
        backend = HFTokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for malformed files
        raise DataError(f"{path} is not a tokenizers tokenizer.json ({exc})") from None
    return hf_special_tokens(directory, config, backend.id_to_token)


def import_hf(
    source: str,
    run: str,
    *,
    runs_root: Path = DEFAULT_RUNS_ROOT,
    revision: str | None = None,
    force: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ImportResult:
    """Make runs/RUN from `source` (see the module doc); everything is checked before the run appears."""
    from alm.config import to_dict
    from alm.train.launch import claimed

    say = progress or (lambda _message: None)
    target = RunDir(run_path(run, runs_root))
    _check_free(target, force=force)  # before the download and the reading, and again once the run is ours
    directory = resolve_hf_source(source, revision)
    say(f"reading {directory}")
    config, model = load_hf_model(directory)
    roles = read_hf_tokenizer_roles(directory, config)
    local = Path(source).expanduser()
    origin = str(local.resolve()) if local.is_dir() else source
    provenance = {"format": "hf", "from": origin, "revision": revision, "model_type": config["model_type"]}
    run_config = {"model": to_dict(model.config), "train": {}, "data": {}, "source": provenance}
    # The run's lock, as `alm train` takes it: no trainer, import or fine-tuning writes it meanwhile.
    with claimed(target, "wait for it to finish, or choose another --run") as lock:
        _check_free(target, force=force)
        say(f"writing {target.path}")
        tokenizer = _write_run(target, directory, model, roles, run_config, provenance)
    if lock is not None:
        lock.release()
    ids = {"bos": tokenizer.bos_id, "eos": tokenizer.eos_id, "pad": tokenizer.pad_id}
    return ImportResult(
        target,
        origin,
        config["model_type"],
        model.num_params(),
        model.config.require_vocab(),
        {role: (roles[role], ids[role]) for role in DEFAULT_ROLES},
    )


def _check_free(target: RunDir, *, force: bool) -> None:
    """Refuse to replace an existing run without --force (its lock file alone, ours, is not a run)."""
    if not force and target.path.is_dir() and any(p != target.lock_path for p in target.path.iterdir()):
        raise UsageError(
            f"run {target.name} already exists ({target.path})",
            hint="pass --force to replace it, or choose another --run",
        )


def _write_run(
    target: RunDir,
    directory: Path,
    model: Transformer,
    roles: dict[str, str],
    run_config: dict[str, Any],
    provenance: dict[str, Any],
) -> Tokenizer:
    """The run directory, staged beside `target` and renamed over it once complete; its tokenizer."""
    import yaml

    from alm.tokenizer import Tokenizer
    from alm.train.checkpoint import atomic_save, checkpoint_dict

    with staged(target.path, "directory", force=True, flag="--run") as tmp:  # `_check_free` has checked
        staging = RunDir(tmp)
        staging.tokenizer_path.write_bytes((directory / TOKENIZER_FILE).read_bytes())
        meta = {"format": "alm-tokenizer", "version": 1, META_ROLES: roles, "imported_from": provenance}
        atomic_write_json(tmp / META_FILE, meta)
        tokenizer = Tokenizer.load(staging.tokenizer_path)
        if tokenizer.vocab_size > model.config.require_vocab():
            raise UsageError(
                f"the tokenizer has {tokenizer.vocab_size} tokens but the model only "
                f"{model.config.vocab_size} embedding rows"
            )
        atomic_write_text(
            staging.config_path, yaml.safe_dump(run_config, sort_keys=False, allow_unicode=True)
        )
        ckpt = checkpoint_dict(
            model.state_dict(),
            step=0,
            tokens_seen=0,
            config=run_config,
            tokenizer_fingerprint=tokenizer.fingerprint,
            vocab_size=tokenizer.vocab_size,
        )
        atomic_save(ckpt, staging.checkpoint("last"))
    return tokenizer


__all__ = [
    "ImportResult",
    "hf_special_tokens",
    "import_hf",
    "load_hf_model",
    "read_hf_tokenizer_roles",
    "read_hf_weights",
    "resolve_hf_source",
]
