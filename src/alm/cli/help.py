"""How `alm … --help` reads: a placeholder for every value, and examples on every command.

Typer shows a value's Python type where a person expects a placeholder (`--steps <int>`, `--json <bool>`,
`--stop <list[str]>`). `AlmGroup`, the class of the root command, gives each parameter that has no `metavar` of
its own one that says what to type: nothing after a flag, `N` for a whole number, `NUMBER` for a real one, `PATH`
(`DIR` for a `--…-dir`) for a path, and the option's own name for text (`--device DEVICE`); an argument is its
name (`RUN`). A parameter's explicit `metavar` (`KEY=VALUE`, `RUN|CHECKPOINT`) is kept.

Examples live beside each command, as its epilog: `app.command("train", epilog=examples("alm train", …))`.
`tests/core/test_cli_help.py` parses every one with its command's own parser, so they cannot drift from the flags.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperArgument, TyperGroup, TyperOption

EXAMPLES_TITLE = "Examples"


def examples(*lines: str) -> str:
    """A command's "Examples" epilog: one `alm …` command line each, with an optional `# comment`."""
    rows = []
    for line in lines:
        command, sep, comment = line.partition("  # ")
        rows.append(escape(command.rstrip()) + (f"   [dim]# {escape(comment)}[/]" if sep else ""))
    return f"[bold]{EXAMPLES_TITLE}[/]\n" + "\n".join(rows)


class AlmGroup(TyperGroup):
    """The root command: once Typer has built the command tree, every parameter gets its placeholder."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        help_names = self.context_settings.get("help_option_names", ["--help"])
        for command in _commands(self):
            # The help option is made on first use and then kept: make it now, to name its placeholder too.
            help_option = command.get_help_option(typer.Context(command, help_option_names=help_names))
            for param in [*command.params, *([help_option] if help_option else [])]:
                name_placeholders(param)

    def get_params(self, ctx: typer.Context) -> list[Any]:
        # The root's own options include those Typer appends after construction (--install-completion, …).
        params = super().get_params(ctx)
        for param in params:
            name_placeholders(param)
        return params


def _commands(group: TyperGroup) -> list[Any]:
    found = []
    for command in group.commands.values():
        found.append(command)
        if isinstance(command, TyperGroup):
            found.extend(_commands(command))
    return found


def name_placeholders(param: Any) -> None:
    """Set the placeholder of one parameter (see the module docstring); an explicit metavar is kept."""
    if isinstance(param, TyperArgument):
        if param.metavar is None:
            param.metavar = param.name.upper() if param.name else "VALUE"
        # The name is the placeholder: the type column (`<str>`, `<list[str]>`) would only repeat it.
        setattr(param, "display_type_rich", _no_type)  # noqa: B010  (an instance override, not a constant)
    elif isinstance(param, TyperOption) and param.metavar is None:
        param.metavar = "" if param.is_flag else _placeholder(param)


def _no_type(ctx: Any) -> None:
    return None


def _placeholder(option: TyperOption) -> str:
    annotation = option.type_descriptor.annotation
    args = getattr(annotation, "__args__", ())
    if (
        getattr(annotation, "__origin__", None) is list and args
    ):  # a repeatable option: one value's placeholder
        annotation = args[0]
    long_name = next((o for o in option.opts if o.startswith("--")), option.opts[0]).lstrip("-")
    if annotation is int:
        return "N"
    if annotation is float:
        return "NUMBER"
    if isinstance(annotation, type) and issubclass(annotation, PurePath):
        return "DIR" if long_name.endswith("dir") else "PATH"
    return long_name.upper().replace("-", "_")


__all__ = ["EXAMPLES_TITLE", "AlmGroup", "examples", "name_placeholders"]
