"""Data pipeline: sources -> clean text -> tokenizer -> packed uint32 shards -> memmapped batches.

Entry points: `alm.data.pipeline.ensure_dataset` (build what is missing) and `alm.data.loader` (read batches).
"""
