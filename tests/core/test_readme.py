"""README.md runs as written: every fenced shell block, in order, in one fresh directory (later blocks use what
earlier ones made), with tiny runs through the `ALM_SET` environment variable. A new user following the README
top to bottom meets no command that fails.

Conventions the README keeps (and this test enforces):
- A block that cannot run on a CPU-only machine without the network, or that is a setup step CI runs anyway,
  is marked by an HTML comment on the line before its fence, naming why: `<!-- readme-test: skip (network) -->`.
  The reasons are SKIP_REASONS; anything else is an error, so a block is never skipped for convenience.
- A shell block marked `<!-- readme-test: server -->` starts servers, one per line (`alm serve ...`, each on its
  own port: `--port N`, else 8000). The test starts each line in the background, waits until it answers, runs
  the blocks after it against it (the curl and `openai` examples), and stops it with Ctrl+C when its section
  ends: it must exit 0, and no client block may print an API error.
- Python blocks run too (with the environment's python), after the shell blocks before them.
- A YAML block whose first line is a comment naming a file (`# my-corpus.yaml`) is that file's content: the user
  saves it, and so does this test, before the blocks after it run.
- Files a command needs (a prompt file, a folder of texts) are made by an earlier README line.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
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
SERVER_MARKER = re.compile(r"<!--\s*readme-test:\s*server\s*-->")
DEFAULT_PORT = 8000  # `alm serve`'s
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
    section: str = ""  # the heading above it
    server: bool = False  # its lines are servers the blocks after it talk to


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    lines = text.splitlines()
    i, section = 0, ""
    while i < len(lines):
        fence = re.match(r"^```(\w*)\s*$", lines[i])
        if not fence:
            section = lines[i] if lines[i].startswith("#") else section
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.search(before)
        body = "\n".join(lines[i + 1 : end])
        server = bool(SERVER_MARKER.search(before))
        blocks.append(Block(i + 1, fence.group(1), body, marker and marker.group(1), section, server))
        i = end + 1
    return blocks


def test_readme_markers_name_a_known_reason() -> None:
    blocks = readme_blocks(README.read_text(encoding="utf-8"))
    assert sum(b.lang in SHELLS for b in blocks) >= 10
    for block in blocks:
        if block.skip is not None:
            assert block.skip in SKIP_REASONS, f"README.md:{block.line}: unknown skip reason {block.skip!r}"
            assert block.lang in SHELLS, f"README.md:{block.line}: only shell blocks are run (or skipped)"
        if block.server:
            assert block.lang in SHELLS and block.skip is None, (
                f"README.md:{block.line}: a server block is shell"
            )
            assert all(line.startswith("alm serve ") for line in _commands(block)), block.text


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
    cache = {"ALM_CACHE_DIR": os.environ["ALM_CACHE_DIR"]} if "ALM_CACHE_DIR" in os.environ else {}
    return {
        **env,
        **cache,  # the session's built kernels (their first build is tested on its own): ~15 s less
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",  # alm, python3, mlx_lm.*
        "HOME": str(home),
        "ALM_SET": TINY,
        "HF_HUB_OFFLINE": "1",  # nothing in a runnable block may reach the network
        "HF_HOME": str(home / "hf"),
        "COLUMNS": "100",
    }


@dataclass
class Server:
    """A README server line running in the background."""

    command: str
    section: str
    log: Path
    process: subprocess.Popen[bytes] = field(repr=False)


def _commands(block: Block) -> list[str]:
    """The block's command lines (blank lines and whole-line comments dropped)."""
    return [line for line in block.text.splitlines() if line.strip() and not line.lstrip().startswith("#")]


def _port(command: str) -> int:
    found = re.search(r"--port[ =](\d+)", command)
    return int(found.group(1)) if found else DEFAULT_PORT


def _start_server(command: str, section: str, work: Path, env: dict[str, str], log: Path) -> Server:
    """`command` in the background, once it answers on its port (the servers bind 127.0.0.1 only)."""
    port = _port(command)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            pytest.fail(f"port {port} is taken on this machine, and README's `{command}` needs it")
    with log.open("w") as out:  # `exec`: the signal reaches alm itself
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"], cwd=work, env=env, stdout=out, stderr=out
        )
    server = Server(command, section, log, process)
    deadline = time.monotonic() + 180  # an int8 model builds alm's kernels first (~15 s)
    while time.monotonic() < deadline:
        assert process.poll() is None, f"`{command}` exited {process.returncode}\n{log.read_text()[-3000:]}"
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=5) as reply:
                if reply.status == 200:
                    return server
        except OSError:
            time.sleep(0.5)
    _kill(server)
    pytest.fail(f"`{command}` did not answer on port {port} within 180 s\n{log.read_text()[-3000:]}")


def _stop_server(server: Server) -> None:
    """Ctrl+C, as the README says: the server drains and exits 0."""
    server.process.send_signal(signal.SIGINT)
    try:
        code = server.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        _kill(server)
        pytest.fail(
            f"`{server.command}` did not stop within 60 s of Ctrl+C\n{server.log.read_text()[-3000:]}"
        )
    assert code == 0, f"`{server.command}` exited {code} on Ctrl+C\n{server.log.read_text()[-3000:]}"


def _kill(server: Server) -> None:
    if server.process.poll() is None:
        server.process.kill()
        server.process.wait()


API_ERROR = re.compile(r'(?<!\\)"error"\s*:')  # an OpenAI-style error body (a quoted one is model text)


@pytest.mark.slow
def test_readme_runs_as_written(tmp_path: Path) -> None:
    work, home = tmp_path / "work", tmp_path / "home"
    home.mkdir()
    shutil.copytree(REPO / "configs", work / "configs")  # a clone has them (`--model configs/ablations/…`)
    env = _environment(home)
    timings: list[str] = []
    servers: list[Server] = []
    try:
        for block in readme_blocks(README.read_text(encoding="utf-8")):
            for server in [s for s in servers if s.section != block.section]:  # its section ended
                servers.remove(server)
                _stop_server(server)
            if (name := _saved_as(block)) is not None:
                (work / name).write_text(block.text + "\n", encoding="utf-8")
                continue
            if block.skip is not None or block.lang not in (*SHELLS, "python"):
                continue
            start = time.perf_counter()
            if block.server:
                for i, command in enumerate(_commands(block)):
                    log = tmp_path / f"server-{block.line}-{i}.log"
                    servers.append(_start_server(command, block.section, work, env, log))
            else:
                run = [sys.executable, "-c"] if block.lang == "python" else ["bash", "-euo", "pipefail", "-c"]
                _run_block(block, [*run, block.text], work, env, against_server=bool(servers))
            timings.append(f"README.md:{block.line} {time.perf_counter() - start:.0f}s")
        for server in servers:
            _stop_server(server)
    finally:
        for server in servers:
            _kill(server)
    print("\n".join(timings))


def _run_block(block: Block, argv: list[str], work: Path, env: dict[str, str], against_server: bool) -> None:
    proc = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    said = f"{block.text}\n--- stdout (end)\n{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"README.md:{block.line}: the block exits {proc.returncode}\n{said}"
    assert not (against_server and API_ERROR.search(proc.stdout)), (
        f"README.md:{block.line}: an API error\n{said}"
    )
