"""`alm … --help` as a new user reads it: examples on every command that parse with that command's own parser,
placeholders instead of Python types, one meaning per short flag, a `--set` example each command accepts, and
shell completion of commands, options, run names and presets."""

from __future__ import annotations

import dataclasses
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from rich.text import Text
from typer.core import TyperGroup, TyperOption
from typer.main import get_command
from typer.testing import CliRunner

from alm.cli.app import app
from alm.cli.help import EXAMPLES_TITLE

runner = CliRunner()
ROOT = get_command(app)
ALM = [sys.executable, "-m", "alm"]


def _leaves(group: Any = ROOT, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, TyperGroup):
            found += _leaves(command, (*path, name))
        else:
            found.append(((*path, name), command))
    return found


LEAVES = _leaves()
IDS = [" ".join(path) for path, _ in LEAVES]


def _help(path: tuple[str, ...]) -> str:
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _examples(command: Any) -> list[str]:
    plain = Text.from_markup(command.epilog or "").plain
    title, _, body = plain.partition("\n")
    assert title == EXAMPLES_TITLE, f"no {EXAMPLES_TITLE} epilog"
    return [line for line in body.splitlines() if line.strip()]


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=IDS)
def test_every_example_parses_with_its_own_command(path: tuple[str, ...], command: Any) -> None:
    examples = _examples(command)
    assert examples, "a command without examples"
    for line in examples:
        words = shlex.split(line, comments=True)
        assert words[0] == "alm", line
        words = words[1:]
        target = ROOT
        while isinstance(target, TyperGroup) and words and words[0] in target.commands:
            target = target.commands[words.pop(0)]
        assert target is command, f"{line!r} is not an example of alm {' '.join(path)}"
        if ">" in words:  # a shell redirection after the command (`alm runs config demo > demo.yaml`)
            words = words[: words.index(">")]
        command.make_context(path[-1], words)  # raises on an unknown flag, a bad value or a missing argument


def test_placeholders_never_show_python_types_and_help_has_no_stray_markup() -> None:
    types = re.compile(r"<(bool|str|int|float|path|list\[[^>]*\])>")
    for path, _ in [((), ROOT), *LEAVES, (("data",), None), (("bench",), None)]:
        text = _help(path)
        assert not types.search(text), f"alm {' '.join(path)} --help: {types.search(text)}"
        # A help text's "[default: …]" is Rich markup that vanishes and leaves "word ." behind.
        assert not re.search(r"\w \.(\s|$)", text), f"alm {' '.join(path)} --help has a stray ' .'"
    assert "--steps N " in re.sub(r"\s+", " ", _help(("bench", "train")))
    assert "--config PATH" in re.sub(r"\s+", " ", _help(("pack",)))


def test_every_summary_is_one_line() -> None:
    """The first paragraph of a command's help is its line in the parent's command list: Rich keeps its line
    breaks, so a summary wrapped in the docstring reads as a ragged two-line entry in `alm --help`."""
    groups = [command for _, command in _leaves_and_groups()]
    wrapped = [c.name for c in groups if "\n" in (c.help or "").strip().split("\n\n")[0]]
    assert not wrapped, wrapped


def _leaves_and_groups(group: Any = ROOT) -> list[tuple[str, Any]]:
    found = []
    for name, command in group.commands.items():
        found.append((name, command))
        if isinstance(command, TyperGroup):
            found += _leaves_and_groups(command)
    return found


def test_one_meaning_per_short_flag() -> None:
    meaning: dict[str, set[str]] = {}
    for _, command in LEAVES:
        for param in command.params:
            if isinstance(param, TyperOption):
                longs = [o for o in param.opts if o.startswith("--")]
                for short in (o for o in param.opts if not o.startswith("--")):
                    meaning.setdefault(short, set()).update(longs)
    mixed = {short: longs for short, longs in meaning.items() if len(longs) > 1}
    assert not mixed, mixed
    assert (
        meaning["-c"] == {"--checkpoint"}
        and meaning["-t"] == {"--train"}
        and meaning["-b"] == {"--batch-size"}
    )


def test_batch_size_is_one_spelling_and_the_old_bench_flag_still_parses() -> None:
    bench_train = ROOT.commands["bench"].commands["train"]
    ctx = bench_train.make_context(
        "train", ["--batch", "3"]
    )  # documented in docs/BENCHMARKS.md: kept, hidden
    assert ctx.params["batch"] == 3
    assert "--batch " not in _help(("bench", "train")).replace("--batch-size", "")


def _field(cls: Any, dotted: str) -> bool:
    """Whether `dotted` names a field of dataclass `cls` (through nested dataclasses)."""
    from typing import get_type_hints

    for part in dotted.split("."):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)) or part not in get_type_hints(cls):
            return False
        cls = get_type_hints(cls)[part]
    return True


def test_each_set_example_is_a_key_that_command_reads() -> None:
    from typing import get_type_hints

    from alm.train.run_config import RESUME_SAFE_TRAIN_KEYS, RunConfig

    sections = get_type_hints(RunConfig)
    expected = {
        "model info": "model",
        "bench train": "model",
        "bench sample": "model",
        "data prepare": "data",
        "tokenizer train": "data",
        "pack": "data",
        "eval": "data",
        "sft": "train",
        "dpo": "train",
        "resume": "train",
    }
    checked = 0
    for path, command in LEAVES:
        if not any(isinstance(p, TyperOption) and "--set" in p.opts for p in command.params):
            continue
        found = re.search(r"--set (\S+)=", re.sub(r"\s*│\s*", " ", _help(path)))
        assert found, f"alm {' '.join(path)}: no --set example"
        section, _, key = found.group(1).partition(".")
        name = " ".join(path)
        assert section == expected.get(name, section), f"alm {name}: --set {found.group(1)}"
        assert section in sections and _field(sections[section], key), found.group(1)
        if name == "resume":
            assert key in RESUME_SAFE_TRAIN_KEYS
        checked += 1
    assert checked >= 12


def test_sample_and_eval_take_runs_dir_like_train(tmp_path: Path) -> None:
    for args in (["sample", "nope", "--prompt", "x"], ["eval", "nope"]):
        result = runner.invoke(app, [*args, "--runs-dir", str(tmp_path)])
        assert result.exit_code == 2, result.output
        assert f"under {tmp_path}/" in result.output


# ------------------------------------------------------------------------------------------------ completion


def _complete(words: str, cwd: Path, **env: str) -> list[str]:
    """What bash would offer for the last word of `words` (Typer's `_ALM_COMPLETE=complete_bash` protocol)."""
    cword = len(shlex.split(words)) - (0 if words.endswith(" ") else 1)
    proc = subprocess.run(
        ALM,
        env={
            **os.environ,
            "_ALM_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(cword),
            **env,
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


def _fake_run(root: Path, name: str) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "config.yaml").write_text("model: {}\n")


@pytest.mark.slow
def test_completion_of_commands_options_runs_and_presets(tmp_path: Path) -> None:
    _fake_run(tmp_path / "runs", "alpha")
    _fake_run(tmp_path / "runs", "beta")
    _fake_run(tmp_path / "elsewhere", "gamma")
    (tmp_path / "runs" / "not-a-run").mkdir()
    assert "train" in _complete("alm tr", tmp_path)
    assert _complete("alm train --mo", tmp_path) == ["--model"]
    assert _complete("alm train --model p", tmp_path) == ["pico"]
    assert set(_complete("alm train --train ", tmp_path)) >= {"micro", "default"}
    assert set(_complete("alm sample ", tmp_path)) == {"alpha", "beta"}
    assert _complete("alm resume b", tmp_path) == ["beta"]
    assert set(_complete("alm runs compare alpha ", tmp_path)) == {"alpha", "beta"}
    assert _complete("alm eval --runs-dir elsewhere ", tmp_path) == ["gamma"]


@pytest.mark.slow
def test_show_and_install_completion(tmp_path: Path) -> None:
    # The shell named on the command line (detection off), and the shell alm runs under (detected).
    proc = subprocess.run(
        [*ALM, "--show-completion", "bash"],
        env={**os.environ, "_TYPER_COMPLETE_TEST_DISABLE_SHELL_DETECTION": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "_ALM_COMPLETE=complete_bash" in proc.stdout
        and "complete -o default -F _alm_completion alm" in proc.stdout
    )
    command = " ".join(shlex.quote(w) for w in ALM)
    proc = subprocess.run(
        ["bash", "-c", f"{command} --show-completion"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "_ALM_COMPLETE=complete_bash" in proc.stdout, proc.stderr
    home = tmp_path / "home"
    home.mkdir()
    proc = subprocess.run(
        ["bash", "-c", f"{command} --install-completion"],
        env={**os.environ, "HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "_ALM_COMPLETE" in "".join(p.read_text() for p in home.rglob("*") if p.is_file())
