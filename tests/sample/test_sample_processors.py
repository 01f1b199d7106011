"""Logit processors and the sampler against hand-computed distributions."""

from __future__ import annotations

import math

import pytest
import torch

from alm.config import from_dict
from alm.errors import ConfigError
from alm.sample import (
    SamplingConfig,
    apply_min_p,
    apply_repetition_penalty,
    apply_temperature,
    apply_top_k,
    apply_top_p,
    make_generator,
    presence_mask,
    process_logits,
    sample_token,
)

PROBS = [0.5, 0.3, 0.15, 0.05]


def logits_of(probs: list[float]) -> torch.Tensor:
    return torch.tensor([math.log(p) for p in probs])


def dist(logits: torch.Tensor) -> list[float]:
    return logits.softmax(-1).tolist()


def test_top_k_keeps_the_k_largest():
    logits = torch.tensor([1.0, 3.0, 2.0, 0.0])
    e3, e2 = math.exp(3), math.exp(2)
    assert dist(apply_top_k(logits, 2)) == pytest.approx([0, e3 / (e3 + e2), e2 / (e3 + e2), 0])
    assert dist(apply_top_k(logits, 1)) == pytest.approx([0, 1, 0, 0])


def test_top_k_zero_is_off_not_greedy():
    logits = logits_of(PROBS)
    assert torch.equal(apply_top_k(logits, 0), logits)
    assert torch.equal(apply_top_k(logits, 99), logits)  # k >= V keeps everything
    cfg = SamplingConfig(temperature=1.0, top_k=0)
    assert not cfg.is_greedy
    assert dist(process_logits(logits, cfg)) == pytest.approx(PROBS)


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        (0.45, [1, 0, 0, 0]),  # the top token alone already reaches 0.45
        (0.7, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # 0.5 < 0.7, so the second token is needed too
        (0.85, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),
        (1.0, PROBS),
    ],
)
def test_top_p_keeps_the_smallest_set_reaching_p(p, expected):
    # Shuffled order: the result must not depend on token ids being sorted by probability.
    order = [2, 0, 3, 1]
    logits = logits_of([PROBS[i] for i in order])
    assert dist(apply_top_p(logits, p)) == pytest.approx([expected[i] for i in order], abs=1e-6)


@pytest.mark.parametrize(
    ("min_p", "expected"),
    [
        (0.2, [0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0]),  # threshold 0.1 drops only the 0.05 token
        (0.5, [0.5 / 0.8, 0.3 / 0.8, 0, 0]),  # threshold 0.25
        (0.0, PROBS),
    ],
)
def test_min_p_is_relative_to_the_top_token(min_p, expected):
    assert dist(apply_min_p(logits_of(PROBS), min_p)) == pytest.approx(expected, abs=1e-6)


def test_repetition_penalty_is_sign_aware():
    logits = torch.tensor([2.0, -1.0, 0.5, -3.0])
    seen = presence_mask([0, 1], vocab_size=4)
    out = apply_repetition_penalty(logits, seen, 2.0)
    # Seen tokens become less likely whatever their sign: 2 -> 1, and -1 -> -2 (not -0.5, which would raise it).
    assert out.tolist() == [1.0, -2.0, 0.5, -3.0]
    assert dist(out)[1] < dist(logits)[1]
    assert torch.equal(apply_repetition_penalty(logits, seen, 1.0), logits)


def test_temperature_scales_logits():
    logits = torch.tensor([1.0, 2.0])
    e2, e4 = math.exp(2), math.exp(4)
    assert dist(apply_temperature(logits, 0.5)) == pytest.approx([e2 / (e2 + e4), e4 / (e2 + e4)])


def test_processors_apply_in_order():
    # Temperature 2 flattens [0.5, 0.3, 0.15, 0.05] to ∝ sqrt(p); top-k 3 then drops the last token; top-p 0.5
    # then keeps the first two (sqrt .5 / (sum of three sqrt) ≈ 0.42 < 0.5).
    cfg = SamplingConfig(temperature=2.0, top_k=3, top_p=0.5)
    roots = [math.sqrt(p) for p in PROBS[:2]]
    expected = [r / sum(roots) for r in roots] + [0, 0]
    assert dist(process_logits(logits_of(PROBS), cfg)) == pytest.approx(expected, abs=1e-6)


def test_greedy_and_temperature_zero_take_the_argmax():
    logits = torch.tensor([[0.1, 2.0, 1.9], [3.0, -1.0, 2.9]])
    for cfg in (SamplingConfig(greedy=True), SamplingConfig(temperature=0.0)):
        assert cfg.is_greedy
        assert sample_token(logits, cfg).tolist() == [1, 0]
    # The repetition penalty still applies to greedy decoding.
    seen = presence_mask([1], 3)
    cfg = SamplingConfig(greedy=True, repetition_penalty=2.0)
    assert sample_token(logits[:1], cfg, seen=seen).tolist() == [2]


def test_sampler_draws_from_the_processed_distribution():
    n = 40_000
    cfg = SamplingConfig(temperature=1.0, min_p=0.2)
    logits = logits_of(PROBS).expand(n, 4)
    draws = sample_token(logits, cfg, generator=make_generator(0, torch.device("cpu")))
    freq = torch.bincount(draws, minlength=4).double() / n
    assert freq.tolist() == pytest.approx([0.5 / 0.95, 0.3 / 0.95, 0.15 / 0.95, 0], abs=0.01)
    assert freq[3] == 0  # a filtered token is never drawn


def test_a_seed_reproduces_draws():
    logits = torch.zeros(64, 50)
    cfg = SamplingConfig(temperature=1.0)

    def draw(seed):
        return sample_token(logits, cfg, generator=make_generator(seed, torch.device("cpu"))).tolist()

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("temperature", -0.1),
        ("top_k", -1),
        ("top_p", 0.0),
        ("top_p", 1.5),
        ("min_p", 1.0),
        ("min_p", -0.1),
        ("repetition_penalty", 0.0),
        ("max_new_tokens", -1),
        ("stop", [""]),
    ],
)
def test_invalid_settings_name_the_key(field, value):
    with pytest.raises(ConfigError) as err:
        SamplingConfig(**{field: value})
    assert err.value.key == field
    with pytest.raises(ConfigError, match=f"'{field}'"):
        from_dict(SamplingConfig, {field: value})


def test_config_from_plain_data():
    cfg = from_dict(SamplingConfig, {"temperature": 0, "stop": ["\n\n", "END"], "seed": 3})
    assert cfg.is_greedy
    assert cfg.stop == ("\n\n", "END")
