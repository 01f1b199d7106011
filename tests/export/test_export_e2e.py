"""End to end through `python -m alm` subprocesses: a run trained by the real trainer exports to files that
transformers loads and that generate `alm sample --greedy`'s text; Hub import and push fail cleanly offline,
without a token or without a network, and leave nothing behind. Never touches the network."""

from __future__ import annotations

import pytest
from export_helpers import hf_greedy, run_alm

pytestmark = pytest.mark.slow


def test_hf_export_generates_alm_samples_greedy_text(trained_workdir):
    transformers = pytest.importorskip("transformers")
    result = run_alm("export", "trained", "--out", "hf", cwd=trained_workdir)
    assert result.returncode == 0, result.stderr
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(trained_workdir / "hf").eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(trained_workdir / "hf")
    args = ("sample", "trained", "--prompt", "ROMEO:", "--greedy", "-n", "32", "--device", "cpu")
    sample = run_alm(*args, cwd=trained_workdir)
    assert sample.returncode == 0, sample.stderr
    expected = hf_tok.decode(hf_greedy(hf_model, hf_tok("ROMEO:")["input_ids"], 32))
    assert sample.stdout == expected + "\n"
    card = (trained_workdir / "hf" / "README.md").read_text()
    assert "checkpoint step 30" in card and "bits per byte (step 30" in card
    assert "`alm train --model model.yaml --train train.yaml" in card and "local files" in card


def test_gguf_export_writes_a_readable_file(trained_workdir):
    gguf = pytest.importorskip("gguf")
    result = run_alm("export", "trained", "--format", "gguf", "--quantize", "q8_0", cwd=trained_workdir)
    assert result.returncode == 0, result.stderr
    reader = gguf.GGUFReader(trained_workdir / "exports" / "trained-q8_0.gguf")
    assert reader.fields["general.architecture"].contents() == "llama"
    assert reader.fields["llama.attention.head_count_kv"].contents() == 2


def test_a_hub_id_offline_with_an_empty_cache_fails_cleanly(trained_workdir):
    result = run_alm("import", "hf", "someone/tiny-llama", "--run", "fromhub", cwd=trained_workdir)
    assert result.returncode == 1, result.stderr
    assert "not in the local Hugging Face cache and HF_HUB_OFFLINE=1 is set" in result.stderr
    assert "Traceback" not in result.stderr and not (trained_workdir / "runs" / "fromhub").exists()


@pytest.mark.parametrize(
    ("env", "code", "message"),
    [
        ({}, 2, "no Hugging Face token"),
        ({"HF_TOKEN": "hf_not_a_real_token"}, 1, "HF_HUB_OFFLINE=1 is set"),
        (
            {"HF_TOKEN": "hf_not_a_real_token", "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"},
            1,
            "the Hub could not be reached",
        ),
    ],
)
def test_push_fails_clearly_and_leaves_nothing_behind(trained_workdir, tmp_path, env, code, message):
    before = sorted(p.name for p in trained_workdir.iterdir())
    result = run_alm(
        "push", "trained", "someone/tiny", cwd=trained_workdir, env={**env, "TMPDIR": str(tmp_path)}
    )
    assert result.returncode == code, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in trained_workdir.iterdir()) == before
    assert list(tmp_path.iterdir()) == []  # the temporary export is gone too
