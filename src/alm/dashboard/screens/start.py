"""The new-run form (and the restart form): presets or files, a corpus config, `--set` overrides, steps, device
and name, checked on every change with the loader `alm train` uses. Each problem shows under its field and
blocks Start; what a valid form will train (defaults included) is spelled out above the buttons."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.timer import Timer
from textual.widgets import Button, Input, Label, Select, Static

from alm.dashboard.request import (
    DEFAULT_MODEL,
    FIELDS,
    TrainRequest,
    model_presets,
    plan_text,
    train_presets,
)
from alm.rundir import RunDir, default_run_name

CHECK_DELAY_S = 0.15
# (field, label, placeholder: what an empty field means)
ROWS = (
    ("model", "model", "preset or model .yaml — empty: micro"),
    ("train", "train", "preset or train .yaml — empty: micro"),
    ("data", "data", "corpus .yaml or data dir — empty: built-in corpus"),
    ("steps", "steps", "empty: the train config's"),
    ("overrides", "--set", "key=value … e.g. model.d_model=128 — empty: none"),
    ("name", "run name", ""),
)


class StartRunScreen(ModalScreen[TrainRequest | None]):
    """Dismisses with a validated TrainRequest, or None when cancelled. With `base`, restarts that run: its
    resolved config replaces the model/train/data fields and only overrides, steps, device and name are asked."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "submit", "Start"),
    ]

    def __init__(
        self,
        runs_dir: Path,
        suggested_name: str,
        *,
        devices: tuple[str, ...] = ("auto", "cpu"),
        base: Path | None = None,
        clock=time.time,
    ):
        super().__init__()
        self.runs_dir = runs_dir
        self.suggested_name = suggested_name
        self.devices = devices
        self.base = base
        self.clock = clock
        self.errors: dict[str, str] = {}
        self._suggested = suggested_name  # while the name is the suggested one, it follows the model
        self._pending: Timer | None = None  # the check due once typing pauses
        self._model = DEFAULT_MODEL  # the model the suggested name was made for

    # --- layout -----------------------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        title = f"Restart {self.base.name} as a new run" if self.base else "Start a training run"
        with VerticalScroll(id="start-dialog", classes="dialog"):
            yield Label(title, classes="dialog-title")
            if self.base is not None:
                with Horizontal(classes="form-row"):
                    yield Label("from run", classes="form-label")
                    yield Static(
                        f"{self.base.name}: its resolved config (model, train, data); edit with --set",
                        classes="form-note",
                    )
            for field, label, placeholder in ROWS:
                if self.base is not None and field in ("model", "train", "data"):
                    continue
                with Horizontal(classes="form-row"):
                    yield Label(label, classes="form-label")
                    with Vertical(classes="form-field"):
                        yield self._input(field, placeholder)
                        yield Static("", id=f"error-{field}", classes="form-error")
                if field == "overrides":
                    with Horizontal(classes="form-row"):
                        yield Label("device", classes="form-label")
                        with Vertical(classes="form-field"):
                            yield Select(
                                [(d, d) for d in self.devices],
                                value="auto",
                                allow_blank=False,
                                id="start-device",
                                compact=True,
                            )
                            yield Static("", id="error-device", classes="form-error")
            yield Static("", id="error-form", classes="form-error")
            yield Static("", id="start-plan")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Start (ctrl+s)", variant="primary", id="start-ok")
                yield Button("Cancel (esc)", id="start-cancel")

    def _input(self, field: str, placeholder: str) -> Input:
        value = {"model": DEFAULT_MODEL, "name": self.suggested_name}.get(field, "")
        suggest = {"model": model_presets, "train": train_presets}.get(field)
        return Input(
            value,
            placeholder=placeholder,
            suggester=SuggestFromList(suggest()) if suggest else None,
            id=f"start-{field}",
            compact=True,
        )

    def on_mount(self) -> None:
        first = "#start-overrides" if self.base is not None else "#start-model"
        self.query_one(first, Input).focus()
        if self.base is not None:
            steps = _saved_steps(self.base)
            if steps:
                self.query_one("#start-steps", Input).placeholder = f"empty: {steps:,} (the run's)"
        self.check()

    def set_devices(self, devices: tuple[str, ...]) -> None:
        """Offer the devices this machine has (found in the background after the form opened)."""
        select = self.query_one("#start-device", Select)
        current = select.value
        self.devices = devices
        select.set_options([(d, d) for d in devices])
        select.value = current if current in devices else "auto"

    # --- reading the form -------------------------------------------------------------------------------------
    def _text(self, field: str) -> str:
        found = self.query(f"#start-{field}")
        return found.first(Input).value.strip() if found else ""

    def request(self) -> tuple[TrainRequest | None, dict[str, str]]:
        """The request the form describes and every problem with it, by field."""
        errors: dict[str, str] = {}
        steps_text = self._text("steps").replace(",", "").replace("_", "")
        steps = None
        if steps_text:
            try:
                steps = int(steps_text)
            except ValueError:
                errors["steps"] = f"{self._text('steps')!r} is not a whole number (empty: the train config's)"
        try:
            overrides = tuple(shlex.split(self._text("overrides")))
        except ValueError as exc:
            errors["overrides"] = f"cannot split the overrides: {exc} (quote values with spaces)"
            overrides = ()
        request = TrainRequest(
            run=self._text("name"),
            model=self._text("model") or DEFAULT_MODEL,
            steps=steps,
            device=str(self.query_one("#start-device", Select).value),
            train=self._text("train") or None,
            data=self._text("data") or None,
            overrides=overrides,
            base=self.base,
        )
        if not errors:
            errors = request.errors(self.runs_dir, self.devices)
        else:
            errors.update(
                {k: v for k, v in request.errors(self.runs_dir, self.devices).items() if k == "name"}
            )
        return (None if errors else request), errors

    @property
    def checking(self) -> bool:
        """Whether a check is due (the fields changed since the last one)."""
        return self._pending is not None

    def check(self) -> TrainRequest | None:
        """Re-validate, show each problem under its field (clearing fixed ones) and the plan; gate Start."""
        self._pending = None
        request, self.errors = self.request()
        for field in FIELDS:
            found = self.query(f"#error-{field}")
            if found:
                error = found.first(Static)
                message = self.errors.get(field, "")
                error.update(Text(message, style="red"))
                error.display = bool(message)
        plan = self.query_one("#start-plan", Static)
        if request is not None:
            cfg = request.config()
            plan.update(Text.assemble(("will train: ", "bold"), plan_text(cfg)))
            if request.steps is None:  # say what an empty steps field means, in numbers
                self.query_one(
                    "#start-steps", Input
                ).placeholder = f"empty: {cfg.train.steps:,} (the config's)"
        else:
            plan.update(Text("fix the fields marked in red to start", style="dim"))
        self.query_one("#start-ok", Button).disabled = request is None
        return request

    # --- events -----------------------------------------------------------------------------------------------
    @on(Input.Changed)
    @on(Select.Changed)
    def _changed(self, event: Input.Changed | Select.Changed) -> None:
        if event.control.id == "start-model" and self._text("model") != self._model:
            self._model = self._text("model")
            if self._text("name") == self._suggested:  # not named by the user: follow the model
                self._suggest_name()
        # Checked once typing pauses: a check reads config files, and a burst of keys must not queue behind it.
        if self._pending is not None:
            self._pending.stop()
        self._pending = self.set_timer(CHECK_DELAY_S, self.check)

    def _suggest_name(self) -> None:
        """The suggested run name follows the chosen model (a preset's name, or a file's stem)."""
        model = self._text("model") or DEFAULT_MODEL
        name = default_run_name(
            Path(model).stem if model.endswith((".yaml", ".yml")) else model, self.clock()
        )
        self._suggested = name
        self.query_one("#start-name", Input).value = name

    @on(Input.Submitted)
    @on(Button.Pressed, "#start-ok")
    def action_submit(self) -> None:
        """Start when the form is valid; otherwise take the cursor to the first field with a problem."""
        if self._pending is not None:
            self._pending.stop()
        request = self.check()
        if request is None:
            for field in FIELDS:
                if field in self.errors and self.query(f"#start-{field}"):
                    self.query_one(f"#start-{field}").focus()
                    break
            return
        self.dismiss(request)

    @on(Button.Pressed, "#start-cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)


def _saved_steps(run: Path) -> int | None:
    from alm.config import read_yaml
    from alm.errors import AlmError

    try:
        steps = read_yaml(RunDir(run).config_path).get("train", {}).get("steps")
    except AlmError:
        return None
    return steps if isinstance(steps, int) else None
