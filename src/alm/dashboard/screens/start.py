"""The "new run" form: model preset or config file, run name, steps and device -> a TrainRequest."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Select, Static

from alm.dashboard.trainer import DEVICES, MODEL_PRESETS, TrainRequest
from alm.errors import AlmError, UsageError

CUSTOM = "config file…"


class StartRunScreen(ModalScreen[TrainRequest | None]):
    """Dismisses with a validated TrainRequest, or None when cancelled."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, runs_dir: Path, suggested_name: str):
        super().__init__()
        self.runs_dir = runs_dir
        self.suggested_name = suggested_name

    def compose(self) -> ComposeResult:
        with Vertical(id="start-dialog", classes="dialog"):
            yield Label("Start a training run", classes="dialog-title")
            with Grid(id="start-form"):
                yield Label("model")
                yield Select(
                    [(p, p) for p in (*MODEL_PRESETS, CUSTOM)], value="micro", allow_blank=False, id="start-model"
                )
                yield Label("config path")
                yield Input(placeholder="configs/model/….yaml (with 'config file…')", id="start-config", disabled=True)
                yield Label("run name")
                yield Input(self.suggested_name, id="start-name")
                yield Label("steps")
                yield Input(placeholder="preset default", id="start-steps", type="integer")
                yield Label("device")
                yield Select([(d, d) for d in DEVICES], value="auto", allow_blank=False, id="start-device")
            yield Static("", id="start-error")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start", variant="primary", id="start-ok")
                yield Button("Cancel", id="start-cancel")

    @on(Select.Changed, "#start-model")
    def _model_changed(self, event: Select.Changed) -> None:
        custom = event.value == CUSTOM
        config = self.query_one("#start-config", Input)
        config.disabled = not custom
        if custom:
            config.focus()

    def request(self) -> TrainRequest:
        model = str(self.query_one("#start-model", Select).value)
        if model == CUSTOM:
            model = self.query_one("#start-config", Input).value.strip()
            if not model:
                raise UsageError("config path is empty", hint="type the path of a model config .yaml")
        steps_text = self.query_one("#start-steps", Input).value.strip()
        try:
            steps = int(steps_text) if steps_text else None
        except ValueError:
            raise UsageError(f"steps: {steps_text!r} is not a whole number") from None
        request = TrainRequest(
            run=self.query_one("#start-name", Input).value.strip(),
            model=model,
            steps=steps,
            device=str(self.query_one("#start-device", Select).value),
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
