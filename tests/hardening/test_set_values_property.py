"""Property: whatever `--set` values a user types, `alm train` ends with exit 0, 1 or 2 and a message — never a
traceback. Values mix the plausible (small numbers, the right types) with the hostile (inf, nan, 2**63, huge
sizes, wrong types, empty strings); a few dozen examples, each a tiny run of at most a few steps."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
from hardening_helpers import invoke, no_traceback, train_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

HUGE = [10**9, 2**31, 2**63, -(2**63), 10**30]
hostile = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(["", "abc", "1e999", ".inf", "-.nan", "[1, 2]", "{a: 1}", "~", "0x10", "nan"]),
    st.sampled_from([math.inf, -math.inf, math.nan, 1e300, -1e-300, 0.0, -0.0]),
    st.integers(-5, 0),
)
small = st.integers(1, 6)
sizes = st.one_of(small, st.sampled_from([16, 32, 64, 128, *HUGE]))
fractions = st.one_of(st.floats(0, 1), st.floats(-10, 1e40, allow_nan=False))
KEYS: dict[str, st.SearchStrategy] = {
    # long runs are bounded: step counts stay small, sizes may be absurd (the memory check refuses those)
    "train.steps": st.one_of(small, hostile),
    "train.grad_accum": st.one_of(small, hostile),
    "train.batch_size": st.one_of(sizes, hostile),
    "train.seq_len": st.one_of(sizes, hostile),
    "train.lr": st.one_of(fractions, hostile),
    "train.min_lr": st.one_of(fractions, hostile),
    "train.weight_decay": st.one_of(fractions, hostile),
    "train.beta1": st.one_of(fractions, hostile),
    "train.beta2": st.one_of(fractions, hostile),
    "train.eps": st.one_of(fractions, hostile),
    "train.grad_clip": st.one_of(fractions, hostile),
    "train.seed": st.one_of(st.integers(0, 2**70), hostile),
    "train.warmup_steps": st.one_of(small, hostile),
    "train.schedule": st.one_of(st.sampled_from(["cosine", "wsd", "constant", "linear"]), hostile),
    "train.decay_fraction": st.one_of(fractions, hostile),
    "train.precision": st.one_of(st.sampled_from(["auto", "fp32", "bf16", "fp16", "fp8"]), hostile),
    "train.device": st.one_of(st.sampled_from(["cpu", "cuda", "mps", "tpu", "cuda:7", "cpu:0"]), hostile),
    "train.eval_interval": st.one_of(small, hostile),
    "train.log_interval": st.one_of(small, hostile),
    "train.ckpt_interval": st.one_of(small, hostile),
    "train.keep_last": st.one_of(small, hostile),
    "train.max_bad_steps": st.one_of(small, hostile),
    "model.d_model": st.one_of(sizes, hostile),
    "model.n_layers": st.one_of(small, st.sampled_from(HUGE), hostile),
    "model.n_heads": st.one_of(small, st.sampled_from(HUGE), hostile),
    "model.n_kv_heads": st.one_of(small, hostile),
    "model.max_seq_len": st.one_of(sizes, hostile),
    "model.d_ff": st.one_of(sizes, hostile),
    "model.multiple_of": st.one_of(sizes, hostile),
    "model.vocab_size": st.one_of(sizes, st.sampled_from([320, 321]), hostile),
    "model.norm": st.one_of(st.sampled_from(["rmsnorm", "layernorm", "none", "batchnorm"]), hostile),
    "model.norm_eps": st.one_of(fractions, hostile),
    "model.position": st.one_of(st.sampled_from(["rope", "alibi", "nope", "learned", "xpos"]), hostile),
    "model.rope_theta": st.one_of(fractions, hostile),
    "model.ffn": st.one_of(st.sampled_from(["swiglu", "gelu", "dual", "moe"]), hostile),
    "model.tie_embeddings": st.one_of(st.booleans(), hostile),
    "model.dropout": st.one_of(fractions, hostile),
    "model.init_std": st.one_of(fractions, hostile),
    "model.bias": st.one_of(st.booleans(), hostile),
}


def _yaml(value: object) -> str:
    """How a user would type the value after `=` (YAML: `.inf`, `.nan`, `null`, `true`)."""
    if isinstance(value, float) and math.isnan(value):
        return ".nan"
    if isinstance(value, float) and math.isinf(value):
        return ".inf" if value > 0 else "-.inf"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


overrides = st.lists(
    st.sampled_from(sorted(KEYS)).flatmap(lambda key: KEYS[key].map(lambda v: f"{key}={_yaml(v)}")),
    min_size=1,
    max_size=3,
)
_runs = itertools.count()


@pytest.mark.slow
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same examples on every run: a CI failure reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(sets=overrides)
def test_any_set_value_ends_in_a_message_never_a_traceback(
    tiny_data, tmp_path: Path, sets: list[str]
) -> None:
    run = tmp_path / "runs" / f"r{next(_runs)}"
    base = ["train.steps=2", "train.log_interval=1", "train.eval_batches=1", "train.sample_interval=0"]
    result = invoke(train_args(tiny_data, run, *base, *sets))
    unexpected = result.exception if not isinstance(result.exception, SystemExit) else None
    assert unexpected is None, (sets, repr(unexpected))
    assert result.exit_code in (0, 1, 2), (sets, result.exit_code, result.output[-2000:])
    assert no_traceback(result.output), (sets, result.output[-2000:])
