"""The batched engine: sequences join and leave between steps, and each generates what it would alone."""

from __future__ import annotations

import threading

import pytest
import torch
from sample_helpers import PARROT_PROMPT, tiny_model

from alm.errors import UsageError
from alm.sample import Engine, GenerationInfo, SamplingConfig, generate, generate_many, generate_tokens
from alm.sample.decoder import PAD_ALLOWANCE, Decoder, compile_support, shared_prefills

GREEDY = SamplingConfig(greedy=True, max_new_tokens=20)
VARIANTS = {
    "rope-gqa": {},  # tiny_model is GQA (2 KV heads for 4 heads) with RoPE
    "alibi-mqa": {"position": "alibi", "n_kv_heads": 1},
    "nope": {"position": "nope"},
    "learned-dual": {"position": "learned", "ffn": "dual"},
}


def alone(model, prompt, cfg, **kw) -> tuple[list[int], GenerationInfo]:
    info = GenerationInfo()
    return list(generate_tokens(model, prompt, cfg, device="cpu", info=info, **kw)), info


def run_all(engine: Engine, on_step=None) -> int:
    steps = 0
    while engine.busy:
        engine.step()
        steps += 1
        if on_step is not None:
            on_step(steps)
    return steps


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_each_sequence_generates_alone_what_it_generates_batched(variant):
    model = tiny_model(**VARIANTS[variant])
    prompts = [[3, 14, 15], [9, 2, 6, 5, 35, 8, 9, 7, 9], [1], [27, 18, 28, 18, 28, 45, 90 % 64, 45]]
    budgets = [20, 7, 15, 12]
    expected = [
        alone(model, p, GREEDY.replace(max_new_tokens=n))[0] for p, n in zip(prompts, budgets, strict=True)
    ]
    stop_third = threading.Event()
    engine = Engine(model.eval(), device="cpu", slots=3)  # fewer slots than sequences: the last one waits
    seqs = [
        engine.submit(p, GREEDY.replace(max_new_tokens=n), cancel=stop_third if i == 2 else None)
        for i, (p, n) in enumerate(zip(prompts[:3], budgets[:3], strict=True))
    ]
    late = []

    def on_step(step: int) -> None:
        if step == 3:  # continuous batching: a sequence joins while the others run
            late.append(engine.submit(prompts[3], GREEDY.replace(max_new_tokens=budgets[3])))
        if step == 5:
            stop_third.set()

    run_all(engine, on_step)
    seqs += late
    assert [len(s.tokens) for s in seqs] == [20, 7, 5, 12]
    for seq, want in zip(seqs, expected, strict=True):
        assert seq.tokens == want[: len(seq.tokens)]
    assert [s.info.stop_reason for s in seqs] == ["length", "length", "cancelled", "length"]
    assert len(set(seqs[0].tokens)) > 3  # a real sequence, not one token repeated


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_sequences_admitted_together_share_their_prefill(variant):
    """A burst of prompts costs one forward per run of neighbouring slots, right-padded to the longest while the
    padding is cheaper than the forwards it saves; a prompt given twice is computed once (its keys copied). Each
    generates exactly what it generates alone, for every position scheme (the padding's keys stay out of reach)."""
    model = tiny_model(max_seq_len=96, **VARIANTS[variant]).eval()
    # 42 positions of padding beside a 3-token prompt: its own forward
    long = [(7 * i) % 60 + 1 for i in range(45)]
    prompts = [[3, 14, 15], [9, 2, 6], [5, 35, 8, 9, 7], long, [3, 14, 15]]
    cfg = GREEDY.replace(max_new_tokens=40)  # past the short prompts' padded positions
    expected = [alone(model, p, cfg)[0] for p in prompts]
    forwards = []
    model.register_forward_hook(lambda module, args, output: forwards.append(args[0].shape))
    engine = Engine(model, device="cpu", slots=5)
    seqs = [engine.submit(p, cfg) for p in prompts]
    run_all(engine)
    assert forwards == [(3, 5), (1, 45)]  # slots 0-2 padded to 5, slot 3 alone, slot 4 a copy of slot 0
    assert [s.tokens for s in seqs] == expected


def test_shared_prefills_group_neighbours_while_the_padding_pays():
    def lengths(*pairs):
        groups = shared_prefills([(slot, tuple(range(n))) for slot, n in pairs])
        return [[len(ids) for _, ids in group] for group in groups]

    assert lengths((0, 4), (1, 4), (2, 4)) == [[4, 4, 4]]
    assert lengths((0, 4), (1, 4 + PAD_ALLOWANCE)) == [[4, 4 + PAD_ALLOWANCE]]  # padding within the allowance
    assert lengths((0, 4), (1, 5 + PAD_ALLOWANCE)) == [[4], [5 + PAD_ALLOWANCE]]
    assert lengths((0, 4), (2, 4)) == [[4], [4]]  # not neighbours: one cache view per forward
    assert lengths((0, 20), (1, 10), (2, 10)) == [[20, 10, 10]]  # 20 padded positions save two forwards


def test_a_repeated_prompt_is_prefilled_once_and_bitwise_equal():
    model = tiny_model().eval()
    decoder, alone_decoder = Decoder(model, 3, device="cpu"), Decoder(model, 1, device="cpu")
    with torch.inference_mode():
        samples = decoder.prefill_many([2, 0, 1], [[7, 1, 8]] * 3)  # `alm sample --num-samples 3`
        expected = alone_decoder.prefill(0, [7, 1, 8])
        assert all(torch.equal(row, expected[0]) for row in samples)  # as if each were alone
        logits = decoder.prefill_many([2, 0, 1], [[7, 1, 8], [7, 1, 8], [7, 1, 8, 2]])
    assert torch.equal(logits[0], logits[1])
    torch.testing.assert_close(logits[0], expected[0])  # computed beside a longer prompt, padded
    assert decoder.lengths == [3, 4, 3]
    for keys in (*decoder.cache.keys, *decoder.cache.values):
        assert torch.equal(keys[0, :, :3], keys[2, :, :3])
    with pytest.raises(UsageError, match="each slot once"):
        decoder.prefill_many([0, 0], [[1], [2]])


def test_an_eager_step_computes_only_the_slots_from_the_first_running_to_the_last():
    """A lone request in a wide server engine costs one row per token, not one per slot (measured on pico, one
    thread: a sequence alone in 4 slots went from ~0.5x to 1.0x the tok/s of a 1-slot engine); a free slot
    between two running ones is computed too (one contiguous forward) and ignored."""
    model = tiny_model().eval()
    cfg = GREEDY.replace(max_new_tokens=6)
    widths = []
    model.head.register_forward_hook(lambda module, args, output: widths.append(args[0].shape[0]))
    engine = Engine(model, device="cpu", slots=4)
    lone = engine.submit([3, 14, 15], cfg)
    run_all(engine)
    assert lone.tokens == alone(model, [3, 14, 15], cfg)[0]
    assert set(widths) == {1}  # the prefill's last position, then one row per decode step
    widths.clear()
    prompts, budgets = [[5, 7, 8], [1], [9, 4]], [6, 2, 6]  # three lengths: three prefills of one row
    seqs = [engine.submit(p, cfg.replace(max_new_tokens=n)) for p, n in zip(prompts, budgets, strict=True)]
    run_all(engine)
    assert [s.tokens for s in seqs] == [alone(model, p, s.cfg)[0] for p, s in zip(prompts, seqs, strict=True)]
    assert set(widths) == {
        1,
        3,
    }  # slot 1 finished early; slots 0-2 stay one forward, slot 3 is never computed


def test_a_full_window_slides_per_sequence_inside_a_batch():
    model = tiny_model(max_seq_len=16)
    prompts, cfg = [[5, 9, 2, 33, 12], [7] * 14, [1, 2]], GREEDY.replace(max_new_tokens=40)
    expected = [alone(model, p, cfg) for p in prompts]
    engine = Engine(model, device="cpu", slots=3)
    seqs = [engine.submit(p, cfg) for p in prompts]
    run_all(engine)
    for seq, (tokens, info) in zip(seqs, expected, strict=True):
        assert seq.tokens == tokens
        assert seq.info.slides == info.slides > 0


def test_eos_and_token_budgets_end_sequences_independently():
    model = tiny_model()
    full, _ = alone(model, [4, 8], GREEDY)
    eos = full[6]
    engine = Engine(model, device="cpu", slots=2)
    stops_at_eos = engine.submit([4, 8], GREEDY, eos_id=eos)
    runs_on = engine.submit([4, 8], GREEDY)
    run_all(engine)
    assert stops_at_eos.tokens == full[: full.index(eos)] and stops_at_eos.info.stop_reason == "eos"
    assert runs_on.tokens == full and runs_on.info.stop_reason == "length"


def test_seeded_sampling_is_reproducible_and_independent_of_the_batch():
    model = tiny_model()
    cfg = SamplingConfig(temperature=1.0, top_k=20, repetition_penalty=1.3, max_new_tokens=24)
    seeds = [7, 8, 7]

    def batch() -> list[list[int]]:
        engine = Engine(model, device="cpu", slots=3)
        seqs = [engine.submit([1, 2, 3], cfg.replace(seed=s)) for s in seeds]
        run_all(engine)
        return [s.tokens for s in seqs]

    first, again = batch(), batch()
    assert first == again
    assert first[0] == first[2] != first[1]  # the same seed draws the same sample, beside another
    assert first[0] == alone(model, [1, 2, 3], cfg.replace(seed=7))[0]


def test_text_sequences_stream_and_stop_on_their_own(parrot, tokenizer):
    model, n_new = parrot
    cfg = GREEDY.replace(max_new_tokens=n_new)
    requests = [
        (PARROT_PROMPT, cfg.replace(stop=("END",))),
        (PARROT_PROMPT, cfg),
        ("To be", cfg.replace(max_new_tokens=9)),
    ]
    expected = [generate(model, tokenizer, p, c, device="cpu").text() for p, c in requests]
    engine = Engine(model, device="cpu", slots=3, tokenizer=tokenizer)
    seqs = [engine.submit(p, c, user=i) for i, (p, c) in enumerate(requests)]
    texts = ["", "", ""]
    ends = []
    while engine.busy:
        for event in engine.step():
            texts[event.sequence.user] += event.text
            if event.token is None:
                ends.append(event.sequence.user)
    assert texts == expected
    assert texts[0] == " go 🙂漢字 now, THE "
    assert [s.info.stop_reason for s in seqs] == ["stop", "length", "length"]
    assert sorted(ends) == [0, 1, 2]  # every sequence reports its end exactly once


def test_generate_many_decodes_samples_as_one_batch(parrot, tokenizer):
    model, n_new = parrot
    cfgs = [GREEDY.replace(max_new_tokens=n_new), SamplingConfig(temperature=1.0, seed=3, max_new_tokens=8)]
    stream = generate_many(model, tokenizer, PARROT_PROMPT, cfgs, device="cpu")
    texts, ended = ["", ""], []
    for i, piece, done in stream:
        assert i not in ended  # nothing after a sample's end
        texts[i] += piece
        ended += [i] if done else []
    assert sorted(ended) == [0, 1]
    assert texts[0] == generate(model, tokenizer, PARROT_PROMPT, cfgs[0], device="cpu").text()
    assert texts[1] == generate(model, tokenizer, PARROT_PROMPT, cfgs[1], device="cpu").text()
    assert [info.new_tokens for info in stream.infos] == [n_new, 8]


def test_engine_misuse_is_a_usage_error(tokenizer):
    model = tiny_model(tokenizer.vocab_size)
    engine = Engine(model, device="cpu", slots=1)
    with pytest.raises(UsageError, match="tokenizer"):
        engine.submit("text", GREEDY)
    with pytest.raises(UsageError, match="empty prompt"):
        engine.submit([], GREEDY)
    engine.submit([1, 2], GREEDY)
    model.train()
    with pytest.raises(UsageError, match="eval mode"):
        engine.step()


def test_invalid_text_is_refused_with_the_byte_that_caused_it(tokenizer):
    model = tiny_model(tokenizer.vocab_size)
    with pytest.raises(UsageError, match="byte 0xe9 at character 3"):
        generate(model, tokenizer, "caf\udce9", GREEDY, device="cpu")  # how Python passes argv's b"caf\xe9"
    with pytest.raises(UsageError, match="lone surrogate U\\+D800"):
        generate(model, tokenizer, "x\ud800", GREEDY, device="cpu")


# --- compilation ----------------------------------------------------------------------------------------------


def test_compile_falls_back_to_eager_with_the_reason_when_there_is_no_cpp_compiler():
    from torch._inductor import config

    model = tiny_model()
    with config.patch({"cpp.cxx": ("alm-test-no-such-compiler",)}):
        decoder = Decoder(model, 1, device="cpu", compile="on")
        engine = Engine(model, device="cpu", compile="on")
        seq = engine.submit([1, 2, 3], GREEDY)
        run_all(engine)
    assert not decoder.compiled and "C++ compiler" in decoder.compile_note
    assert not engine.decoder.compiled
    assert seq.tokens == alone(model, [1, 2, 3], GREEDY)[0]


def test_mps_decodes_eagerly_and_says_why():
    supported, why = compile_support(torch.device("mps"))
    assert not supported and "MPS" in why
    assert (
        Decoder(tiny_model(), 1, device="cpu", compile="auto").compiled is False
    )  # auto compiles on CUDA only


def test_only_the_key_count_is_dynamic_in_every_compiled_step():
    """The exported step is specialised to its decoder's slot count (a symbolic batch would get slower GEMMs, as
    Dynamo's automatic dynamic shapes once gave a second decoder in the process), while the key count is one
    symbol, so one library serves every key bucket; a context of one bucket exports fully static."""
    from alm.sample.compiled import export_step
    from alm.sample.decoder import KEY_BUCKET

    def symbols(program) -> set:
        found: set = set()
        for node in program.graph.nodes:
            value = node.meta.get("val") if node.op == "placeholder" else None
            if isinstance(value, torch.Tensor):
                for dim in value.shape:
                    if isinstance(dim, torch.SymInt):
                        found |= dim.node.expr.free_symbols
        return found

    model = tiny_model(max_seq_len=160)
    for slots in (1, 3):
        decoder = Decoder(model, slots, device="cpu")
        example = (decoder.tokens, decoder.positions, torch.arange(KEY_BUCKET), decoder.cache)
        program = export_step(model, example, dynamic_keys=True)
        [key_count] = symbols(program)
        inputs = [n.meta["val"] for n in program.graph.nodes if n.name in ("tokens", "positions")]
        assert [value.shape for value in inputs] == [(slots,), (slots,)]
        # at most the whole context: the cache's spare position is never read
        assert program.range_constraints[key_count].upper == 160
    assert not symbols(export_step(model, example, dynamic_keys=False))


def test_the_exported_step_calls_alms_attention_kernel_where_it_applies(monkeypatch):
    """Every layer's attention is one call of torch.ops.alm.decode_attention, except with ALiBi (an additive
    bias); a kernel that cannot be built leaves the step to Inductor's attention."""
    import alm.model.kernels as kernels
    import alm.sample.compiled as compiled

    assert kernels.ensure_kernels()
    for variant, calls in (({}, 2), ({"position": "alibi"}, 0)):
        model = tiny_model(n_layers=2, **variant)
        decoder = Decoder(model, 2, device="cpu")
        example = (decoder.tokens, decoder.positions, torch.arange(8), decoder.cache)
        program = compiled.export_step(model, example, dynamic_keys=True, decode_kernel=True)
        kernel = torch.ops.alm.decode_attention.default
        assert sum(node.target is kernel for node in program.graph.nodes) == calls

    def no_toolchain(store):
        raise RuntimeError("no compiler")

    monkeypatch.setattr(kernels, "load_kernels", no_toolchain)
    assert not compiled.decode_kernel_for(tiny_model())


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "slots", "production"),
    [({"ffn": "dual"}, 8, True), ({"position": "alibi", "n_kv_heads": 1}, 2, False)],
)
def test_the_compiled_step_generates_the_eager_tokens(
    variant, slots, production, monkeypatch, tmp_path, capfd
):
    """AOTInductor on the CPU; `production` uses the real options (freezing + max-autotune GEMMs, a minute) with
    8 slots (alm's attention kernel, and the GEMMs tuned for 8 rows), else freezing alone and Inductor's
    attention (ALiBi). The context (160) spans several key buckets, so the dynamic key count is exercised. A
    fresh Inductor cache makes the autotuner run, and its timing tables must not reach the user's terminal."""
    import alm.sample.compiled as compiled

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setenv("ALM_CACHE_DIR", str(tmp_path / "alm"))  # nothing kept from an earlier run
    if not production:
        monkeypatch.setattr(compiled, "CPU_COMPILE_OPTIONS", {"freezing": True})
    model = tiny_model(max_seq_len=160, **variant)
    prompts = [
        [3, 14, 15],
        [9, 2, 6, 5, 35],
        [1],
        [7, 7, 7, 7],
        [40, 2],
        [5, 6, 7, 8, 9, 10],
        [11],
        [60, 1, 2],
    ]
    prompts, cfg = prompts[:slots], GREEDY.replace(max_new_tokens=150)
    engine = Engine(model, device="cpu", slots=slots, compile="on")
    seqs = [engine.submit(p, cfg) for p in prompts]
    run_all(engine)
    assert engine.decoder.compiled, engine.decoder.compile_note
    eager = Engine(model, device="cpu", slots=slots)
    expected = [eager.submit(p, cfg) for p in prompts]
    run_all(eager)
    assert [s.tokens for s in seqs] == [s.tokens for s in expected]
    printed = capfd.readouterr()
    assert "AUTOTUNE" not in printed.err + printed.out and "TypedStorage" not in printed.err
