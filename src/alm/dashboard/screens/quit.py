"""Asked on quit while a trainer started from this dashboard is still running."""

from __future__ import annotations

from typing import ClassVar, Literal

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static

QuitChoice = Literal["stop", "detach", "cancel"]


class QuitScreen(ModalScreen[QuitChoice]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "choose('cancel')", "Cancel"),
        Binding("s", "choose('stop')", "Stop and quit"),
        Binding("d", "choose('detach')", "Detach"),
    ]

    def __init__(self, runs: list[str]):
        super().__init__()
        self.runs = runs

    def compose(self) -> ComposeResult:
        names = ", ".join(self.runs)
        with Vertical(id="quit-dialog", classes="dialog"):
            yield Label("Training is still running", classes="dialog-title")
            yield Static(
                f"Started from this dashboard: {names}.\n\n"
                "Stop and quit: each trainer finishes its step, saves last.pt and exits (resume later).\n"
                "Detach: quit and leave training running; its output goes on into runs/NAME/train.log.",
                markup=False,
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Stop and quit (s)", variant="error", id="stop")
                yield Button("Detach (d)", variant="primary", id="detach")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()  # Enter alone never stops training

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id)  # type: ignore[arg-type]

    def action_choose(self, choice: QuitChoice) -> None:
        self.dismiss(choice)
