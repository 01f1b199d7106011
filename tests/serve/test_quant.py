"""Weight-only int8 (`alm.model.quant`, `--quantize int8`): every kernel gives the same numbers, the right layers
are quantised, memory shrinks, and a trained model keeps its quality: bits per byte within 1% of fp32 and
the same greedy text."""

from __future__ import annotations

import platform

import pytest
import torch
from serve_helpers import save_chat_run
from typer.testing import CliRunner

from alm.cli.app import app
from alm.errors import UsageError
from alm.evaluate import evaluate_text
from alm.model.quant import Int8Linear, default_kernel, quantize, weight_bytes
from alm.sample import SamplingConfig, generate
from testkit.corpus import shipped_text
from testkit.models import tiny_model

BPB_BOUND = 0.01  # int8 may change bits per byte by at most 1% of the fp32 figure


@pytest.fixture(scope="module")
def text() -> str:
    return shipped_text(24_000)


@pytest.fixture(scope="module")
def trained(chat_tokenizer, text):
    """A small model trained for real on the first 20,000 characters (the rest is held out)."""
    return train_tiny(chat_tokenizer, text, tie_embeddings=False)


@pytest.fixture(scope="module")
def trained_tied(chat_tokenizer, text):
    """The same with the head tied to the embedding (whose int8 copy the head then reads)."""
    return train_tiny(chat_tokenizer, text, tie_embeddings=True)


def train_tiny(chat_tokenizer, text, *, tie_embeddings: bool):
    ids = torch.tensor(chat_tokenizer.encode(text[:20_000]))
    model = tiny_model(chat_tokenizer.vocab_size, d_model=64, init_std=0.02, tie_embeddings=tie_embeddings)
    generator = torch.Generator().manual_seed(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(250):
        starts = torch.randint(0, len(ids) - 65, (16,), generator=generator)
        batch = torch.stack([ids[s : s + 65] for s in starts.tolist()])
        loss = model(batch[:, :-1], targets=batch[:, 1:]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model.eval()


def quantized_copy(model, kernel=None):
    copy = tiny_model(model.config.vocab_size, **_shape(model))
    copy.load_state_dict(model.state_dict())
    quantize(copy, "int8", kernel=kernel)
    return copy.eval()


def _shape(model) -> dict:
    cfg = model.config
    return dict(d_model=cfg.d_model, n_layers=cfg.n_layers, n_heads=cfg.n_heads, n_kv_heads=cfg.n_kv_heads,
                max_seq_len=cfg.max_seq_len, tie_embeddings=cfg.tie_embeddings, ffn=cfg.ffn)  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "k", "n"), [(1, 96, 48), (2, 384, 1152), (3, 40, 18), (16, 24, 7), (17, 96, 48)]
)
def test_every_kernel_computes_the_same_product(rows, k, n):
    """ATen's int8 kernel, alm's (one and two rows at a time, k and n off its 8- and 4-blocks, up to the row limit
    and, at 17 rows, past it: the dequantised route) and the dequantised weight, with a bias and a batch dim."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(k, n, bias=True)
    x = torch.randn(rows, 1, k)
    kernels = {name: Int8Linear(linear, name) for name in ("int8pack", "alm", "dequant")}
    with torch.inference_mode():
        outputs = {name: layer(x) for name, layer in kernels.items()}
        exact = x.double() @ kernels["dequant"].dequantized().double().T + linear.bias.double()
        ref = linear(x)
    for name, out in outputs.items():
        assert out.shape == (rows, 1, n), name
        torch.testing.assert_close(out.double(), exact, rtol=1e-5, atol=1e-5, msg=name)
    assert (
        outputs["alm"] - ref
    ).abs().max() < 0.02 * ref.abs().max()  # int8 rounding, small next to the outputs
    assert kernels["alm"].weight_int8.dtype == torch.int8 and kernels["alm"].weight_int8.abs().max() <= 127


def test_the_kernel_follows_the_device():
    """alm's kernel on an x86 CPU without AVX-512, where ATen's is a scalar loop (10-30x slower than fp32)."""
    assert default_kernel(torch.device("mps")) == "int8pack"
    assert default_kernel(torch.device("cuda")) == "dequant"
    capability = torch.backends.cpu.get_cpu_capability()
    expected = (
        "int8pack" if capability.startswith("AVX512") or platform.machine() in ("arm64", "aarch64") else "alm"
    )
    assert default_kernel(torch.device("cpu")) == expected


def test_which_layers_are_quantised():
    untied = tiny_model(300, ffn="dual")
    before = weight_bytes(untied)
    replaced = quantize(untied, "int8")
    # per layer: qkv, proj and both FFN branches' in/out (the 2-way router stays float); plus the head
    kinds = {name: type(module).__name__ for name, module in untied.named_modules()}
    assert kinds["head"] == "Int8Linear" and kinds["layers.0.ffn.router"] == "Linear"
    assert replaced == sum(kind == "Int8Linear" for kind in kinds.values())
    assert weight_bytes(untied) < 0.5 * before
    tied = tiny_model(300, tie_embeddings=True)
    embedding = tied.tok_emb.weight.detach().clone()
    quantize(tied, "int8")  # the head read every token gets an int8 copy; the lookup keeps the float weight
    assert type(tied.head).__name__ == "Int8Linear" and type(tied.tok_emb.weight).__name__ == "Parameter"
    assert torch.equal(tied.tok_emb.weight, embedding)
    torch.testing.assert_close(
        tied.head.dequantized(), embedding, atol=embedding.abs().max().item() / 127, rtol=0
    )
    with pytest.raises(UsageError, match="--quantize 'int4'"):
        quantize(tied, "int4")


@pytest.mark.parametrize("head", ["untied", "tied"])
def test_int8_keeps_a_trained_models_quality(head, request, chat_tokenizer, text):
    trained = request.getfixturevalue("trained" if head == "untied" else "trained_tied")
    held_out = text[20_000:]
    fp32 = evaluate_text(trained, chat_tokenizer, held_out, device="cpu")
    for kernel in ("dequant", "int8pack", "alm"):
        int8 = evaluate_text(quantized_copy(trained, kernel), chat_tokenizer, held_out, device="cpu")
        change = abs(int8.bits_per_byte - fp32.bits_per_byte) / fp32.bits_per_byte
        assert change < BPB_BOUND, (kernel, fp32.bits_per_byte, int8.bits_per_byte)
    assert fp32.bits_per_byte < 3.5  # it did learn something (random is ~8)
    cfg = SamplingConfig(greedy=True, max_new_tokens=30)
    expected = generate(trained, chat_tokenizer, "ROMEO:", cfg, device="cpu").text()
    assert generate(quantized_copy(trained), chat_tokenizer, "ROMEO:", cfg, device="cpu").text() == expected


def test_sample_and_chat_take_quantize(tmp_path, monkeypatch, trained, chat_tokenizer):
    monkeypatch.chdir(tmp_path)
    save_chat_run(tmp_path / "runs" / "shakes", trained, chat_tokenizer, finetune=False)
    runner = CliRunner()
    args = ["sample", "shakes", "-p", "ROMEO:", "--greedy", "-n", "30", "--device", "cpu"]
    plain = runner.invoke(app, args)
    int8 = runner.invoke(app, [*args, "--quantize", "int8"])
    assert plain.exit_code == int8.exit_code == 0, int8.output
    assert int8.stdout == plain.stdout and "int8 weights" in int8.stderr
    bad = runner.invoke(app, [*args, "--quantize", "fp4"])
    assert bad.exit_code == 2 and "--quantize 'fp4' is not supported" in bad.stderr
    chat = runner.invoke(app, ["chat", "shakes", "--device", "cpu", "--quantize", "int8"], input="Hi\n")
    assert chat.exit_code == 0, chat.output  # the chat tokens are there; int8 loads


def test_the_dashboard_reads_and_writes_quantize(tmp_path, trained, chat_tokenizer):
    from alm.dashboard.sample_command import command_line, parse_sample_line
    from alm.dashboard.sampling import SamplerSession

    run_dir = tmp_path / "runs" / "shakes"
    save_chat_run(run_dir, trained, chat_tokenizer, finetune=False)
    (request,) = parse_sample_line('alm sample --prompt "Hi" --quantize int8', run_dir=run_dir)
    assert request.quantize == "int8"
    assert "--quantize int8" in command_line("shakes", request)
    loaded = SamplerSession(run_dir).load(None, "cpu", request.quantize)
    assert type(loaded.model.head).__name__ == "Int8Linear"
    with pytest.raises(UsageError, match="--quantize 'int3'"):
        SamplerSession(run_dir).load(None, "cpu", "int3")


@pytest.mark.slow
def test_an_int8_models_compiled_step_calls_alms_kernel_and_generates_its_eager_tokens(monkeypatch):
    """`--quantize int8 --compile` on the CPU: the exported step calls torch.ops.alm.int8_linear for every
    quantised layer (AOTInductor's proxy executor runs it), and decodes the eager int8 model's tokens. On pico,
    one thread, this is 1.8-1.9x the compiled fp32 step (docs/BENCHMARKS.md)."""
    import alm.sample.compiled as compiled
    from alm.sample import Engine
    from alm.sample.decoder import Decoder

    monkeypatch.setattr(compiled, "CPU_COMPILE_OPTIONS", {"freezing": True})  # seconds, not a minute
    model = tiny_model(64, max_seq_len=80)
    replaced = quantize(model, "int8", kernel="alm")
    decoder = Decoder(model, 2, device="cpu")
    example = (decoder.tokens, decoder.positions, torch.arange(8), decoder.cache)
    program = compiled.export_step(model, example, dynamic_keys=True)
    calls = [node for node in program.graph.nodes if node.target is torch.ops.alm.int8_linear.default]
    assert len(calls) == replaced
    cfg = SamplingConfig(greedy=True, max_new_tokens=70)  # past the first 64-key bucket
    prompts = [[3, 14, 15], [9, 2, 6, 5]]

    def tokens(compile: str) -> list[list[int]]:
        engine = Engine(model, device="cpu", slots=2, compile=compile)
        sequences = [engine.submit(p, cfg) for p in prompts]
        while engine.busy:
            engine.step()
        assert engine.decoder.compiled == (compile == "on"), engine.decoder.compile_note
        return [s.tokens for s in sequences]

    assert tokens("on") == tokens("off")
