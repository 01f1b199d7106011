"""Compiled CPU decode steps kept on disk: keyed by what the library depends on, loaded by the next process,
rebuilt when unreadable, pruned to the most recently used."""

from __future__ import annotations

import os

import pytest
import torch
from sample_helpers import tiny_model
from torch.export.pt2_archive._package import AOTICompiledModel

import alm.sample.compiled as compiled
from alm.fileio import keep_most_recent
from alm.sample.decoder import KEY_BUCKET, Decoder


def _key(model, slots: int = 1) -> str:
    decoder = Decoder(model, slots, device="cpu")
    example = (decoder.tokens, decoder.positions, torch.arange(KEY_BUCKET), decoder.cache)
    return compiled.package_key(compiled.export_step(model, example, dynamic_keys=True))


def test_the_key_follows_the_weights_the_shapes_and_inductors_configuration(monkeypatch):
    model = tiny_model(max_seq_len=96)
    key = _key(model)
    assert key == _key(tiny_model(max_seq_len=96))  # the same model built again: the same library
    assert key != _key(model, slots=2)
    assert key != _key(tiny_model(max_seq_len=96, seed=1))
    with torch.no_grad():
        next(model.parameters())[0, 0] += 1e-3
    assert key != _key(model)
    key = _key(model)
    with torch._inductor.config.patch({"cpp.enable_kernel_profile": True}):  # as `alm bench sample --profile`
        assert _key(model) != key
    monkeypatch.setattr(compiled, "CPU_COMPILE_OPTIONS", {"freezing": True})
    assert _key(model) != key


def test_the_store_lives_under_the_cache_dir_and_can_be_turned_off(monkeypatch, tmp_path):
    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path / "mine"))
    assert compiled.package_store() == tmp_path / "mine" / "decode-steps"
    monkeypatch.delenv("ALM_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled.package_store() == tmp_path / "xdg" / "alm" / "decode-steps"
    monkeypatch.setenv("ALM_CACHE_DIR", "off")
    assert compiled.package_store() is None


def test_pruning_keeps_the_most_recently_used_packages(tmp_path):
    for age in range(compiled.KEEP_PACKAGES + 2):
        package = tmp_path / f"{age}.pt2"
        package.write_bytes(b"x")
        os.utime(package, (1e9 - age, 1e9 - age))
    (tmp_path / "notes.txt").write_text("not a package")
    keep_most_recent(tmp_path, "*.pt2", compiled.KEEP_PACKAGES)
    kept = sorted(path.name for path in tmp_path.glob("*.pt2"))
    assert kept == [f"{age}.pt2" for age in range(compiled.KEEP_PACKAGES)]
    assert (tmp_path / "notes.txt").exists()


def test_the_attention_kernel_is_built_only_for_a_model_that_calls_it(monkeypatch):
    loads = []
    monkeypatch.setattr(compiled, "ensure_kernels", lambda: loads.append(1) or True)
    assert not compiled.decode_kernel_for(tiny_model(position="alibi"))  # ALiBi's bias: torch's attention
    assert not compiled.decode_kernel_for(tiny_model().to(torch.float64))
    assert loads == []
    assert compiled.decode_kernel_for(tiny_model())
    assert loads == [1]


@pytest.mark.slow
def test_the_next_decoder_loads_the_kept_step_and_an_unreadable_one_is_rebuilt(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiled, "CPU_COMPILE_OPTIONS", {"freezing": True})  # seconds, not a minute
    builds = []
    build = torch._inductor.aoti_compile_and_package
    monkeypatch.setattr(
        torch._inductor, "aoti_compile_and_package", lambda *a, **kw: builds.append(1) or build(*a, **kw)
    )
    model = tiny_model(max_seq_len=96)
    prompt = [3, 14, 15]

    def greedy(n: int = 70) -> list[int]:  # 70 tokens: two key buckets
        decoder = Decoder(model, 1, device="cpu", compile="on")
        with torch.inference_mode():
            token = decoder.prefill(0, prompt).argmax(-1)
            tokens = []
            for _ in range(n):
                token = decoder.step(token, [0]).argmax(-1)
                tokens.append(int(token))
        assert decoder.compiled, decoder.compile_note
        # The package's runner is called directly, not through its pytree-flattening __call__.
        assert not isinstance(decoder._compiled_step, AOTICompiledModel)
        return tokens

    eager = Decoder(model, 1, device="cpu")
    with torch.inference_mode():
        token, expected = eager.prefill(0, prompt).argmax(-1), []
        for _ in range(70):
            token = eager.step(token, [0]).argmax(-1)
            expected.append(int(token))

    def compile_notices() -> int:  # the minute of compiling is announced (`alm` shows it), a load is not
        return sum("compiling the decode step" in record.getMessage() for record in caplog.records)

    caplog.set_level("INFO", logger="alm")
    assert greedy() == expected and len(builds) == 1 and compile_notices() == 1
    [package] = (tmp_path / "decode-steps").glob("*.pt2")
    assert greedy() == expected and len(builds) == 1 and compile_notices() == 1  # loaded, not built
    package.write_bytes(package.read_bytes()[:1000])  # truncated (a full disk, a killed copy)
    assert greedy() == expected and len(builds) == 2
    assert package.stat().st_size > 1000  # replaced by the rebuilt package
