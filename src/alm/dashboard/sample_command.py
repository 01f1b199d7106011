"""Parse an `alm sample --prompt "…" [flags]` line typed into the dashboard, with the CLI's own option parser.

The options are not re-declared here: the line is parsed by the click command that `alm sample` itself is built
from, so the names, short flags, types and defaults always match the CLI.
"""

from __future__ import annotations

import shlex
from functools import cache
from pathlib import Path

import typer

from alm.dashboard.sampling import SampleRequest
from alm.errors import UsageError

# `alm sample` parameters that are not SamplingConfig fields, or are named differently there.
_NOT_SAMPLING = ("run", "prompt", "checkpoint", "device", "num_samples")
_FIELD_OF_PARAM = {"max_tokens": "max_new_tokens"}


@cache
def _sample_command():
    """The click command behind `alm sample` (typer vendors click, so it is reached through typer's API)."""
    from alm.cli import sample as sample_cli

    app = typer.Typer()
    sample_cli.register(app)
    return typer.main.get_command(app).commands["sample"]  # type: ignore[attr-defined]


def parse_sample_line(line: str, *, run_dir: Path) -> list[SampleRequest]:
    """One SampleRequest per sample asked for (`--num-samples N` gives N with seeds seed, seed+1, …).

    RUN may be left out (the pane's run is meant); naming another run is an error, as is a missing prompt."""
    from alm.cli.sample import build_sampling_config

    try:
        words = shlex.split(line)
    except ValueError as exc:
        raise UsageError(
            f"cannot parse the command line: {exc}", hint='quote the prompt: --prompt "…"'
        ) from None
    if words[:2] == ["alm", "sample"]:
        words = words[2:]
    elif words[:1] == ["sample"]:
        words = words[1:]
    else:
        raise UsageError(
            "a command line here must start with `alm sample`", hint='e.g. alm sample --prompt "Hi"'
        )
    params = _parse(words, run_dir)
    if params["prompt"] is None:
        raise UsageError("the command line has no --prompt", hint='add --prompt "…"')
    if params["prompt"] == "-":
        raise UsageError(
            "--prompt - reads stdin, which the dashboard does not have", hint="type the prompt instead"
        )
    if params["num_samples"] < 1:
        raise UsageError(f"--num-samples must be at least 1, got {params['num_samples']}")
    options = {
        _FIELD_OF_PARAM.get(name, name): value for name, value in params.items() if name not in _NOT_SAMPLING
    }
    options["stop"] = list(options.get("stop") or [])
    build_sampling_config(**options)  # validate now, with errors that name the option the user typed
    requests = []
    for i in range(params["num_samples"]):
        seed = None if options["seed"] is None else options["seed"] + i
        requests.append(
            SampleRequest(
                prompt=params["prompt"],
                checkpoint=params["checkpoint"],
                device=params["device"],
                options={**options, "seed": seed},
            )
        )
    return requests


def _parse(words: list[str], run_dir: Path) -> dict:
    command = _sample_command()
    try:
        try:
            ctx = command.make_context("alm sample", list(words))
        except typer.BadParameter as exc:  # RUN is the only argument; left out, the pane's run is meant
            if getattr(getattr(exc, "param", None), "name", None) != "run":
                raise
            ctx = command.make_context("alm sample", [str(run_dir), *words])
    except typer.Exit:  # --help
        raise UsageError("`alm sample --help` is shown in a terminal; see the help screen (?) here") from None
    except typer.TyperException as exc:  # click's usage errors (unknown option, bad value)
        raise UsageError(exc.format_message()) from None
    params = dict(ctx.params)
    named = Path(params["run"])
    if named.name != run_dir.name:
        raise UsageError(
            f"this pane samples run {run_dir.name!r}, not {params['run']!r}",
            hint="leave RUN out, or open that run from the runs list",
        )
    return params
