"""`alm import hf`: tiny transformers models saved to disk (their own special-token ids, not alm's 0/1/2) become
runs that `alm sample`, `alm eval`, `alm runs` and `alm export` accept, computing exactly what transformers does."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from export_helpers import HARD_STRINGS, alm_greedy, hf_greedy
from hf_models import PROMPT, REPLY, save_gpt2
from typer.testing import CliRunner

from alm.cli.app import app
from alm.interop.hf_import import import_hf
from alm.train.checkpoint import load_checkpoint, load_model
from testkit.threads import single_thread

transformers = pytest.importorskip("transformers")
runner = CliRunner()


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory) -> Path:
    return save_gpt2(tmp_path_factory.mktemp("hf-gpt2"))


@pytest.fixture
def workdir(tmp_path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_import_maps_the_hf_special_tokens_and_computes_the_same_logits(llama_dir, tmp_path):
    result = import_hf(str(llama_dir), "llama", runs_root=tmp_path / "runs")
    assert result.roles == {
        "bos": ("<s>", 1),
        "eos": ("</s>", 2),
        "pad": ("</s>", 2),
    }  # no pad: eos stands in
    model, tokenizer, config, step = load_model(result.run.path, device="cpu")
    assert (tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id) == (1, 2, 2)
    assert step == 0 and config["source"]["model_type"] == "llama"
    assert (
        model.config.rope_theta == 50_000.0
        and model.config.n_kv_heads == 2
        and model.config.vocab_size == 320
    )
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    idx = torch.randint(0, 320, (2, 100))
    with torch.no_grad(), single_thread():
        torch.testing.assert_close(model(idx).logits, hf_model(idx).logits, atol=1e-5, rtol=0)
    ckpt = load_checkpoint(result.run.checkpoint("last"))
    assert ckpt["tokenizer"]["fingerprint"] == tokenizer.fingerprint and ckpt["tokens_seen"] == 0


def test_alm_sample_greedy_equals_transformers_greedy_and_stops_on_the_hf_eos(llama_dir, workdir):
    result = runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "imported"])
    assert result.exit_code == 0, result.output
    assert "bos <s> = 1, eos </s> = 2, pad </s> = 2" in result.stdout
    hf_tok = transformers.AutoTokenizer.from_pretrained(llama_dir)
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    prompt_ids = hf_tok(PROMPT, add_special_tokens=False)["input_ids"]
    expected = hf_greedy(hf_model, prompt_ids, 32)
    assert hf_tok.decode(expected) == REPLY  # transformers stopped at </s> (id 2)
    sampled = runner.invoke(
        app, ["sample", "imported", "--prompt", PROMPT, "--greedy", "-n", "32", "--device", "cpu"]
    )
    assert sampled.exit_code == 0, sampled.output
    assert sampled.stdout == REPLY + "\n" and "stopped by eos" in sampled.stderr
    model, tokenizer, _, _ = load_model(workdir / "runs" / "imported", device="cpu")
    for text in HARD_STRINGS:  # alm encodes like the HF tokenizer, minus the bos its post-processor adds
        assert tokenizer.encode(text) == hf_tok(text, add_special_tokens=False)["input_ids"]
    other = hf_tok("O Romeo", add_special_tokens=False)["input_ids"]
    assert alm_greedy(model, other, 32, tokenizer.eos_id) == hf_greedy(hf_model, other, 32)


def test_a_gpt2_model_imports_with_its_one_special_token(gpt2_dir, tmp_path):
    result = import_hf(str(gpt2_dir), "gpt2", runs_root=tmp_path / "runs")
    assert result.model_type == "gpt2"
    assert result.roles == {role: ("<|endoftext|>", 0) for role in ("bos", "eos", "pad")}
    model, tokenizer, _, _ = load_model(result.run.path, device="cpu")
    assert model.config.position == "learned" and model.config.bias and model.config.tie_embeddings
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(gpt2_dir).eval()
    idx = torch.randint(0, 300, (2, 64))
    with torch.no_grad(), single_thread():
        torch.testing.assert_close(model(idx).logits, hf_model(idx).logits, atol=1e-5, rtol=0)
    prompt = tokenizer.encode(PROMPT)
    assert tokenizer.decode(alm_greedy(model, prompt, 32, tokenizer.eos_id)) == REPLY


def test_an_imported_run_exports_back_to_the_same_model(llama_dir, workdir):
    assert runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "rt"]).exit_code == 0
    result = runner.invoke(app, ["export", "rt", "--out", "back"])
    assert result.exit_code == 0, result.output
    config = json.loads((workdir / "back" / "config.json").read_text())
    assert (config["bos_token_id"], config["eos_token_id"], config["pad_token_id"]) == (1, 2, 2)
    tok_config = json.loads((workdir / "back" / "tokenizer_config.json").read_text())
    assert (tok_config["bos_token"], tok_config["eos_token"]) == (
        "<s>",
        "</s>",
    ) and "chat_template" not in tok_config
    assert "imported from" in (workdir / "back" / "README.md").read_text()
    original = transformers.AutoModelForCausalLM.from_pretrained(llama_dir).eval()
    back = transformers.AutoModelForCausalLM.from_pretrained(workdir / "back").eval()
    idx = torch.randint(0, 320, (1, 50))
    with torch.no_grad(), single_thread():
        torch.testing.assert_close(back(idx).logits, original(idx).logits, atol=1e-5, rtol=0)


def test_an_imported_run_is_listed_and_evaluated(llama_dir, workdir):
    assert runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "listed"]).exit_code == 0
    listed = runner.invoke(app, ["runs", "list"])
    assert listed.exit_code == 0 and "listed" in listed.stdout, listed.output
    (workdir / "text.txt").write_text((PROMPT + REPLY + "\n") * 10)
    result = runner.invoke(app, ["eval", "listed", "--text", "text.txt", "--json", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tokens"] > 0


def edited_copy(source: Path, destination: Path, **changes) -> Path:
    shutil.copytree(source, destination)
    config = json.loads((destination / "config.json").read_text())
    (destination / "config.json").write_text(json.dumps({**config, **changes}))
    return destination


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, "config.json rope_scaling="),
        ({"sliding_window": 32}, "config.json sliding_window=32"),
        ({"mlp_bias": True}, "config.json attention_bias=False"),
        ({"model_type": "qwen2"}, "config.json model_type='qwen2'"),
    ],
)
def test_architectures_alm_cannot_express_exit_2_naming_the_field(llama_dir, workdir, changes, named):
    source = edited_copy(llama_dir, workdir / "odd", **changes)
    result = runner.invoke(app, ["import", "hf", str(source), "--run", "odd"])
    assert result.exit_code == 2, result.output
    assert named in result.stderr and "Traceback" not in result.output
    assert not (workdir / "runs").exists()  # nothing left behind, not even runs/


def test_missing_pieces_and_occupied_runs_are_usage_errors(llama_dir, workdir):
    no_tokenizer = shutil.copytree(llama_dir, workdir / "no-tok")
    (no_tokenizer / "tokenizer.json").unlink()
    no_weights = shutil.copytree(llama_dir, workdir / "no-weights")
    (no_weights / "model.safetensors").unlink()
    for source, message in (
        (no_tokenizer, "has no tokenizer.json"),
        (no_weights, "no weights in"),
        (workdir / "missing", "is neither a model directory nor a Hub repo id"),
    ):
        result = runner.invoke(app, ["import", "hf", str(source), "--run", "x"])
        assert result.exit_code == 2 and message in result.stderr, result.output
    assert not (workdir / "runs").exists()
    assert runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "taken"]).exit_code == 0
    again = runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "taken"])
    assert again.exit_code == 2 and "run taken already exists" in again.stderr and "--force" in again.stderr
    assert runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "taken", "--force"]).exit_code == 0
    assert sorted(p.name for p in (workdir / "runs").iterdir()) == ["taken"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("model.safetensors", "is not a readable weights file"),
        ("tokenizer.json", "is not a tokenizers tokenizer.json"),
    ],
)
def test_damaged_files_are_a_runtime_error(llama_dir, workdir, name, message):
    damaged = shutil.copytree(llama_dir, workdir / "damaged")
    (damaged / name).write_bytes(b"\x00" * 64)
    result = runner.invoke(app, ["import", "hf", str(damaged), "--run", "x"])
    assert result.exit_code == 1 and message in result.stderr, result.output
    assert not (workdir / "runs").exists()


def test_truncation_in_an_imported_tokenizer_json_is_not_applied(llama_dir, workdir):
    source = shutil.copytree(llama_dir, workdir / "truncating")
    data = json.loads((source / "tokenizer.json").read_text())
    data["truncation"] = {"direction": "Right", "max_length": 8, "strategy": "LongestFirst", "stride": 0}
    (source / "tokenizer.json").write_text(json.dumps(data))
    result = import_hf(str(source), "trunc", runs_root=workdir / "runs")
    _, tokenizer, _, _ = load_model(result.run.path, device="cpu")
    assert len(tokenizer.encode(PROMPT + REPLY + PROMPT)) > 8  # alm encodes whole documents


def test_an_import_holds_the_runs_lock_while_it_writes(llama_dir, workdir):
    """As `alm train` does: no trainer, fine-tuning or second import writes the run meanwhile."""
    from alm.rundir import RunDir

    run = RunDir(workdir / "runs" / "held")
    writers = {}
    import_hf(
        str(llama_dir),
        "held",
        runs_root=workdir / "runs",
        progress=lambda m: writers.setdefault(m, run.writer()),
    )
    writing = next(w for message, w in writers.items() if message.startswith("writing"))
    assert writing is not None and writing.pid == os.getpid()
    assert (
        run.writer() is None and load_checkpoint(run.checkpoint("last"))["step"] == 0
    )  # let go once written


def test_a_run_another_process_writes_is_not_imported_over(llama_dir, workdir):
    from testkit.locks import hold

    other = hold(workdir / "runs" / "busy" / "run.lock")
    try:
        result = runner.invoke(app, ["import", "hf", str(llama_dir), "--run", "busy", "--force"])
        assert result.exit_code == 2 and f"in use by pid {other.pid}" in result.stderr, result.output
    finally:
        other.kill()
        other.wait()
    assert sorted(p.name for p in (workdir / "runs" / "busy").iterdir()) == ["run.lock"]
