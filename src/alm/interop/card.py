"""The README.md model card of a Hugging Face export: what the model is, how it was trained, and how to run it.

Facts come from the checkpoint (config, step) and the run's events up to the checkpoint's step (tokens seen,
the latest validation loss and bits per byte, the command that started the run), folded with the same
`RunSummary` that `alm runs` uses.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from alm.events import EvalEvent, StartEvent, read_events
from alm.format import count, number
from alm.interop.source import ExportSource
from alm.rundir import RunDir
from alm.summary import RunSummary

DEFAULT_LICENSE = "other"


@dataclass(frozen=True)
class TrainingFacts:
    tokens: int | None  # seen by the checkpoint's step
    eval: EvalEvent | None  # the latest evaluation at or before it
    best_val_loss: float | None
    command: str | None  # the command that started the run


def training_facts(run: RunDir, step: int) -> TrainingFacts:
    summary, command = RunSummary(name=run.name), None
    for event in read_events(run.events_path):
        event_step = getattr(event, "step", None)
        if event_step is not None and event_step > step:
            continue  # later than the exported checkpoint
        if isinstance(event, StartEvent) and command is None and event.command:
            argv = list(event.command)
            if Path(argv[0]).name in ("alm", "__main__.py"):  # `alm` or `python -m alm`, by full path
                argv[0] = "alm"
            command = shlex.join(argv)
        summary.apply(event)
    tokens = summary.last_step.tokens if summary.last_step is not None else None
    return TrainingFacts(tokens, summary.last_eval, summary.best_val_loss, command)


def _sources(config: dict[str, Any]) -> str:
    imported = config.get("source")
    if imported:
        return f"imported from {imported.get('from')} ({imported.get('format')}); not trained in alm"
    described = []
    for src in (config.get("data") or {}).get("sources") or []:
        kind = src.get("type", "builtin")
        if kind == "builtin":
            described.append(f"built-in corpus `{src.get('name')}`")
        elif kind == "local":
            described.append("local files " + ", ".join(f"`{p}`" for p in src.get("paths") or []))
        else:
            split = f", split {src['split']}" if src.get("split") else ""
            described.append(f"Hugging Face dataset `{src.get('repo')}`{split}")
    return "; ".join(described) or "not recorded"


def _cell(text: str) -> str:
    """GitHub's tables split cells at every "|", code spans included, and alm's special tokens contain pipes."""
    return text.replace("|", "\\|")


def model_card(
    source: ExportSource, *, architecture: str, dtype: str, license: str, location: str = "PATH"
) -> str:
    """The card; `location` is what the usage snippets load (a Hub repo id when pushing)."""
    cfg, tok, model = source.model.config, source.tokenizer, source.model
    facts = training_facts(source.run, source.step)
    kv = "" if cfg.kv_heads == cfg.n_heads else f", {cfg.kv_heads} KV heads"
    validation = "not evaluated"
    if facts.eval is not None:
        validation = (
            f"loss {number(facts.eval.val_loss)}, {number(facts.eval.val_bpb)} bits per byte "
            f"(step {facts.eval.step}; best val loss {number(facts.best_val_loss)})"
        )
    specials = ", ".join(
        f"{role} `{token}` = {i}"
        for role, token, i in (
            ("bos", tok.bos_token, tok.bos_id),
            ("eos", tok.eos_token, tok.eos_id),
            ("pad", tok.pad_token, tok.pad_id),
        )
    )
    rows = [
        (
            "architecture",
            f"`{architecture}`: {cfg.n_layers} layers, d_model {cfg.d_model}, {cfg.n_heads} heads{kv}",
        ),
        (
            "blocks",
            f"{cfg.norm}, {cfg.norm_position}-norm, {cfg.position} positions, {cfg.ffn} FFN ({cfg.ffn_dim})",
        ),
        ("parameters", f"{count(model.num_params())} ({count(model.num_params(True))} without embeddings)"),
        ("context", f"{cfg.max_seq_len} tokens"),
        ("tokenizer", f"{tok.backend_type}, {tok.vocab_size} tokens; {specials}"),
        ("weights", f"{dtype}, checkpoint step {source.step}, {count(facts.tokens)} tokens seen"),
        ("data", _sources(source.config)),
        ("validation", validation),
        ("trained with", f"`{facts.command}`" if facts.command else "not recorded"),
    ]
    table = "\n".join(f"| {key} | {_cell(value)} |" for key, value in rows)
    return f"""---
license: {license}
library_name: transformers
pipeline_tag: text-generation
tags:
- alm
- {architecture}
---

# {source.name}

A small language model trained with alm and exported as a self-contained Hugging Face directory.

| | |
|---|---|
{table}

## Use

```python
from transformers import AutoModelForCausalLM, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{location}")
model = AutoModelForCausalLM.from_pretrained("{location}")
ids = tokenizer("ROMEO:", return_tensors="pt").input_ids
print(tokenizer.decode(model.generate(ids, max_new_tokens=64, do_sample=False)[0]))
```

Generation stops at `{tok.eos_token}` (id {tok.eos_id}), as in `alm sample`. On Apple Silicon:
`mlx_lm.generate --model {location} --prompt "ROMEO:" --ignore-chat-template` (a plain continuation), or 4-bit
weights with `mlx_lm.convert --hf-path {location} -q`.
"""


__all__ = ["DEFAULT_LICENSE", "TrainingFacts", "model_card", "training_facts"]
