"""Key bindings shared by the dashboard's screens, first in each screen's list so that the footer shows them
before anything it has to cut off at 80 columns."""

from __future__ import annotations

from textual.binding import Binding

HELP_BINDING = Binding("question_mark", "app.help", "Help", key_display="?")
# Priority: ctrl+c must reach the app even from a text box (where it would copy).
STOP_BINDING = Binding("ctrl+c", "app.stop_training", "Stop training", priority=True)
