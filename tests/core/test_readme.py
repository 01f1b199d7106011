"""README.md runs as written: every fenced shell block, in order, in one fresh directory (later blocks use what
earlier ones made), with tiny runs through the `ALM_SET` environment variable. A new user following the README
top to bottom meets no command that fails.

Conventions the README keeps (and this test enforces):
- A block that cannot run on a CPU-only machine without the network, or that is a setup step CI runs anyway,
  is marked by an HTML comment on the line before its fence, naming why: `<!-- readme-test: skip (network) -->`.
  The reasons are SKIP_REASONS; anything else is an error, so a block is never skipped for convenience.
- A YAML block whose first line is a comment naming a file (`# my-corpus.yaml`) is that file's content: the user
  saves it, and so does this test, before the blocks after it run.
- Files a command needs (a prompt file, a folder of texts) are made by an earlier README line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
SHELLS = ("bash", "sh", "shell", "console")
SKIP_REASONS = {
    "setup": "creates the virtual environment: what CI itself runs",
    "network": "downloads (pip, the Hugging Face Hub) or reaches another machine",
    "gpu": "needs CUDA devices",
    "mps": "needs Apple Silicon",
    "terminal": "an interactive full-screen or line-editing session on a terminal",
    "server": "a server that runs until Ctrl+C, and the requests sent to it",
    "benchmark": "timed measurements that take minutes (`make bench`)",
}
MARKER = re.compile(r"<!--\s*readme-test:\s*skip\s*\(([^)]*)\)\s*-->")
# Tiny runs: every command that reads a train section applies these before its own --set (alm.config).
TINY = (
    "train.steps=4 train.batch_size=2 train.eval_batches=1 train.log_interval=100 "
    "train.sample_interval=0 train.warmup_steps=1 train.early_stop_patience=0 train.progress=plain"
)


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    text: str
    skip: str | None  # the marker's reason


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        blocks.append(Block(i + 1, fence.group(1), "\n".join(lines[i + 1 : end]), marker and marker.group(1)))
        i = end + 1
    return blocks


def test_readme_markers_name_a_known_reason() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert sum(b.lang in SHELLS for b in blocks) >= 10
    for block in blocks:
        if block.skip is not None:
            assert block.skip in SKIP_REASONS, f"README.md:{block.line}: unknown skip reason {block.skip!r}"
            assert block.lang in SHELLS, f"README.md:{block.line}: only shell blocks are run (or skipped)"


def test_readme_model_table_matches_model_info() -> None:
    """The preset table's parameter counts are what `alm model info PRESET` prints."""
    from alm.model.info import model_summary
    from alm.model.presets import available_presets, load_model_config, reference_vocab

    text = README.read_text(encoding="utf-8")
    for name in available_presets():
        row = re.search(rf"^\| `{name}` \|[^|]*\| ([\d.]+)M \(vocab (\d+)\) \|", text, re.M)
        assert row, f"README has no preset row for {name}"
        cfg = dataclasses.replace(load_model_config(name), vocab_size=reference_vocab(name))
        params = model_summary(cfg)["params"]
        assert (row.group(1), int(row.group(2))) == (f"{params / 1e6:.1f}", reference_vocab(name)), name


def _saved_as(block: Block) -> str | None:
    """The file a YAML block is the content of: the name its first line comments (`# my-corpus.yaml`)."""
    named = re.fullmatch(r"#\s*(\S+\.ya?ml)\s*", block.text.split("\n", 1)[0])
    return named.group(1) if block.lang in ("yaml", "yml") and named else None


def _environment(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ALM_", "HF_", "PYTEST"))}
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # alm, python3, mlx_lm.*
        "HOME": str(home),
        "ALM_SET": TINY,
        "HF_HUB_OFFLINE": "1",  # nothing in a runnable block may reach the network
        "HF_HOME": str(home / "hf"),
        "COLUMNS": "100",
    }


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    shutil.copytree(REPO / "configs", work / "configs")  # a clone has them (`--model configs/ablations/…`)
    env = _environment(home)
    timings = []
    for block in readme_blocks(README.read_text(encoding="utf-8")):
        if (name := _saved_as(block)) is not None:
            (work / name).write_text(block.text + "\n", encoding="utf-8")
            continue
        if block.lang not in SHELLS or block.skip is not None:
            continue
        start = time.perf_counter()
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block.text],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        timings.append(f"README.md:{block.line} {time.perf_counter() - start:.0f}s")
        assert proc.returncode == 0, (
            f"README.md:{block.line}: the block exits {proc.returncode}\n{block.text}\n"
            f"--- stdout (end)\n{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-3000:]}"
        )
    print("\n".join(timings))
