"""A run's resolved config (config.yaml), read-only: every value it trained with, defaults included."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.syntax import Syntax
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static


class ConfigScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,v", "dismiss", "Close"),
        Binding("y", "copy", "Copy"),
    ]

    def __init__(self, run: str, path: Path, text: str):
        super().__init__()
        self.run, self.path, self.text = run, path, text

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="config-dialog", classes="dialog"):
            yield Label(f"{self.run}: resolved config  ({self.path})", classes="dialog-title")
            theme = "ansi_dark" if self.app.current_theme.dark else "ansi_light"
            yield Static(Syntax(self.text, "yaml", theme=theme, background_color="default"))
            yield Label("esc closes · y copies · R restarts this run with changes", classes="section-title")

    def on_mount(self) -> None:
        self.query_one("#config-dialog").focus()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self.text)
        self.notify("config copied to the clipboard")
