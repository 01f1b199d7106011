"""Sampling knobs: one control per option of `alm sample`, built from the one spec (`alm.sample.options`), with
the CLI's defaults, plus the checkpoint and device to sample on. Numbers are free text checked when used, so a
mistyped value is an error that names its knob, never silently dropped characters."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal
from textual.widgets import Checkbox, Input, Label, Select

from alm.dashboard.request import DEVICES
from alm.dashboard.sampling import checkpoint_choices, default_checkpoint
from alm.errors import UsageError
from alm.sample.options import Option

NO_CHECKPOINT = "none"  # the checkpoint Select's value while the run has no checkpoint yet


class Tick(Checkbox):
    """A checkbox showing ✓ when on and nothing when off (the stock X reads as "on" in either state)."""

    BUTTON_INNER = " "

    def watch_value(self) -> None:
        self.BUTTON_INNER = "✓" if self.value else " "
        super().watch_value()


def knob_label(opt: Option) -> str:
    """The spec's dashboard label, else the flag without its dashes: --repetition-penalty → repetition-penalty."""
    return opt.knob or opt.flag.lstrip("-")


class SamplingKnobs(Grid):
    """The knobs of `options` (spec entries) in a grid that reflows with the terminal's width."""

    def __init__(self, run_dir: Path, options: Sequence[Option], *, prefix: str, id: str | None = None):
        super().__init__(id=id, classes="knobs")
        self.run_dir = run_dir
        self.options = tuple(options)
        self.prefix = prefix
        self._choices: list[str] = []

    def knob_id(self, opt: Option) -> str:
        """The knob's widget id, after the option's flag: --max-tokens -> sample-max-tokens."""
        return f"{self.prefix}-{opt.flag.lstrip('-')}"

    def compose(self) -> ComposeResult:
        with Horizontal(classes="knob"):
            yield Label("checkpoint")
            yield Select(
                [("no checkpoint yet", NO_CHECKPOINT)],
                value=NO_CHECKPOINT,
                allow_blank=False,
                id=f"{self.prefix}-checkpoint",
                compact=True,
            )
        for opt in self.options:
            with Horizontal(classes="knob"):
                if opt.type is bool:
                    yield Tick(knob_label(opt), bool(opt.default), id=self.knob_id(opt), compact=True)
                else:
                    # What an empty box means: no seed draws a random one; no stop string or quantize is none.
                    empty = "random" if opt.optional and opt.type is int else "none"
                    placeholder = empty if opt.optional or opt.repeatable else ""
                    yield Label(knob_label(opt))
                    yield Input(
                        _text(opt, opt.default), placeholder=placeholder, id=self.knob_id(opt), compact=True
                    )
        with Horizontal(classes="knob"):
            yield Label("device")
            yield Select(
                [(d, d) for d in DEVICES],
                value="auto",
                allow_blank=False,
                id=f"{self.prefix}-device",
                compact=True,
            )

    def on_mount(self) -> None:
        self.refresh_checkpoints()

    # --- checkpoint -------------------------------------------------------------------------------------------
    def refresh_checkpoints(self) -> None:
        """Offer the checkpoints now on disk, keeping the current choice when it still exists; the first choice
        is what `alm sample` takes by default (best, else last)."""
        select = self.query_one(f"#{self.prefix}-checkpoint", Select)
        choices = checkpoint_choices(self.run_dir)
        if choices == self._choices:
            return
        current = select.value
        self._choices = choices
        if not choices:
            select.set_options([("no checkpoint yet", NO_CHECKPOINT)])
            select.value = NO_CHECKPOINT
            return
        select.set_options([(c, c) for c in choices])
        select.value = current if current in choices else default_checkpoint(choices)

    @property
    def checkpoint(self) -> str:
        value = self.query_one(f"#{self.prefix}-checkpoint", Select).value
        if value in (NO_CHECKPOINT, Select.NULL):
            raise UsageError("this run has no checkpoint yet", hint="wait for the first checkpoint event")
        return str(value)

    @property
    def device(self) -> str:
        return str(self.query_one(f"#{self.prefix}-device", Select).value)

    # --- values -----------------------------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """{option name: value} from the knobs; a bad entry is a UsageError naming its knob."""
        return {opt.name: self._value(opt) for opt in self.options}

    def _value(self, opt: Option) -> Any:
        widget = self.query_one(f"#{self.knob_id(opt)}")
        if isinstance(widget, Checkbox):
            return widget.value
        assert isinstance(widget, Input)
        raw = widget.value.strip()
        if opt.repeatable:
            try:
                return [opt.type(word) for word in shlex.split(raw)]
            except ValueError as exc:
                raise UsageError(f"{knob_label(opt)}: cannot split {raw!r}: {exc}") from None
        if not raw and opt.optional:
            return None
        try:
            return opt.type(raw)
        except ValueError:
            kind = "whole number" if opt.type is int else "number" if opt.type is float else opt.type.__name__
            example = "" if opt.optional else f" (the default is {opt.default})"
            raise UsageError(f"{knob_label(opt)}: {raw!r} is not a {kind}{example}") from None

    def set_values(
        self, values: dict[str, Any], *, checkpoint: str | None = None, device: str | None = None
    ) -> None:
        """Show `values` (e.g. what a typed command line used) in the knobs."""
        for opt in self.options:
            if opt.name not in values:
                continue
            widget = self.query_one(f"#{self.knob_id(opt)}")
            if isinstance(widget, Checkbox):
                widget.value = bool(values[opt.name])
            elif isinstance(widget, Input):
                widget.value = _text(opt, values[opt.name])
        if checkpoint is not None and checkpoint in self._choices:
            self.query_one(f"#{self.prefix}-checkpoint", Select).value = checkpoint
        if device is not None and device in DEVICES:
            self.query_one(f"#{self.prefix}-device", Select).value = device


def _text(opt: Option, value: Any) -> str:
    if value is None:
        return ""
    if opt.repeatable:
        return shlex.join(str(v) for v in value)
    return str(value)
