"""Fine-tuning a trained run on chat data: `alm sft` (supervised, assistant tokens only) and `alm dpo` (direct
preference optimization against the starting checkpoint), on the same trainer as pretraining.

`config` holds the `finetune` section a fine-tuning run adds to its config; `data` loads, splits and renders its
JSONL data; `objectives` are the `alm.train.objective.Objective`s the trainer runs; `launch` turns `alm sft` /
`alm dpo` / `alm resume` arguments into a `RunPlan`. The chat format, data formats, batches and the DPO loss are
`alm.chat`'s; this package wires them into training.
"""
