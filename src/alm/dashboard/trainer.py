"""Training as a separate process: the dashboard launches `alm train` / `alm resume`, interrupts and reaps them.

Each trainer gets its own session (so a terminal hang-up or the dashboard quitting never reaches it) with stdout
and stderr appended to runs/NAME/train.log. Stopping sends SIGINT, exactly what Ctrl+C in a terminal would: the
trainer finishes its step, writes last.pt, emits a `stop` event and exits 130.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from alm.dashboard.watch import LOG_FILE
from alm.errors import AlmError, UsageError
from alm.train.rundir import RunDir

DEVICES = ("auto", "cpu", "cuda", "mps")
_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

# Exit statuses a trainer may end with, as the dashboard reports them.
EXIT_OK, EXIT_STOPPED = 0, 130


@dataclass(frozen=True)
class TrainRequest:
    """What the "new run" form collects; `command()` turns it into an `alm train` argv."""

    run: str
    model: str = "micro"  # a preset name or a model config path
    steps: int | None = None  # None: the train preset's default
    device: str = "auto"
    train: str | None = None  # a train preset or file; None: `alm train`'s default
    data: str | None = None  # a corpus.yaml or data directory; None: the built-in corpus
    overrides: tuple[str, ...] = ()

    def validate(self, runs_dir: Path) -> None:
        if not _RUN_NAME.match(self.run):
            raise UsageError(
                f"invalid run name {self.run!r}",
                hint="use letters, digits, '.', '_' or '-' (no spaces or slashes)",
            )
        if RunDir(runs_dir / self.run).is_populated():
            raise UsageError(
                f"run {self.run!r} already exists in {runs_dir}", hint="pick another name, or resume it"
            )
        if self.model not in model_presets() and not Path(self.model).is_file():
            raise UsageError(
                f"model {self.model!r} is neither a preset nor a file",
                hint=f"presets: {', '.join(model_presets())}; or the path of a model config .yaml",
            )
        if self.train is not None and not Path(self.train).is_file():
            from alm.train.presets import available_presets

            if self.train not in available_presets():
                raise UsageError(
                    f"train config {self.train!r} is neither a preset nor a file",
                    hint=f"presets: {', '.join(available_presets())}; or the path of a train config .yaml",
                )
        if self.data is not None and not Path(self.data).exists():
            raise UsageError(f"data {self.data!r} not found", hint="a corpus.yaml or a data directory")
        if self.steps is not None and self.steps <= 0:
            raise UsageError(f"steps must be a positive integer, got {self.steps}")
        if self.device not in DEVICES and not re.fullmatch(r"cuda:\d+", self.device):
            raise UsageError(f"unknown device {self.device!r}", hint=f"one of {', '.join(DEVICES)} or cuda:N")

    def command(self, runs_dir: Path) -> list[str]:
        argv = [*alm_argv(), "train", "--model", self.model, "--run", self.run, "--runs-dir", str(runs_dir)]
        argv += ["--device", self.device]
        if self.train is not None:
            argv += ["--train", self.train]
        if self.data is not None:
            argv += ["--data", self.data]
        sets = list(self.overrides)
        if self.steps is not None:
            sets.append(f"train.steps={self.steps}")
        for item in sets:
            argv += ["--set", item]
        return argv


def model_presets() -> list[str]:
    from alm.model.presets import available_presets  # torch-free, like the dashboard

    return available_presets()


def alm_argv() -> list[str]:
    """This interpreter running the alm package, so a trainer uses the same environment as the dashboard."""
    return [sys.executable, "-m", "alm"]


def resume_command(runs_dir: Path, name: str) -> list[str]:
    return [*alm_argv(), "resume", name, "--runs-dir", str(runs_dir)]


@dataclass
class Trainer:
    """A trainer process this dashboard started."""

    run: str
    command: list[str]
    log_path: Path
    process: subprocess.Popen[bytes]
    interrupts_sent: int = 0
    returncode: int | None = field(default=None)

    @property
    def pid(self) -> int:
        return self.process.pid

    def poll(self) -> int | None:
        """Reap the process if it exited (no zombies) and return its exit status, else None."""
        if self.returncode is None:
            self.returncode = self.process.poll()
        return self.returncode

    @property
    def alive(self) -> bool:
        return self.poll() is None

    def interrupt(self) -> None:
        """SIGINT to the trainer's process group (it leads its own session), like Ctrl+C in its terminal."""
        if not self.alive:
            return
        self.interrupts_sent += 1
        with contextlib.suppress(ProcessLookupError):  # it exited in between
            os.killpg(self.process.pid, signal.SIGINT)

    def log_tail(self, lines: int = 20) -> str:
        return tail_text(self.log_path, lines)


def launch(run: str, command: list[str], runs_dir: Path) -> Trainer:
    """Start `command` detached from the dashboard: new session, no stdin, output appended to train.log.

    The run directory is created for the log; `alm train` only refuses directories it has already written to."""
    run_dir = runs_dir / run
    run_dir.mkdir(parents=True, exist_ok=True)
    log_path = run_dir / LOG_FILE
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        log.write(f"$ {shlex.join(command)}\n".encode())
        log.flush()
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=env,
                close_fds=True,
            )
        except OSError as exc:
            raise AlmError(f"could not start {command[0]}: {exc}") from None
    return Trainer(run=run, command=command, log_path=log_path, process=process)


def interrupt_pid(pid: int) -> None:
    """SIGINT to a trainer this dashboard did not start (pid from train.pid): only that process."""
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGINT)


def tail_text(path: Path, lines: int = 20, max_bytes: int = 64 * 1024) -> str:
    """The last `lines` lines of a (possibly large) log file, reading at most `max_bytes` from its end."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            data = fh.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace").replace("\r", "\n")
    return "\n".join(text.splitlines()[-lines:])
