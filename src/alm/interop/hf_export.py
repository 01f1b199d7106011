"""A self-contained Hugging Face model directory: config.json, model.safetensors, the tokenizer files,
generation_config.json and a README.md model card. transformers (4.4x and 5.x) and mlx-lm load it as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from alm.interop.card import model_card
from alm.interop.source import ExportSource
from alm.interop.tokenizer_files import generation_config, special_token_ids, tokenizer_config
from alm.model.hf import hf_checkpoint, hf_config_dict, hf_target

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_HF_DTYPE_NAMES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
WEIGHTS_FILE = "model.safetensors"


def hf_model_config(source: ExportSource, dtype: str) -> dict[str, Any]:
    """config.json: the architecture, the tokenizer's special ids, and the weights' dtype under both the
    4.x (`torch_dtype`) and 5.x (`dtype`) names."""
    name = _HF_DTYPE_NAMES[dtype]
    return {
        **hf_config_dict(source.model.config),
        **special_token_ids(source.tokenizer),
        "torch_dtype": name,
        "dtype": name,
    }


def hf_weights(source: ExportSource, dtype: str) -> dict[str, torch.Tensor]:
    """The checkpoint (`alm.model.hf.hf_checkpoint`) as contiguous, unshared tensors in `dtype`: safetensors
    stores no views."""
    state = hf_checkpoint(source.model)
    return {k: v.detach().to(DTYPES[dtype], copy=True).contiguous() for k, v in state.items()}


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def write_hf_directory(
    source: ExportSource, directory: Path, *, dtype: str, license: str, location: str = "PATH"
) -> list[Path]:
    """Write the export into `directory` (an empty staging directory); return the files written.
    `location` is where the model card tells readers to load it from."""
    from safetensors.torch import save_file

    architecture = hf_target(source.model.config).architecture
    tok = source.tokenizer
    assert tok.path is not None  # loaded from the run's tokenizer.json
    files = {
        "config.json": hf_model_config(source, dtype),
        "generation_config.json": generation_config(tok, source.config),
        "tokenizer_config.json": tokenizer_config(tok, source.config, source.model.config.max_seq_len),
    }
    for name, data in files.items():
        _write_json(directory / name, data)
    (directory / "tokenizer.json").write_bytes(Path(tok.path).read_bytes())
    card = model_card(source, architecture=architecture, dtype=dtype, license=license, location=location)
    (directory / "README.md").write_text(card, encoding="utf-8")
    save_file(hf_weights(source, dtype), str(directory / WEIGHTS_FILE), metadata={"format": "pt"})
    return sorted(directory.iterdir())


__all__ = ["DTYPES", "WEIGHTS_FILE", "hf_model_config", "hf_weights", "write_hf_directory"]
