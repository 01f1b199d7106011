"""The "new run" form: model preset or config file, run name, steps and device -> a TrainRequest."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Label, Select, Static

from alm.dashboard.trainer import DEVICES, TrainRequest, model_presets
from alm.errors import AlmError, UsageError


class StartRunScreen(ModalScreen[TrainRequest | None]):
    """Dismisses with a validated TrainRequest, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs_dir: Path, suggested_name: str):
        super().__init__()
        self.runs_dir = runs_dir
        self.suggested_name = suggested_name

    def compose(self) -> ComposeResult:
        with Vertical(id="start-dialog", classes="dialog"):
            yield Label("Start a training run", classes="dialog-title")
            with Grid(id="start-form"):
                yield Label("model")
                presets = model_presets()
                yield Input(
                    "micro",
                    placeholder=f"{', '.join(presets)} or a model .yaml",
                    suggester=SuggestFromList(presets),
                    id="start-model",
                )
                yield Label("run name")
                yield Input(self.suggested_name, id="start-name")
                yield Label("steps")
                yield Input(placeholder="preset default", id="start-steps", type="integer")
                yield Label("train config")
                yield Input(placeholder="preset (micro, default) or .yaml; empty: default", id="start-train")
                yield Label("data")
                yield Input(placeholder="corpus.yaml or data dir; empty: built-in corpus", id="start-data")
                yield Label("device")
                yield Select([(d, d) for d in DEVICES], value="auto", allow_blank=False, id="start-device")
            yield Static("", id="start-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", variant="primary", id="start-ok")
                yield Button("Cancel", id="start-cancel")

    def on_mount(self) -> None:
        self.query_one("#start-model", Input).focus()

    def _text(self, widget_id: str) -> str | None:
        return self.query_one(f"#{widget_id}", Input).value.strip() or None

    def request(self) -> TrainRequest:
        model = self._text("start-model")
        if model is None:
            raise UsageError(
                "model is empty", hint=f"a preset ({', '.join(model_presets())}) or a model .yaml"
            )
        steps_text = self.query_one("#start-steps", Input).value.strip()
        try:
            steps = int(steps_text) if steps_text else None
        except ValueError:
            raise UsageError(f"steps: {steps_text!r} is not a whole number") from None
        request = TrainRequest(
            run=self._text("start-name") or "",
            model=model,
            steps=steps,
            device=str(self.query_one("#start-device", Select).value),
            train=self._text("start-train"),
            data=self._text("start-data"),
        )
        request.validate(self.runs_dir)
        return request

    @on(Button.Pressed, "#start-ok")
    @on(Input.Submitted)
    def submit(self) -> None:
        try:
            request = self.request()
        except AlmError as exc:
            self.query_one("#start-error", Static).update(Text(str(exc), style="red"))
            return
        self.dismiss(request)

    @on(Button.Pressed, "#start-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
