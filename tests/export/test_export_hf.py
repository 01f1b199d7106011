"""`alm export --format hf`: every exportable variant loads in transformers offline with the same tokens, logits
and greedy text as alm, and stops on alm's eos; the files carry what transformers 4.4x and 5.x each read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from export_helpers import (
    CONTINUATION,
    HARD_STRINGS,
    HF_VARIANTS,
    OTHER_PROMPT,
    PROMPT,
    alm_greedy,
    hf_greedy,
)
from safetensors.torch import load_file

from alm.interop.export import ExportOptions, export_checkpoint
from alm.tokenizer import Tokenizer
from alm.train.checkpoint import load_model
from testkit.threads import single_thread

transformers = pytest.importorskip("transformers")


def export_hf(run: Path, out: Path, **options) -> Path:
    return export_checkpoint(run / "checkpoints" / "last.pt", ExportOptions(**options), out).path


@pytest.fixture(scope="module", params=list(HF_VARIANTS))
def exported(request, make_run, tmp_path_factory):
    """(variant name, alm model, its HF export directory, transformers model loaded from it)."""
    run = make_run(request.param, HF_VARIANTS[request.param])
    out = export_hf(run, tmp_path_factory.mktemp("hf") / request.param)
    model, _, _, _ = load_model(run, device="cpu")
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    return request.param, model, out, hf_model


def test_transformers_loads_the_declared_architecture_with_alms_special_ids(exported, tokenizer):
    name, model, out, hf_model = exported
    expected = "GPT2LMHeadModel" if name.startswith("gpt2") else "LlamaForCausalLM"
    assert type(hf_model).__name__ == expected
    ids = {
        "bos_token_id": tokenizer.bos_id,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
    }
    assert ids == {
        "bos_token_id": 0,
        "eos_token_id": 1,
        "pad_token_id": 2,
    }  # not transformers' Llama 1/2/None
    for key, value in ids.items():  # both files: generate() reads generation_config, other code config.json
        assert getattr(hf_model.config, key) == value
        assert getattr(hf_model.generation_config, key) == value
    tied = model.config.tie_embeddings
    assert ("lm_head.weight" in load_file(out / "model.safetensors")) is not tied  # a tied head is left out
    assert (hf_model.get_output_embeddings().weight is hf_model.get_input_embeddings().weight) is tied


def test_logits_match_alm_within_1e4(exported):
    _, model, _, hf_model = exported
    idx = torch.randint(0, model.config.vocab_size, (2, model.config.max_seq_len))
    with torch.no_grad(), single_thread():
        ours, theirs = model(idx).logits, hf_model(idx).logits
    assert ours.std() > 1.0
    torch.testing.assert_close(theirs, ours, atol=1e-4, rtol=0)


def test_greedy_generation_matches_and_stops_on_alms_eos(exported, tokenizer):
    _, model, _, hf_model = exported
    prompt = tokenizer.encode(PROMPT)
    ours = alm_greedy(model, prompt, 32, tokenizer.eos_id)
    assert tokenizer.decode(ours) == CONTINUATION  # memorised, then <|eos|>: alm stopped early
    assert hf_greedy(hf_model, prompt, 32) == ours  # and so did transformers, at the same token
    other = tokenizer.encode(OTHER_PROMPT)
    assert hf_greedy(hf_model, other, 32) == alm_greedy(model, other, 32, tokenizer.eos_id)


def test_autotokenizer_gives_alms_ids_on_hard_strings(exported, tokenizer):
    _, _, out, _ = exported
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert (hf_tok.bos_token, hf_tok.eos_token, hf_tok.pad_token) == ("<|bos|>", "<|eos|>", "<|pad|>")
    assert (hf_tok.bos_token_id, hf_tok.eos_token_id, hf_tok.pad_token_id) == (0, 1, 2)
    for text in HARD_STRINGS:
        ids = tokenizer.encode(text)
        assert hf_tok(text)["input_ids"] == ids, text  # no BOS added, nothing normalised
        assert hf_tok.decode(ids) == text  # clean_up_tokenization_spaces is off


def test_a_chat_runs_template_renders_alms_chat_ids_and_generation_stops_at_end(
    make_run, tmp_path, tokenizer
):
    from alm.chat import render_prompt
    from alm.tokenizer.special import END

    run = make_run("llama-chat", HF_VARIANTS["llama-gqa-untied"], chat=True)  # `alm sft` wrote its config
    out = export_hf(run, tmp_path / "chat")
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Who art thou?"}]
    text = hf_tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert hf_tok(text)["input_ids"] == render_prompt(messages, tokenizer)
    end = tokenizer.token_id(END)
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tokenizer.eos_id, end]  # a reply ends at <|end|>
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out)
    assert hf_model.generation_config.eos_token_id == [tokenizer.eos_id, end]
    assert json.loads((out / "config.json").read_text())["eos_token_id"] == tokenizer.eos_id


def test_a_base_model_exports_without_the_chat_template(exported, tokenizer):
    _, _, out, _ = exported  # pretrained runs, whose tokenizer has the chat tokens all the same
    assert tokenizer.token_id("<|assistant|>") is not None
    assert "chat_template" not in json.loads((out / "tokenizer_config.json").read_text())
    assert transformers.AutoTokenizer.from_pretrained(out).chat_template is None
    assert json.loads((out / "generation_config.json").read_text())["eos_token_id"] == tokenizer.eos_id


def test_config_carries_rope_theta_for_transformers_4_and_5(make_run, tokenizer, tmp_path):
    from export_helpers import memorised_model, save_run

    run = save_run(tmp_path / "theta", memorised_model(tokenizer, rope_theta=31_000.0), tokenizer)
    out = export_hf(run, tmp_path / "out")
    config = json.loads((out / "config.json").read_text())
    assert config["rope_theta"] == 31_000.0  # what 4.x reads
    assert config["rope_parameters"] == {"rope_type": "default", "rope_theta": 31_000.0}  # all 5.x reads
    assert config["torch_dtype"] == config["dtype"] == "float32"
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    model, _, _, _ = load_model(run, device="cpu")
    idx = torch.arange(90).view(1, 90) % tokenizer.vocab_size  # long enough that a wrong theta shows
    with torch.no_grad(), single_thread():
        torch.testing.assert_close(hf_model(idx).logits, model(idx).logits, atol=1e-4, rtol=0)


@pytest.mark.parametrize(("dtype", "torch_dtype"), [("fp16", torch.float16), ("bf16", torch.bfloat16)])
def test_half_precision_exports_store_that_dtype(make_run, tmp_path, dtype, torch_dtype):
    run = make_run("llama-mha-tied", HF_VARIANTS["llama-mha-tied"])
    out = export_hf(run, tmp_path / dtype, dtype=dtype)
    weights = load_file(out / "model.safetensors")
    assert {t.dtype for t in weights.values()} == {torch_dtype}
    config = json.loads((out / "config.json").read_text())
    assert config["torch_dtype"] == config["dtype"] == str(torch_dtype).removeprefix("torch.")
    model, _, _, _ = load_model(run, device="cpu")
    embed = weights["model.embed_tokens.weight"].float()
    torch.testing.assert_close(embed, model.tok_emb.weight.detach(), atol=1e-2, rtol=1e-2)


def test_model_card_says_what_was_trained_and_how(make_run, tmp_path, tokenizer):
    run = make_run("llama-gqa-untied", HF_VARIANTS["llama-gqa-untied"])
    out = export_hf(run, tmp_path / "card", license="mit")
    card = (out / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\n")
    for fact in (
        "`LlamaForCausalLM`: 2 layers, d_model 64, 4 heads, 2 KV heads",
        "checkpoint step 150, 9.6k tokens seen",  # the events up to the checkpoint, not the later step
        "loss 2.5000, 1.6250 bits per byte (step 150; best val loss 2.2500)",
        "built-in corpus `tinyshakespeare`",
        "`alm train --run llama-gqa-untied`",
        r"eos `<\|eos\|>` = 1",  # pipes escaped so the table keeps its columns
        f'AutoModelForCausalLM.from_pretrained("{out}")',
        "mlx_lm.convert --hf-path",
    ):
        assert fact in card, fact


def test_an_exported_tokenizer_round_trips_into_alm(make_run, tmp_path, tokenizer):
    out = export_hf(make_run("llama-mha-tied", {}), tmp_path / "tok")
    again = Tokenizer.load(out / "tokenizer.json")
    assert again.fingerprint == tokenizer.fingerprint  # the very file, byte for byte
