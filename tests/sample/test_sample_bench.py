"""The decode benchmark's machinery on a tiny model (its figures are recorded in docs/BENCHMARKS.md, not here)."""

from __future__ import annotations

import torch
from sample_helpers import tiny_config

from alm.bench.sample import run_sample_bench


def test_all_three_decoders_produce_the_same_greedy_tokens():
    cfg = tiny_config(96, max_seq_len=16)  # the bench widens the context to fit prompt + new tokens
    result = run_sample_bench(cfg, preset="tiny", device=torch.device("cpu"), new_tokens=24, repeats=1)
    assert result.max_seq_len == 16 + 24
    assert len(result.cached.tokens) == 24
    assert len(set(result.cached.tokens)) > 3
    assert result.recompute.tokens == result.cached.tokens
    assert result.hf is not None and result.hf.tokens == result.cached.tokens  # same weights via alm.model.hf
    record = result.to_dict()
    assert record["hf_agree_tokens"] == 24 and record["vs_recompute"] > 0 and record["vs_hf"] > 0
