"""Prefill of a burst of mixed-length prompts: one forward per length (PAD_ALLOWANCE 0, what the engine did
before) against neighbours right-padded into one forward (alm's PAD_ALLOWANCE), interleaved in one process.

    .venv/bin/python scripts/bench_prefill.py --threads 1

Weights are random: a prefill's time does not depend on them. Run it alone on the machine (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch

import alm.sample.decoder as decoder_module
from alm.errors import AlmError
from alm.model import Transformer
from alm.model.presets import load_model_config

LENGTH_RANGES = [(10, 21), (27, 61), (38, 122)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--model", default="pico")
    parser.add_argument("--slots", type=int, default=8)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    try:
        model = Transformer(load_model_config(args.model, ["vocab_size=4096"])).eval()
    except AlmError as exc:  # an unknown preset or a bad YAML: say so, exit 2
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    decoder = decoder_module.Decoder(model, args.slots, device="cpu")
    allowances = (0, decoder_module.PAD_ALLOWANCE)
    rng = random.Random(0)
    print(
        f"{args.model} (vocab 4096), {args.threads} thread(s), bursts of {args.slots} prompts, median of {args.rounds}"
    )
    for low, high in LENGTH_RANGES:
        bursts = [
            [[rng.randrange(4096) for _ in range(rng.randint(low, high))] for _ in range(args.slots)]
            for _ in range(4)
        ]
        times: dict[int, list[float]] = {allowance: [] for allowance in allowances}
        with torch.inference_mode():
            for round_ in range(args.rounds + 1):  # round 0 warms up
                for allowance in allowances:
                    decoder_module.PAD_ALLOWANCE = allowance
                    started = time.perf_counter()
                    for burst in bursts:
                        decoder.prefill_many(range(args.slots), burst)
                    if round_:
                        times[allowance].append((time.perf_counter() - started) * 1000 / len(bursts))
        by_length, padded = (statistics.median(times[allowance]) for allowance in allowances)
        print(
            f"prompts of {low}-{high} tokens: one forward per length {by_length:.1f} ms, "
            f"padded together {padded:.1f} ms, {by_length / padded:.2f}x"
        )


if __name__ == "__main__":
    main()
