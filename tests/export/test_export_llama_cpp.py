"""llama.cpp (through llama-cpp-python) loads the GGUF export, tokenizes like alm and decodes greedily to alm's
tokens. Slow, and skipped unless `llama_cpp` is importable: `make test-interop` builds it.

Tolerances: f32 must match alm exactly over 32 greedy tokens. f16 is compared with alm running the same weights
rounded to fp16 (llama.cpp also rounds activations to fp16 in those matmuls, so a near-tie could still flip):
the memorised line exactly, 32 tokens elsewhere. q8_0 also quantises the activations of each matmul: the
memorised line (large margins) must match exactly, an unseen prompt on its first 4 tokens.
"""

from __future__ import annotations

import pytest
import torch
from export_helpers import (
    CONTINUATION,
    HARD_STRINGS,
    HF_VARIANTS,
    LLAMA_VARIANTS,
    OTHER_PROMPT,
    PROMPT,
    alm_greedy,
    run_alm,
)

from alm.interop.export import ExportOptions, export_checkpoint
from alm.train.checkpoint import load_model

pytestmark = pytest.mark.slow
llama_cpp = pytest.importorskip("llama_cpp")


def llama_cpp_greedy(llm, ids: list[int], max_new_tokens: int) -> list[int]:
    out: list[int] = []
    for token in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0, reset=True):
        if token == llm.token_eos() or len(out) == max_new_tokens:
            break
        out.append(token)
    return out


def load(run, tmp_path, **options):
    options = {"format": "gguf", **options}
    path = export_checkpoint(
        run / "checkpoints" / "last.pt", ExportOptions(**options), tmp_path / "m.gguf"
    ).path
    return llama_cpp.Llama(model_path=str(path), n_ctx=96, n_batch=96, n_threads=1, seed=0, verbose=False)


@pytest.mark.parametrize("variant", LLAMA_VARIANTS)
def test_f32_greedy_tokens_and_tokenization_equal_alms(variant, make_run, tmp_path, tokenizer):
    run = make_run(variant, HF_VARIANTS[variant])
    llm = load(run, tmp_path)
    model, _, _, _ = load_model(run, device="cpu")
    assert (llm.token_bos(), llm.token_eos()) == (tokenizer.bos_id, tokenizer.eos_id)
    for text in HARD_STRINGS:
        assert llm.tokenize(text.encode("utf-8"), add_bos=False, special=False) == tokenizer.encode(text), (
            text
        )
    memorised = llama_cpp_greedy(llm, tokenizer.encode(PROMPT), 32)
    assert tokenizer.decode(memorised) == CONTINUATION  # and stopped on alm's eos
    for prompt in (PROMPT, OTHER_PROMPT):
        ids = tokenizer.encode(prompt)
        assert llama_cpp_greedy(llm, ids, 32) == alm_greedy(model, ids, 32, tokenizer.eos_id), prompt


def test_f16_greedy_tokens_equal_alms_with_the_same_rounded_weights(make_run, tmp_path, tokenizer):
    run = make_run("llama-gqa-untied", HF_VARIANTS["llama-gqa-untied"])
    llm = load(run, tmp_path, dtype="fp16")
    model, _, _, _ = load_model(run, device="cpu")
    with torch.no_grad():
        for p in model.parameters():
            if p.ndim == 2:  # what the GGUF stores in f16 (norms stay f32)
                p.copy_(p.half().float())
    for prompt in (PROMPT, OTHER_PROMPT):
        ids = tokenizer.encode(prompt)
        assert llama_cpp_greedy(llm, ids, 32) == alm_greedy(model, ids, 32, tokenizer.eos_id), prompt


def test_q8_0_keeps_the_first_tokens(make_run, tmp_path, tokenizer):
    run = make_run("llama-mha-tied", HF_VARIANTS["llama-mha-tied"])
    llm = load(run, tmp_path, quantize="q8_0")
    model, _, _, _ = load_model(run, device="cpu")
    assert tokenizer.decode(llama_cpp_greedy(llm, tokenizer.encode(PROMPT), 32)) == CONTINUATION
    ids = tokenizer.encode(OTHER_PROMPT)
    assert llama_cpp_greedy(llm, ids, 4) == alm_greedy(model, ids, 4, tokenizer.eos_id)


def test_a_trained_runs_gguf_generates_alm_samples_greedy_text(trained_workdir):
    result = run_alm("export", "trained", "--format", "gguf", "--out", "llama-cpp", cwd=trained_workdir)
    assert result.returncode == 0, result.stderr
    path = trained_workdir / "llama-cpp" / "trained-f32.gguf"
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=64, n_batch=64, n_threads=1, seed=0, verbose=False)
    args = ("sample", "trained", "--prompt", "ROMEO:", "--greedy", "-n", "32", "--device", "cpu")
    sample = run_alm(*args, cwd=trained_workdir)
    assert sample.returncode == 0, sample.stderr
    tokens = llama_cpp_greedy(llm, llm.tokenize(b"ROMEO:", add_bos=False, special=False), 32)
    assert llm.detokenize(tokens).decode("utf-8") + "\n" == sample.stdout


def test_the_decode_bench_times_int8_weights_against_llama_cpp_q8_0(make_run):
    """`alm bench sample --run RUN --int8`: alm's int8 model beside llama.cpp on a q8_0 GGUF of the same run."""
    from alm.bench.sample import run_sample_bench

    run = make_run("llama-mha-tied", HF_VARIANTS["llama-mha-tied"])
    model, _, _, _ = load_model(run, device="cpu")
    result = run_sample_bench(
        model=model.eval(),
        checkpoint=run / "checkpoints" / "last.pt",
        preset="tiny",
        device=torch.device("cpu"),
        new_tokens=8,
        repeats=1,
        with_hf=False,
        batch=False,
        int8=True,
    )
    assert "llama_cpp_q8_0" not in result.skipped and result.llama_cpp_q8_0 is not None
    assert len(result.llama_cpp_q8_0.tokens) == 8 and result.int8 is not None
    assert (result.int8_vs_llama_cpp_q8_0 or 0) > 0
