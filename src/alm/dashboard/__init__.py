"""The Textual dashboard (`alm dashboard`): watch, start, stop, resume, compare and delete runs; sample and chat.

It never trains in its own process: training always runs as an `alm train` subprocess, and the dashboard follows
it through the run directory (events.jsonl, train.pid, checkpoints). Entry point: `alm.dashboard.app.DashboardApp`.
"""

DEFAULT_THEME = "ansi-dark"  # the terminal's own 16-colour palette, so the dashboard looks like the terminal
