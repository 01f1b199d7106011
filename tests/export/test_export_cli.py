"""`alm export` through the real CLI: what it writes and says, and every refusal — a clear message, exit 2 or 1,
no traceback, and nothing partial left behind (the output is built in a hidden temp sibling and renamed)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from export_helpers import HF_VARIANTS
from typer.testing import CliRunner

from alm.cli.app import app

runner = CliRunner()


def alm(*args: str):
    return runner.invoke(app, list(args))


def assert_refused(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, result.output
    assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.fixture
def workdir(tmp_path, monkeypatch, make_run) -> Path:
    """A working directory with runs/demo (a memorised Llama run)."""
    monkeypatch.chdir(tmp_path)
    shutil.copytree(make_run("llama-mha-tied", HF_VARIANTS["llama-mha-tied"]), tmp_path / "runs" / "demo")
    return tmp_path


def test_export_writes_the_default_directory_and_says_what_it_wrote(workdir):
    result = alm("export", "demo")
    assert result.exit_code == 0, result.output
    out = workdir / "exports" / "demo-hf"
    assert leftovers(out) == [
        "README.md",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ]
    assert leftovers(workdir / "exports") == ["demo-hf"]  # no temp directory beside it
    umask = os.umask(0o022)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not the owner-only mode of a tempfile directory
    assert "exported demo (step 150) as LlamaForCausalLM, fp32 -> exports/demo-hf" in result.stdout
    assert "model.safetensors" in result.stdout and "mlx_lm.generate --model exports/demo-hf" in result.stdout
    assert "loading" in result.stderr and "writing LlamaForCausalLM" in result.stderr  # progress


def test_gguf_export_names_the_file_by_type(workdir):
    result = alm("export", "demo", "--format", "gguf", "--dtype", "fp16", "--checkpoint", "step-150")
    assert result.exit_code == 0, result.output
    assert (workdir / "exports" / "demo-f16.gguf").is_file()
    assert "as llama, f16 -> exports/demo-f16.gguf" in result.stdout
    assert "llama-cli -m exports/demo-f16.gguf" in result.stdout


def test_a_non_empty_out_is_refused_without_force_and_replaced_with_it(workdir):
    out = workdir / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert_refused(alm("export", "demo", "--out", "mine"), 2, "mine is not empty", "--force")
    assert leftovers(out) == ["precious.txt"] and leftovers(workdir) == ["mine", "runs"]
    result = alm("export", "demo", "--out", "mine", "--force")
    assert result.exit_code == 0, result.output
    assert "precious.txt" not in leftovers(out) and "config.json" in leftovers(out)
    assert leftovers(workdir) == ["mine", "runs"]


def test_an_unknown_run_is_a_usage_error(workdir):
    assert_refused(alm("export", "demmo"), 2, "no run 'demmo'", "did you mean demo")
    assert not (workdir / "exports").exists()


def test_a_run_without_checkpoints_is_a_usage_error(workdir):
    shutil.rmtree(workdir / "runs" / "demo" / "checkpoints")
    assert_refused(alm("export", "demo"), 2, "run demo has no checkpoint last.pt")
    assert_refused(alm("export", "demo", "-c", "best"), 2, "has no checkpoint best.pt")


def test_a_corrupt_checkpoint_is_a_runtime_error_and_leaves_nothing(workdir):
    last = workdir / "runs" / "demo" / "checkpoints" / "last.pt"
    last.unlink()  # a hard link to step-000150.pt: do not write through it
    last.write_bytes(b"PK\x03\x04 not really a zip file")
    assert_refused(alm("export", "demo"), 1, "not a readable checkpoint")
    assert not (workdir / "exports").exists()  # not even the parent directory it would have made


@pytest.mark.parametrize(
    ("variant", "named"),
    [
        ({"position": "alibi"}, "model.position='alibi' has no Hugging Face equivalent"),
        ({"position": "nope"}, "model.position='nope'"),
        ({"norm_position": "post"}, "model.norm_position='post'"),
        ({"norm": "none"}, "model.norm='none'"),
        ({"ffn": "dual"}, "model.ffn='dual'"),
    ],
)
def test_variants_without_an_exact_equivalent_are_refused_by_setting(
    tmp_path, monkeypatch, tokenizer, variant, named
):
    from export_helpers import memorised_model, save_run

    monkeypatch.chdir(tmp_path)
    save_run(tmp_path / "runs" / "odd", memorised_model(tokenizer, **variant), tokenizer)
    result = alm("export", "odd", "--out", "out/odd")
    assert_refused(result, 2, named, "LlamaForCausalLM: rmsnorm", "GPT2LMHeadModel: layernorm")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--format", "onnx"), "--format onnx: unknown"),
        (("--dtype", "fp8"), "--dtype fp8: unknown"),
        (("--quantize", "q8_0"), "--quantize applies to --format gguf only"),
        (("--format", "gguf", "--quantize", "q4_0"), "--quantize q4_0: unknown"),
    ],
)
def test_bad_options_are_usage_errors(workdir, args, message):
    assert_refused(alm("export", "demo", *args), 2, message)
    assert not (workdir / "exports").exists()


def test_an_unwritable_location_is_a_clear_error(workdir):
    assert_refused(alm("export", "demo", "--out", "/sys/alm-export-test"), 1, "cannot write to /sys")
    assert not Path("/sys/alm-export-test").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_a_read_only_directory_is_a_clear_error(workdir):
    locked = workdir / "locked"
    locked.mkdir(mode=0o555)
    try:
        assert_refused(alm("export", "demo", "--out", "locked/out"), 1, "cannot write to locked")
        assert leftovers(locked) == []
    finally:
        locked.chmod(0o755)
