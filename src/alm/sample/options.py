"""The sampling options, declared once: `SamplingConfig`'s fields carry each option's flag, default, help and
dashboard label, and `validate()` its rules.

Every front end builds its form from `SAMPLING_OPTIONS`: `alm sample`'s flags (`alm.cli.sampling`), the dashboard's
sampling knobs and the `alm sample …` command line it accepts (`alm.dashboard.sample_command`), and the server's
request fields. No torch here: the CLI builds its flags when it starts.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast, get_args, get_type_hints

from alm.config import from_dict, require
from alm.errors import ConfigError, UsageError


def _option(default: Any, *flags: str, help: str, knob: str | None = None) -> Any:
    """A SamplingConfig field that is also a command-line option (and a dashboard knob when `knob` names it)."""
    return field(default=default, metadata={"flags": flags, "help": help, "knob": knob})


@dataclass
class SamplingConfig:
    """How to pick each next token. The processors apply in the order of the fields below."""

    repetition_penalty: float = _option(
        1.0, "--repetition-penalty", help="Penalise tokens already present (>0); 1 is off."
    )
    temperature: float = _option(
        0.8, "--temperature", help="Softmax temperature; 0 means greedy.", knob="temp"
    )
    top_k: int = _option(
        0, "--top-k", help="Keep the k most likely tokens; 0 turns it off (not greedy).", knob="top-k"
    )
    top_p: float = _option(
        1.0, "--top-p", help="Nucleus sampling mass in (0, 1]; 1 turns it off.", knob="top-p"
    )
    min_p: float = _option(0.0, "--min-p", help="Drop tokens below min_p × the top probability; 0 is off.")
    greedy: bool = _option(False, "--greedy", help="Always take the most likely token.")
    max_new_tokens: int = _option(256, "--max-tokens", "-n", help="New tokens per sample.", knob="max tokens")
    stop: tuple[str, ...] = _option(
        (), "--stop", help="Stop when this text appears (repeatable); not printed."
    )
    seed: int | None = _option(None, "--seed", help="Random seed; a fixed seed reproduces the sample.")
    ignore_eos: bool = _option(
        False, "--ignore-eos", help="Keep going past the end of a document (shown as a blank line)."
    )

    def __post_init__(self) -> None:
        self.stop = tuple(self.stop)
        self.validate()

    def validate(self) -> None:
        require(
            self.temperature >= 0, "temperature", f"must be >= 0 (0 means greedy), got {self.temperature}"
        )
        require(self.top_k >= 0, "top_k", f"must be >= 0 (0 turns top-k off), got {self.top_k}")
        require(0 < self.top_p <= 1, "top_p", f"must be in (0, 1] (1 turns top-p off), got {self.top_p}")
        require(0 <= self.min_p < 1, "min_p", f"must be in [0, 1) (0 turns min-p off), got {self.min_p}")
        require(
            self.repetition_penalty > 0,
            "repetition_penalty",
            f"must be > 0 (1 turns it off), got {self.repetition_penalty}",
        )
        require(self.max_new_tokens >= 0, "max_new_tokens", f"must be >= 0, got {self.max_new_tokens}")
        require(all(self.stop), "stop", "stop strings must not be empty")

    @property
    def is_greedy(self) -> bool:
        return self.greedy or self.temperature == 0

    def replace(self, **changes: object) -> SamplingConfig:
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def per_sample(self, n: int) -> list[SamplingConfig]:
        """One config per sample of a batch (`--num-samples`, the server's `n`): a fixed seed becomes seed,
        seed+1, … so the samples differ yet a seed reproduces them all."""
        return [self.replace(seed=None if self.seed is None else self.seed + i) for i in range(n)]


@dataclass(frozen=True)
class Option:
    """One option as every front end spells it."""

    name: str  # the SamplingConfig field (or the request field) it sets
    flags: tuple[str, ...]  # long flag first, then a short one
    help: str
    type: type  # of one value: int, float, str or bool (a flag)
    default: Any
    optional: bool = False  # None is a value (e.g. no seed)
    repeatable: bool = False  # given several times, it collects a tuple
    knob: str | None = None  # the dashboard's label, when the sampling pane shows it as a knob

    @property
    def flag(self) -> str:
        return self.flags[0]


def _from_field(f: dataclasses.Field, hint: Any) -> Option:
    args = [a for a in get_args(hint) if a is not type(None) and a is not Ellipsis]
    repeatable = getattr(hint, "__origin__", None) is tuple
    optional = isinstance(hint, types.UnionType) and type(None) in get_args(hint)
    value_type = cast(type, args[0] if args else hint)
    meta = f.metadata
    return Option(
        f.name, meta["flags"], meta["help"], value_type, f.default, optional, repeatable, meta["knob"]
    )


_HINTS = get_type_hints(SamplingConfig)
SAMPLING_OPTIONS: tuple[Option, ...] = tuple(
    _from_field(f, _HINTS[f.name]) for f in dataclasses.fields(SamplingConfig)
)
# How many sequences to draw from one prompt (decoded together as one batch): `alm sample`, the server's `n`.
NUM_SAMPLES = Option(
    "num_samples", ("--num-samples",), "How many samples to draw (decoded as one batch).", int, 1
)
# The rest of an `alm sample` command line, which the dashboard's prompt box accepts too.
PROMPT = Option(
    "prompt",
    ("--prompt", "-p"),
    "Text to continue; '-' reads stdin. Omit on a terminal to chat.",
    str,
    None,
    optional=True,
)
CHECKPOINT = Option(
    "checkpoint",
    ("--checkpoint", "-c"),
    "Which checkpoint of the run: best, last, step-N or N; default best (lowest val loss) when the run has one, "
    "else last.",
    str,
    None,
    optional=True,
)
DEVICE = Option("device", ("--device",), "auto (mps > cuda > cpu), cpu, cuda, cuda:N or mps.", str, "auto")
COMPILE = Option(
    "compile",
    ("--compile", "--no-compile"),
    "Compile the decode step (AOTInductor on a CPU, CUDA graphs on CUDA). Pays off on long runs: compiling takes "
    "about a minute on a CPU.",
    bool,
    False,
)
# Weights as loaded for generation (`alm.model.quant`): `alm sample`, `alm chat`, `alm serve`, the dashboard.
QUANTIZE = Option(
    "quantize",
    ("--quantize",),
    "int8: weight-only int8 linear layers (a quarter of the weight memory; alm.model.quant).",
    str,
    None,
    optional=True,
)
RUNS_DIR = Option("runs_dir", ("--runs-dir",), "Where runs live: RUN is a name under it.", str, "runs")
COMMAND_OPTIONS: tuple[Option, ...] = (PROMPT, NUM_SAMPLES, COMPILE, CHECKPOINT, DEVICE, QUANTIZE, RUNS_DIR)


def option(name: str) -> Option:
    for opt in (*SAMPLING_OPTIONS, *COMMAND_OPTIONS):
        if opt.name == name:
            return opt
    raise KeyError(name)


def knobs() -> tuple[Option, ...]:
    """The options the dashboard shows as knobs, in declaration order."""
    return tuple(opt for opt in SAMPLING_OPTIONS if opt.knob)


def sampling_config(values: Mapping[str, Any]) -> SamplingConfig:
    """A validated SamplingConfig from option values keyed by field; a bad value is a UsageError (exit 2) that
    names the flag the user typed."""
    try:
        return from_dict(SamplingConfig, values)
    except ConfigError as exc:
        flag = option(exc.key).flag if exc.key in _HINTS else exc.key
        raise UsageError(f"{flag}: {exc.detail}", hint=exc.hint) from None


def check_num_samples(n: int) -> int:
    if n < 1:
        raise UsageError(f"{NUM_SAMPLES.flag} must be at least 1, got {n}")
    return n


def parse_options(words: Sequence[str], options: Sequence[Option]) -> tuple[list[str], dict[str, Any]]:
    """(positional words, {name: value}) from command-line words, the way `alm sample` reads them: `--flag V`,
    `--flag=V`, `-n V`, `-nV`, switches (`--greedy`; `--no-compile` for a two-flag switch), repeatable options
    collected into a tuple, `--` ending the options. Options not given keep their defaults."""
    by_flag: dict[str, tuple[Option, bool]] = {}
    for opt in options:
        for i, flag in enumerate(opt.flags):
            by_flag[flag] = (opt, not (opt.type is bool and i == 1))  # a switch's second flag turns it off
    values: dict[str, Any] = {opt.name: () if opt.repeatable else opt.default for opt in options}
    positional: list[str] = []
    rest = list(words)
    while rest:
        word = rest.pop(0)
        if word == "--":
            positional += rest
            break
        if not word.startswith("-") or word == "-":
            positional.append(word)
            continue
        flag, attached = _split_flag(word, by_flag)
        opt, on = by_flag[flag]
        if opt.type is bool:
            if attached is not None:
                raise UsageError(f"{flag} is a switch and takes no value")
            values[opt.name] = on
            continue
        if attached is None:
            if not rest:
                raise UsageError(f"{flag} needs a value")
            attached = rest.pop(0)
        value = _convert(opt, flag, attached)
        values[opt.name] = (*values[opt.name], value) if opt.repeatable else value
    return positional, values


def _split_flag(word: str, by_flag: Mapping[str, tuple[Option, bool]]) -> tuple[str, str | None]:
    if word.startswith("--"):
        flag, eq, value = word.partition("=")
        attached = value if eq else None
    else:  # a short flag, its value possibly attached: -n12
        flag, attached = word[:2], (word[2:] or None)
    if flag not in by_flag:
        close = difflib.get_close_matches(flag, list(by_flag), n=1)
        raise UsageError(f"no such option: {flag}", hint=f"did you mean {close[0]}?" if close else None)
    return flag, attached


def _convert(opt: Option, flag: str, text: str) -> Any:
    try:
        return opt.type(text)
    except ValueError:
        raise UsageError(f"{flag}: {text!r} is not a valid {opt.type.__name__}") from None
