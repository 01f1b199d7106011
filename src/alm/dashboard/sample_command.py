"""`alm sample` command lines in the dashboard: parse one typed into the prompt box, and write the one a request
stands for (shown under the knobs, so what runs is always visible and can be pasted into a terminal).

The options are not declared here: they are `alm sample`'s, from the one spec in `alm.sample.options` (the same
records the CLI builds its flags from), so names, short flags, types and defaults always match the CLI. A typed
line starts from the knobs' values (`defaults`) and its flags override them: the precedence is flags > knobs.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from alm.dashboard.sampling import SampleRequest
from alm.errors import UsageError
from alm.sample.options import (
    CHECKPOINT,
    COMMAND_OPTIONS,
    DEVICE,
    NUM_SAMPLES,
    PROMPT,
    QUANTIZE,
    RUNS_DIR,
    SAMPLING_OPTIONS,
    Option,
    check_num_samples,
    parse_options,
    sampling_config,
)


def parse_sample_line(
    line: str, *, run_dir: Path, defaults: Mapping[str, Any] | None = None
) -> list[SampleRequest]:
    """One SampleRequest per sample asked for (`--num-samples N` gives N with seeds seed, seed+1, …).

    Options the line does not give take `defaults` (the knobs, by option name), else the CLI's defaults. RUN may
    be left out (the pane's run is meant); naming another run is an error, as is a missing prompt."""
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
    if "--help" in words or "-h" in words:
        raise UsageError("`alm sample --help` is shown in a terminal; see the help screen (?) here")
    # --runs-dir defaults to None here: a line that names no runs dir means the pane's own.
    knobs = {**(defaults or {}), RUNS_DIR.name: None}
    spec = [_with_default(opt, knobs) for opt in (*SAMPLING_OPTIONS, *COMMAND_OPTIONS)]
    positional, values = parse_options(words, spec)
    for opt in spec:  # a repeatable option the line does not give keeps its knob value
        if opt.repeatable and values[opt.name] == () and opt.default:
            values[opt.name] = tuple(opt.default)
    _check_run(positional, run_dir)
    runs_dir = values[RUNS_DIR.name]
    if runs_dir is not None and Path(runs_dir).resolve() != run_dir.parent.resolve():
        raise UsageError(
            f"this pane samples runs in {run_dir.parent}, not {runs_dir}",
            hint="leave --runs-dir out, or start the dashboard with that --runs-dir",
        )
    prompt = values[PROMPT.name]
    if prompt is None:
        raise UsageError("the command line has no --prompt", hint='add --prompt "…"')
    if prompt == "-":
        raise UsageError(
            "--prompt - reads stdin, which the dashboard does not have", hint="type the prompt instead"
        )
    count = check_num_samples(values[NUM_SAMPLES.name])
    options = {opt.name: values[opt.name] for opt in SAMPLING_OPTIONS}
    options["stop"] = list(options["stop"])  # plain data, like every other option value
    sampling_config(options)  # validate now, with errors that name the option the user typed
    return [
        SampleRequest(
            prompt=prompt,
            checkpoint=values["checkpoint"],
            device=values["device"],
            options={**options, "seed": None if options["seed"] is None else options["seed"] + i},
            compile=values["compile"],
            quantize=values["quantize"],
        )
        for i in range(count)
    ]


def _check_run(positional: list[str], run_dir: Path) -> None:
    """RUN is the only positional word, and it must be this pane's run."""
    if len(positional) > 1:
        raise UsageError(
            f"unexpected words: {' '.join(positional[1:])}", hint='quote the prompt: --prompt "…"'
        )
    if positional and Path(positional[0]).name != run_dir.name:
        raise UsageError(
            f"this pane samples run {run_dir.name!r}, not {positional[0]!r}",
            hint="leave RUN out, or open that run from the runs list",
        )


def _with_default(opt: Option, defaults: Mapping[str, Any]) -> Option:
    if opt.name not in defaults:
        return opt
    return dataclasses.replace(opt, default=defaults[opt.name])


def command_line(run: str, request: SampleRequest, num_samples: int = 1) -> str:
    """`alm sample RUN --prompt … [flags]` for `request`: the options that differ from the CLI's defaults."""
    words = ["alm", "sample", run, PROMPT.flag, request.prompt]
    given: list[tuple[Option, Any]] = [
        (CHECKPOINT, request.checkpoint),
        (DEVICE, request.device),
        (QUANTIZE, request.quantize),
        (NUM_SAMPLES, num_samples),
        *((opt, request.options.get(opt.name, opt.default)) for opt in SAMPLING_OPTIONS),
    ]
    for opt, value in given:
        if opt.repeatable:
            for item in value or ():
                words += [opt.flag, str(item)]
        elif opt.type is bool:
            if value and not opt.default:
                words.append(opt.flag)
        elif value is not None and value != opt.default:
            words += [opt.flag, str(value)]
    if request.compile:
        words.append("--compile")
    return shlex.join(words)
