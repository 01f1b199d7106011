"""The dashboard application: follows runs on disk and controls trainer subprocesses.

The app owns the shared state (the RunBook of watched runs, the trainers it launched) and one timer that polls
them; screens only render. A trainer crash shows up as a failed run and a notification, never as a dashboard
failure, because the trainer is another process and all the dashboard does is read its files.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen

from alm.dashboard import DEFAULT_THEME
from alm.dashboard.screens.help import HelpScreen
from alm.dashboard.screens.quit import QuitChoice, QuitScreen
from alm.dashboard.screens.run import RunScreen
from alm.dashboard.screens.runs import RunsScreen
from alm.dashboard.screens.start import StartRunScreen
from alm.dashboard.trainer import (
    EXIT_OK,
    EXIT_STOPPED,
    Trainer,
    TrainRequest,
    interrupt_pid,
    launch,
    resume_command,
)
from alm.dashboard.watch import RunBook
from alm.errors import AlmError
from alm.train.rundir import default_run_name

# The open run is polled this often; the whole runs directory every RUNS_EVERY ticks.
TICK_S = 0.25
RUNS_EVERY = 8


class DashboardApp(App[None]):
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")  # absolute, so subclasses elsewhere find it
    TITLE = "alm dashboard"

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "stop_training", "Stop training", priority=True),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("n", "new_run", "New run"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("f1", "help", "Help", show=False),
    ]

    def __init__(
        self,
        runs_dir: Path | str = "runs",
        *,
        run: str | None = None,
        clock: Callable[[], float] = time.time,
        theme: str = DEFAULT_THEME,
        tick: float = TICK_S,
    ):
        """`clock` gives "now" for relative times ("12s ago"); tests inject a fixed one."""
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.initial_run = run
        self.clock = clock
        self.tick_s = tick
        self.book = RunBook(self.runs_dir)
        self.trainers: dict[str, Trainer] = {}
        self.stopping: set[str] = set()  # runs asked to stop whose trainer has not exited yet
        self.exit_notes: dict[str, str] = {}  # how a trainer started here ended, shown in its run view
        self._ticks = 0
        self._default_theme = theme

    # --- lifecycle --------------------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return RunsScreen()

    def on_mount(self) -> None:
        self.theme = self._default_theme
        self.book.refresh(self._live_children())
        self.call_after_refresh(self.refresh_views)
        if self.initial_run:
            self.open_run(self.initial_run)
        self.set_interval(self.tick_s, self._tick)

    def _live_children(self) -> frozenset[str]:
        return frozenset(name for name, t in self.trainers.items() if t.alive)

    def _tick(self) -> None:
        if not self.is_running:  # shutting down: the screens are being taken apart
            return
        self._reap()
        self._ticks += 1
        changed = False
        if self._ticks % RUNS_EVERY == 0:
            changed = self.book.refresh(self._live_children())
        else:
            for screen in self.screen_stack:
                if isinstance(screen, RunScreen):
                    changed |= screen.run_watch.poll(child_alive=screen.run_name in self._live_children())
        self.stopping = {
            name for name in self.stopping if name in self.book.watches and self.book.watches[name].alive
        }
        if changed or self._ticks % RUNS_EVERY == 0:
            self.refresh_views()

    def refresh_views(self) -> None:
        """Redraw the screen being looked at (under any dialog); the others catch up when they are resumed."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunsScreen | RunScreen):
                screen.refresh_data()
                return

    def _reap(self) -> None:
        """Collect trainers that exited and say how each ended."""
        for name, trainer in list(self.trainers.items()):
            code = trainer.poll()
            if code is None:
                continue
            del self.trainers[name]
            self.stopping.discard(name)
            if code == EXIT_OK:
                self.exit_notes.pop(name, None)
                self.notify(f"{name}: training finished.", title="Training")
            elif code == EXIT_STOPPED:
                self.exit_notes[name] = "stopped safely (exit 130): last.pt saved — press r to resume"
                self.notify(f"{name}: stopped, checkpoint saved. Press r to resume.", title="Training")
            else:
                last = trainer.log_tail(1) or "no output"
                self.exit_notes[name] = (
                    f"trainer failed (exit {code}): {last} — see the Log tab ({trainer.log_path})"
                )
                self.notify(
                    f"{name}: training failed (exit {code}).\n{last}",
                    title="Training",
                    severity="error",
                    timeout=15,
                )
            if name in self.book.watches:
                self.book.watches[name].poll()
            self.refresh_views()

    # --- navigation -------------------------------------------------------------------------------------------
    def open_run(self, name: str) -> None:
        watch = self.book.get(name)
        watch.poll(child_alive=name in self._live_children())
        while isinstance(self.screen, RunScreen):
            self.pop_screen()
        self.push_screen(RunScreen(watch))

    def action_show_runs(self) -> None:
        while len(self.screen_stack) > 1:
            self.pop_screen()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def target_run(self) -> str | None:
        """The run an action applies to: the open run, else the one highlighted in the runs list."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen):
                return screen.run_name
            if isinstance(screen, RunsScreen):
                return screen.selected_run
        return None

    # --- control ----------------------------------------------------------------------------------------------
    def action_new_run(self) -> None:
        suggested = default_run_name("micro", now=self.clock())
        self.push_screen(StartRunScreen(self.runs_dir, suggested), self._start_requested)

    def _start_requested(self, request: TrainRequest | None) -> None:
        if request is not None:
            self.start_trainer(request.run, request.command(self.runs_dir))

    def start_trainer(self, run: str, command: list[str]) -> Trainer | None:
        """Launch a trainer for `run` and open its view; a launch failure is a notification, not a crash."""
        try:
            trainer = launch(run, command, self.runs_dir)
        except AlmError as exc:
            self.notify(str(exc), title="Could not start training", severity="error")
            return None
        self.trainers[run] = trainer
        self.exit_notes.pop(run, None)
        self.notify(
            f"{run}: trainer started (pid {trainer.pid}); output in {trainer.log_path}", title="Training"
        )
        self.open_run(run)
        return trainer

    def action_resume_run(self) -> None:
        name = self.target_run()
        if name is None:
            self.notify("No run selected.", severity="warning")
            return
        watch = self.book.get(name)
        if watch.alive or name in self._live_children():
            self.notify(f"{name} is already training.", severity="warning")
            return
        if watch.state.start is None:
            self.notify(f"{name} has not started yet: nothing to resume.", severity="warning")
            return
        self.start_trainer(name, resume_command(self.runs_dir, name))

    def action_stop_training(self) -> None:
        """Ctrl+C: ask the trainer of the open/selected run (or the only live one) to stop at a safe point."""
        name = self.target_run()
        live = [n for n, w in self.book.watches.items() if w.alive] + list(self._live_children())
        if name is None or name not in live:
            name = live[0] if len(set(live)) == 1 else None
        if name is None:
            hint = "select the run to stop" if live else "no run is training"
            self.notify(f"Nothing to stop: {hint}. (Quit is q or ctrl+q.)", severity="warning")
            return
        again = name in self.stopping
        trainer = self.trainers.get(name)
        if trainer is not None:
            trainer.interrupt()
        else:
            pid = self.book.get(name).run.read_pid()
            if pid is None:
                self.notify(f"{name}: no trainer pid to signal.", severity="warning")
                return
            interrupt_pid(pid)
        self.stopping.add(name)
        if again:
            self.notify(
                f"{name}: interrupted again — the trainer stops at once (checkpoints are atomic: still valid)."
            )
        else:
            self.notify(f"{name}: stopping — finishing the step and saving last.pt…", title="Ctrl+C")
        self.refresh_views()

    async def action_quit(self) -> None:
        live = sorted(self._live_children())
        if not live:
            self.exit()
            return
        self.push_screen(QuitScreen(live), self._quit_chosen)

    def _quit_chosen(self, choice: QuitChoice | None) -> None:
        if choice == "stop":
            for trainer in self.trainers.values():
                trainer.interrupt()
            self.exit()
        elif choice == "detach":
            self.exit()

    # --- command palette --------------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand(
            "New run", "Start training a new run (alm train) in the background", self.action_new_run
        )
        yield SystemCommand(
            "Stop training", "Ask the open/selected run to stop safely (Ctrl+C)", self.action_stop_training
        )
        yield SystemCommand(
            "Resume run", "Continue the open/selected run from last.pt (alm resume)", self.action_resume_run
        )
        yield SystemCommand("Runs", "Back to the list of runs", self.action_show_runs)
        yield SystemCommand("Help", "Keys and what each view shows", self.action_help)
        for watch in self.book.ordered():
            yield SystemCommand(
                f"Open run {watch.name}",
                f"{watch.status}, step {watch.state.step}",
                partial(self.open_run, watch.name),
            )
