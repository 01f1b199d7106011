"""One sampling-options spec: `alm sample`'s flags, the dashboard's command line and knobs are all built from it."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import typer

from alm.cli.app import app
from alm.errors import UsageError
from alm.sample.options import (
    COMMAND_OPTIONS,
    SAMPLING_OPTIONS,
    SamplingConfig,
    knobs,
    option,
    parse_options,
    sampling_config,
)


def sample_command():
    return typer.main.get_command(app).commands["sample"]  # type: ignore[attr-defined]


def test_every_sampling_field_is_an_option_with_a_flag_and_help():
    assert [opt.name for opt in SAMPLING_OPTIONS] == [f.name for f in dataclasses.fields(SamplingConfig)]
    for opt in SAMPLING_OPTIONS:
        assert opt.flag.startswith("--") and opt.help
        assert opt.default == getattr(SamplingConfig(), opt.name)
    assert option("max_new_tokens").flags == ("--max-tokens", "-n")
    assert option("stop").repeatable and option("seed").optional


def test_alm_sample_has_exactly_the_spec_flags_with_the_spec_defaults():
    params = {p.name: p for p in sample_command().params if p.name != "run"}
    assert set(params) == {opt.name for opt in (*SAMPLING_OPTIONS, *COMMAND_OPTIONS)}
    for opt in (*SAMPLING_OPTIONS, *COMMAND_OPTIONS):
        param = params[opt.name]
        assert (*param.opts, *param.secondary_opts) == opt.flags or set(param.opts) == set(opt.flags), (
            opt.name
        )
        assert param.default == (None if opt.repeatable else opt.default), opt.name
        assert param.help == opt.help, opt.name


def test_the_dashboard_command_line_reads_every_alm_sample_flag():
    sample_values = {int: "3", float: "0.5", str: "x", bool: None}
    everything = (*SAMPLING_OPTIONS, *COMMAND_OPTIONS)
    for param in sample_command().params:
        for flag in (*param.opts, *param.secondary_opts):
            if not flag.startswith("-"):
                continue  # RUN
            opt = next(o for o in everything if flag in o.flags)
            value = sample_values[opt.type]
            _, values = parse_options([flag] if value is None else [flag, value], everything)
            assert values[opt.name] != (() if opt.repeatable else opt.default) or opt.type is bool, flag


def test_parse_options_reads_the_cli_spellings():
    everything = (*SAMPLING_OPTIONS, *COMMAND_OPTIONS)
    positional, values = parse_options(
        ["tiny", "-n12", "--top-k=40", "--stop", "a", "--stop=b", "--greedy", "--no-compile", "--", "-x"],
        everything,
    )
    assert positional == ["tiny", "-x"]
    assert values["max_new_tokens"] == 12 and values["top_k"] == 40 and values["stop"] == ("a", "b")
    assert values["greedy"] is True and values["compile"] is False and values["temperature"] == 0.8
    with pytest.raises(UsageError, match="no such option: --temprature") as err:
        parse_options(["--temprature", "1"], everything)
    assert err.value.hint == "did you mean --temperature?"
    with pytest.raises(UsageError, match="--seed needs a value"):
        parse_options(["--seed"], everything)
    with pytest.raises(UsageError, match="--greedy is a switch"):
        parse_options(["--greedy=yes"], everything)


def test_a_bad_value_names_the_flag_the_user_typed():
    with pytest.raises(UsageError, match="--max-tokens: must be >= 0"):
        sampling_config({"max_new_tokens": -1})
    with pytest.raises(UsageError, match="--top-p"):
        sampling_config({"top_p": 0})


def test_the_spec_needs_no_torch_and_the_dashboard_no_cli():
    code = (
        "import sys, alm.sample.options; assert 'torch' not in sys.modules, 'torch'\n"
        "import alm.dashboard.sample_command\n"
        "assert not [m for m in sys.modules if m.startswith('alm.cli')], 'the dashboard imported alm.cli'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


async def test_the_dashboard_knobs_start_at_the_cli_defaults(tmp_path):
    from textual.app import App
    from textual.widgets import Input

    from alm.dashboard.widgets.sample_pane import SamplePane

    class PaneApp(App):
        def compose(self):
            yield SamplePane(tmp_path)

    async with PaneApp().run_test() as pilot:
        await pilot.pause()
        pane = pilot.app.query_one(SamplePane)
        shown = {opt.name: pane.query_one(f"#sample-{opt.flag.lstrip('-')}", Input).value for opt in knobs()}
    assert (
        shown["max_new_tokens"] == "256" == str(SamplingConfig().max_new_tokens)
    )  # one default, CLI and TUI
    assert shown == {opt.name: str(opt.default) for opt in knobs()}
