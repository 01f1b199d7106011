"""mlx-lm loads the Hugging Face export as it is and decodes greedily to alm's tokens (slow: MLX's start-up)."""

from __future__ import annotations

import pytest
from export_helpers import HF_VARIANTS, OTHER_PROMPT, PROMPT, alm_greedy

from alm.interop.export import ExportOptions, export_checkpoint
from alm.train.checkpoint import load_model

pytestmark = pytest.mark.slow
mx = pytest.importorskip("mlx.core")
mlx_lm = pytest.importorskip("mlx_lm")

# mlx-lm's GPT-2 always ties its head (and reads GPT-2's canonical layout, which a tied export is written in).
MLX_VARIANTS = [name for name in HF_VARIANTS if name != "gpt2-untied"]


@pytest.mark.parametrize("variant", MLX_VARIANTS)
def test_mlx_lm_greedy_tokens_equal_alms(variant, make_run, tmp_path, tokenizer):
    from mlx_lm.generate import generate_step

    run = make_run(variant, HF_VARIANTS[variant])
    out = export_checkpoint(run / "checkpoints" / "last.pt", ExportOptions(), tmp_path / "hf").path
    mlx_model, mlx_tokenizer = mlx_lm.load(str(out))
    model, _, _, _ = load_model(run, device="cpu")
    for prompt in (PROMPT, OTHER_PROMPT):
        ids = tokenizer.encode(prompt)
        assert mlx_tokenizer.encode(prompt) == ids
        expected = alm_greedy(model, ids, 32, tokenizer.eos_id)
        got = []
        for token, _ in generate_step(
            mx.array(ids), mlx_model, max_tokens=32, sampler=lambda x: mx.argmax(x, axis=-1)
        ):
            if int(token) == mlx_tokenizer.eos_token_id:
                break
            got.append(int(token))
        assert got == expected, prompt
