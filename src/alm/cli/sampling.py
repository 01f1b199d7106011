"""Sampling flags for any command, built from the one spec in `alm.sample.options` (no torch here).

```python
@handle_errors
@sampling_options
def sample(run: RunArgument, sampling: SamplingConfig, ...) -> None: ...
```
The `sampling` parameter is replaced, in the signature Typer reads, by one flag per `SAMPLING_OPTIONS` entry
(their flags, defaults and help come from `SamplingConfig`'s fields); the body receives the validated config, and
a bad value exits 2 naming the flag.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from alm.sample.options import SAMPLING_OPTIONS, Option, sampling_config

F = TypeVar("F", bound=Callable[..., Any])
PARAMETER = "sampling"


def spec_option(opt: Option) -> Any:
    """The typer.Option of one spec entry: `name: Annotated[T, spec_option(OPTION)] = OPTION.default`."""
    if opt.type is bool and len(opt.flags) == 2:  # an on/off switch, spelt the way Typer spells one
        return typer.Option("/".join(opt.flags), help=opt.help)
    return typer.Option(*opt.flags, help=opt.help)


def _annotation(opt: Option) -> Any:
    value_type: Any = opt.type
    if opt.repeatable:
        value_type = list[value_type] | None  # typer collects a repeated option into a list; None when absent
    elif opt.optional:
        value_type = value_type | None
    return Annotated[value_type, spec_option(opt)]


def _cli_default(opt: Option) -> Any:
    return None if opt.repeatable else opt.default


def sampling_options(fn: F) -> F:
    """Replace `fn`'s `sampling: SamplingConfig` parameter by the sampling flags (see the module doc)."""
    signature = inspect.signature(fn, eval_str=True)
    params = list(signature.parameters.values())
    at = [p.name for p in params].index(PARAMETER)
    flags = [
        inspect.Parameter(
            opt.name, inspect.Parameter.KEYWORD_ONLY, default=_cli_default(opt), annotation=_annotation(opt)
        )
        for opt in SAMPLING_OPTIONS
    ]
    rest = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params[at + 1 :]]
    new_params = [*params[:at], *flags, *rest]

    @functools.wraps(fn)
    def command(*args: Any, **kwargs: Any) -> Any:
        values = {opt.name: kwargs.pop(opt.name) for opt in SAMPLING_OPTIONS}
        for opt in SAMPLING_OPTIONS:
            if opt.repeatable:
                values[opt.name] = tuple(values[opt.name] or ())
        kwargs[PARAMETER] = sampling_config(values)
        return fn(*args, **kwargs)

    command.__signature__ = signature.replace(parameters=new_params)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in new_params}
    return command  # type: ignore[return-value]
