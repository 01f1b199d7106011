"""`alm sample …` lines typed into the sampling pane are parsed by the CLI's own option parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from alm.dashboard.sample_command import parse_sample_line
from alm.errors import UsageError

RUN = Path("runs/tiny")


def test_parses_cli_options_into_sampling_fields() -> None:
    [request] = parse_sample_line(
        'alm sample --prompt "ROMEO: hi" --temperature 0.5 --top-k 40 --top-p 0.9 -n 12 --seed 3 '
        "--stop '\\n\\n' --checkpoint best --device cpu",
        run_dir=RUN,
    )
    assert request.prompt == "ROMEO: hi"
    assert request.checkpoint == "best" and request.device == "cpu"
    assert request.options["temperature"] == 0.5
    assert request.options["top_k"] == 40 and request.options["top_p"] == 0.9
    assert request.options["max_new_tokens"] == 12
    assert request.options["seed"] == 3
    assert request.options["stop"] == ["\\n\\n"]


def test_defaults_and_run_argument() -> None:
    [request] = parse_sample_line("alm sample tiny --prompt x", run_dir=RUN)
    # The CLI's defaults; no --checkpoint means best.pt when the run has one, else last.pt.
    assert request.checkpoint is None and request.options["max_new_tokens"] == 256
    [request] = parse_sample_line("sample -p x --greedy", run_dir=RUN)
    assert request.options["greedy"] is True


def test_the_panes_own_runs_dir_is_accepted() -> None:
    """A line copied from a terminal (`alm sample tiny --runs-dir runs …`) runs here as written."""
    [request] = parse_sample_line("alm sample tiny --runs-dir runs --prompt x", run_dir=RUN)
    assert request.prompt == "x"


def test_num_samples_gives_consecutive_seeds() -> None:
    requests = parse_sample_line("alm sample --prompt x --num-samples 3 --seed 7", run_dir=RUN)
    assert [r.options["seed"] for r in requests] == [7, 8, 9]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("alm sample --temperature 0.5", "no --prompt"),
        ("alm sample --prompt - ", "stdin"),
        ("alm sample --prompt 'unclosed", "cannot parse"),
        ("alm sample --prompt x --temperature hot", "--temperature"),
        ("alm sample --prompt x --bogus 1", "bogus"),
        ("alm sample --prompt x --top-p 1.5", "--top-p"),
        ("alm sample other-run --prompt x", "this pane samples run 'tiny'"),
        ("alm sample --prompt x --runs-dir elsewhere", "this pane samples runs in runs, not elsewhere"),
        ("alm sample --prompt x --runs-dir=runs", "this pane samples runs in other, not runs"),
        ("alm train --prompt x", "must start with `alm sample`"),
        ("alm sample --prompt x --num-samples 0", "at least 1"),
    ],
)
def test_bad_lines_are_usage_errors_that_name_the_problem(line: str, message: str) -> None:
    run = Path("other/tiny") if "--runs-dir=runs" in line else RUN
    with pytest.raises(UsageError, match=message):
        parse_sample_line(line, run_dir=run)


def test_the_lines_options_come_from_the_sampling_spec_not_from_a_cli_app() -> None:
    [request] = parse_sample_line("alm sample -p x --compile --stop a --stop b --min-p 0.1", run_dir=RUN)
    assert request.compile is True
    assert request.options["stop"] == ["a", "b"] and request.options["min_p"] == 0.1
    with pytest.raises(UsageError, match="did you mean --top-k"):
        parse_sample_line("alm sample -p x --top-kk 3", run_dir=RUN)
