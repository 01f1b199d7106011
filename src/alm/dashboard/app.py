"""The dashboard application: follows runs on disk and controls trainer subprocesses.

The app owns the shared state (the RunBook of watched runs, the trainers it launched) and one timer that polls
them; screens only render. A trainer crash shows up as a failed run and a notification, never as a dashboard
failure, because the trainer is another process and all the dashboard does is read its files.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.theme import BUILTIN_THEMES, Theme

from alm.dashboard import DEFAULT_THEME
from alm.dashboard.request import DEVICES, TrainRequest
from alm.dashboard.screens.compare import CompareScreen
from alm.dashboard.screens.config import ConfigScreen
from alm.dashboard.screens.confirm import ConfirmScreen
from alm.dashboard.screens.help import HelpScreen
from alm.dashboard.screens.quit import QuitChoice, QuitScreen
from alm.dashboard.screens.run import RunScreen
from alm.dashboard.screens.runs import RunsScreen
from alm.dashboard.screens.start import StartRunScreen
from alm.dashboard.settings import save_setting, saved_theme
from alm.dashboard.trainer import (
    EXIT_OK,
    EXIT_STOPPED,
    Trainer,
    explain_exit,
    interrupt_pid,
    launch,
    resume_command,
)
from alm.dashboard.watch import RunBook
from alm.errors import AlmError
from alm.rundir import RunDir, default_run_name

# The open run is polled this often; the whole runs directory every RUNS_EVERY ticks.
TICK_S = 0.25
RUNS_EVERY = 8


class DashboardApp(App[None]):
    CSS_PATH = Path(__file__).with_name("dashboard.tcss")  # absolute, so subclasses elsewhere find it
    TITLE = "alm dashboard"
    # Screens lay themselves out for the terminal: `-narrow` below 120 columns, `-short` below 36 rows.
    HORIZONTAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS: ClassVar[list[tuple[int, str]]] = [(0, "-short"), (36, "-tall")]

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+c", "stop_training", "Stop training", priority=True, show=False),
        # Screens show `?` first in their footers (HELP_BINDING), so it is never cut off at 80 columns.
        Binding("question_mark", "help", "Help", key_display="?", show=False),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("n", "new_run", "New run"),
        Binding("f1", "help", "Help", show=False),
    ]

    def __init__(
        self,
        runs_dir: Path | str = "runs",
        *,
        run: str | None = None,
        clock: Callable[[], float] = time.time,
        theme: str | None = None,
        tick: float = TICK_S,
    ):
        """`clock` gives "now" for relative times ("12s ago"); tests inject a fixed one. `theme` None: the one
        chosen in an earlier session (dashboard settings), else the default."""
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.initial_run = run
        self.clock = clock
        self.tick_s = tick
        self.book = RunBook(self.runs_dir)
        self.trainers: dict[str, Trainer] = {}
        self.stopping: set[str] = set()  # runs asked to stop whose trainer has not exited yet
        self.exit_notes: dict[str, str] = {}  # how a trainer started here ended, shown in its run view
        self.devices: tuple[str, ...] = ("auto", "cpu")  # completed by a probe when the new-run form opens
        self._devices_probed = False
        self._ticks = 0
        self._initial_theme = theme or saved_theme(BUILTIN_THEMES) or DEFAULT_THEME

    # --- lifecycle --------------------------------------------------------------------------------------------
    def get_default_screen(self) -> Screen:
        return RunsScreen()

    def on_mount(self) -> None:
        self.theme = self._initial_theme
        self.theme_changed_signal.subscribe(self, self._remember_theme)
        self.book.refresh(self._live_children())
        self.call_after_refresh(self.refresh_views)
        if self.initial_run:
            self.open_run(self.initial_run)
        self.set_interval(self.tick_s, self._tick)

    def _remember_theme(self, theme: Theme) -> None:
        """A theme picked in the palette is the next session's default."""
        if theme.name != self._initial_theme:
            self._initial_theme = theme.name
            save_setting("theme", theme.name)

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
            if isinstance(screen, RunsScreen | RunScreen | CompareScreen):
                screen.refresh_data()
                return

    def _reap(self) -> None:
        """Collect trainers that exited and say how each ended (the cause, in words)."""
        for name, trainer in list(self.trainers.items()):
            code = trainer.poll()
            if code is None:
                continue
            del self.trainers[name]
            self.stopping.discard(name)
            note = explain_exit(code, trainer.log_path)
            if code == EXIT_OK:
                self.exit_notes.pop(name, None)
                self.notify(f"{name}: training finished.", title="Training")
            elif code == EXIT_STOPPED:
                self.exit_notes[name] = note
                self.notify(f"{name}: stopped, checkpoint saved. Press r to resume.", title="Training")
            else:
                self.exit_notes[name] = note
                what = f"training failed (exit {code})" if code > 0 else "training was killed"
                self.notify(
                    f"{name}: {what}.\n{note.partition('): ')[2] or note}",
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

    def runs_screen(self) -> RunsScreen | None:
        screen = self.screen_stack[0] if self.screen_stack else None
        return screen if isinstance(screen, RunsScreen) else None

    def target_run(self) -> str | None:
        """The run an action applies to: the open run, else the one highlighted in the runs list."""
        for screen in reversed(self.screen_stack):
            if isinstance(screen, RunScreen):
                return screen.run_name
            if isinstance(screen, RunsScreen):
                return screen.selected_run
        return None

    def target_runs(self) -> list[str]:
        """The runs marked in the runs list, else the target run."""
        runs = self.runs_screen()
        if runs is not None and runs.marked and not isinstance(self.screen, RunScreen):
            return sorted(runs.marked)
        name = self.target_run()
        return [name] if name else []

    # --- control ----------------------------------------------------------------------------------------------
    def action_new_run(self) -> None:
        self._probe_devices()
        suggested = default_run_name("micro", now=self.clock())
        screen = StartRunScreen(self.runs_dir, suggested, devices=self.devices, clock=self.clock)
        self.push_screen(screen, self._start_requested)

    @work(group="devices", exit_on_error=False)
    async def _probe_devices(self) -> None:
        """Which devices this machine has. Asked of a child process: importing torch here would hold the GIL
        for seconds and stall the form being typed into."""
        if self._devices_probed:
            return
        self._devices_probed = True
        code = "from alm.device import available_device_types as f; print(' '.join(f()))"
        try:
            child = await asyncio.create_subprocess_exec(
                sys.executable, "-c", code, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
            )
        except OSError:
            return
        try:
            out, _ = await child.communicate()
        finally:
            if child.returncode is None:  # the dashboard is quitting: leave no probe behind
                child.kill()
                await child.wait()
        found = out.decode().split()
        self._devices_found(tuple(d for d in DEVICES if d == "auto" or d in found))

    def _devices_found(self, devices: tuple[str, ...]) -> None:
        self.devices = devices
        for screen in self.screen_stack:
            if isinstance(screen, StartRunScreen) and screen.is_mounted:
                screen.set_devices(devices)

    def _start_requested(self, request: TrainRequest | None) -> None:
        if request is None:
            return
        try:
            command = request.command(self.runs_dir)
        except AlmError as exc:
            self.notify(str(exc), title="Could not start training", severity="error")
            return
        self.start_trainer(request.run, command)

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
        self.book.refresh(self._live_children())
        runs = self.runs_screen()
        if runs is not None:
            runs.follow(run)  # back in the list, the cursor is on the run just started
        self.open_run(run)
        return trainer

    def action_resume_run(self) -> None:
        name = self.target_run()
        if name is None:
            self.notify("No run selected.", severity="warning")
            return
        watch = self.book.get(name)
        state = watch.state
        if watch.alive or name in self._live_children():
            self.notify(f"{name} is already training.", severity="warning")
            return
        if state.start is None:
            self.notify(f"{name} has not started yet: nothing to resume.", severity="warning")
            return
        if not watch.run.checkpoint("last").is_file():
            self.notify(
                f"{name} has no checkpoint to resume from: it stopped before its first save. "
                "Press R to start it over as a new run (or n for another).",
                severity="warning",
                timeout=10,
            )
            return
        if watch.status == "finished":
            done = (
                "stopped early (no new best val loss)"
                if state.stop and state.stop.reason == "early_stop"
                else "finished all its steps"
            )
            self.notify(
                f"{name} {done}: resuming would stop again at once. Press R to restart it with changes "
                "(e.g. train.steps, train.early_stop_patience=0).",
                severity="warning",
                timeout=10,
            )
            return
        self.start_trainer(name, resume_command(self.runs_dir, name))

    def action_restart_run(self) -> None:
        """A new run from the target run's resolved config, with overrides edited in the form."""
        name = self.target_run()
        if name is None:
            self.notify("No run selected.", severity="warning")
            return
        run = RunDir(self.runs_dir / name)
        if not run.config_path.is_file():
            self.notify(f"{name} has no config.yaml: it never started training.", severity="warning")
            return
        self._probe_devices()
        suggested = next(
            candidate for i in range(2, 10_000) if not (self.runs_dir / (candidate := f"{name}-{i}")).exists()
        )
        screen = StartRunScreen(
            self.runs_dir, suggested, devices=self.devices, base=run.path, clock=self.clock
        )
        self.push_screen(screen, self._start_requested)

    def action_view_config(self) -> None:
        name = self.target_run()
        if name is None:
            self.notify("No run selected.", severity="warning")
            return
        from alm.runs import run_config_text

        try:
            text = run_config_text(self.runs_dir / name)
        except AlmError as exc:
            self.notify(str(exc), severity="warning")
            return
        self.push_screen(ConfigScreen(name, RunDir(self.runs_dir / name).config_path, text))

    def action_delete_run(self) -> None:
        """Delete the marked runs (or the target run) after confirmation; never one that trains."""
        names = self.target_runs()
        if not names:
            self.notify("No run selected.", severity="warning")
            return
        live = [n for n in names if n in self._live_children() or self.book.get(n).alive]
        if live:
            self.notify(
                f"{', '.join(live)} is training: stop it first (ctrl+c), then delete it.",
                severity="warning",
            )
            return
        listed = ", ".join(names)
        question = (
            f"Delete {listed}?\n\nIts directory goes, with every checkpoint in it. This cannot be undone."
        )
        self.push_screen(
            ConfirmScreen("Delete runs" if len(names) > 1 else "Delete run", question, "Delete"),
            partial(self._delete_confirmed, names),
        )

    def _delete_confirmed(self, names: list[str], confirmed: bool | None) -> None:
        if not confirmed:
            return
        from alm.runs import delete_run

        for name in names:
            try:
                delete_run(self.runs_dir / name)
            except AlmError as exc:
                self.notify(str(exc), title="Not deleted", severity="error")
                continue
            self.exit_notes.pop(name, None)
            self.notify(f"deleted {name}", title="Runs")
        while isinstance(self.screen, RunScreen) and self.screen.run_name in names:
            self.pop_screen()
        runs = self.runs_screen()
        if runs is not None:
            runs.marked -= set(names)
        self.book.refresh(self._live_children())
        self.refresh_views()

    def action_compare(self) -> None:
        runs = self.runs_screen()
        marked = sorted(runs.marked) if runs is not None else []
        if len(marked) < 2:
            self.notify(
                "Mark at least two runs with space, then press c to compare them.", severity="warning"
            )
            return
        self.push_screen(CompareScreen([self.runs_dir / name for name in marked]))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """In the Sample and Chat tabs ctrl+c belongs to the tab (it cancels a generation), never to training."""
        return not (
            action == "stop_training"
            and isinstance(self.screen, RunScreen)
            and self.screen.generation_tab_active
        )

    def action_stop_training(self) -> None:
        """Ctrl+C: in the Sample or Chat tab, cancel the generation (never training); elsewhere ask the trainer
        of the open/selected run (or the only live one) to stop at a safe point."""
        screen = self.screen
        if isinstance(screen, RunScreen) and screen.generation_tab_active:
            if screen.cancel_generation():
                self.notify("Cancelling the generation…")
            else:
                self.notify(
                    "Nothing is being generated. Training is stopped from the Monitor tab (m, then ctrl+c).",
                    severity="warning",
                )
            return
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

    # --- screenshots ------------------------------------------------------------------------------------------
    def deliver_screenshot(
        self, filename: str | None = None, path: str | None = None, time_format: str | None = None
    ) -> str | None:
        """Save an SVG of the screen in ~/Downloads (else the working directory) and say where, or why not."""
        downloads = Path.home() / "Downloads"
        directory = Path(path) if path else downloads if downloads.is_dir() else Path.cwd()
        try:
            saved = self.save_screenshot(filename, str(directory), time_format)
        except OSError as exc:
            self.notify(
                f"Could not save the screenshot in {directory}: {exc.strerror or exc}",
                title="Screenshot",
                severity="error",
            )
            return None
        self.notify(f"Saved {saved}", title="Screenshot")
        return saved

    # --- command palette --------------------------------------------------------------------------------------
    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        for title, help_text, action in (
            ("New run", "Start training a new run (alm train) in the background", self.action_new_run),
            ("Stop training", "Ask the open/selected run to stop safely (Ctrl+C)", self.action_stop_training),
            (
                "Resume run",
                "Continue the open/selected run from last.pt (alm resume)",
                self.action_resume_run,
            ),
            ("Restart run", "A new run from this run's config, with changes (R)", self.action_restart_run),
            ("View config", "The open/selected run's resolved config (v)", self.action_view_config),
            ("Delete run", "Delete the marked or selected run, after asking (d)", self.action_delete_run),
            ("Compare runs", "Compare the runs marked in the list (c)", self.action_compare),
            ("Runs", "Back to the list of runs", self.action_show_runs),
            ("Help", "Keys and what each view shows", self.action_help),
        ):
            yield SystemCommand(title, help_text, action)
        for watch in self.book.ordered():
            yield SystemCommand(
                f"Open run {watch.name}",
                f"{watch.status}, step {watch.state.step}",
                partial(self.open_run, watch.name),
            )
