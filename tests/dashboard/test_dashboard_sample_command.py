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
    assert request.checkpoint == "last" and request.options["max_new_tokens"] == 256  # the CLI's defaults
    [request] = parse_sample_line("sample -p x --greedy", run_dir=RUN)
    assert request.options["greedy"] is True


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
        ("alm train --prompt x", "must start with `alm sample`"),
        ("alm sample --prompt x --num-samples 0", "at least 1"),
    ],
)
def test_bad_lines_are_usage_errors_that_name_the_problem(line: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_sample_line(line, run_dir=RUN)
