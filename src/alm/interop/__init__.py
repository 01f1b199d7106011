"""Models that leave alm and models that come in: Hugging Face and GGUF exports, Hub import and push.

- `export.export_checkpoint`: a checkpoint -> a Hugging Face directory (`hf_export`, with a model card from
  `card`) or a GGUF file for llama.cpp (`gguf_export`); tokenizer files for each runtime in `tokenizer_files`.
- `hf_import.import_hf`: a Hugging Face model directory or Hub repo id -> a run directory at step 0.
- `push.push_checkpoint`: an export uploaded to a Hub model repo (`hub` wraps huggingface_hub).
- `output.staged`: how every one of them writes: into a temp sibling, renamed into place when complete.

The weight and config mappings themselves live in `alm.model.hf`. Import submodules directly; this package
imports nothing, so the CLI stays free of torch until a command runs.
"""
