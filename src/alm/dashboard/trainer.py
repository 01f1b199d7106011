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

from alm.errors import AlmError, UsageError
from alm.rundir import RunDir

# Exit statuses a trainer may end with, as the dashboard reports them.
EXIT_OK, EXIT_STOPPED = 0, 130
# The last line of a Python traceback: the exception and its message.
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b.*")


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

    The run directory is created for the log; `alm train` only refuses directories it has already written to.
    A run another process is writing (its lock is held) is refused before anything is started or written."""
    run_dir = RunDir(runs_dir / run)
    # Checked here as well as by `alm train`, so a refused trainer's error never lands in the live run's log.
    writer = run_dir.writer()
    if writer is not None:
        raise UsageError(
            f"run {run} is in use by {writer.describe()}", hint="wait for it to finish or stop it first"
        )
    run_dir.path.mkdir(parents=True, exist_ok=True)
    log_path = run_dir.log_path
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


def explain_exit(code: int, log_path: Path) -> str:
    """How a trainer this dashboard started ended, in words: the cause (the error it printed, the exception, or
    the signal that killed it), never merely its last progress line."""
    if code == EXIT_OK:
        return "finished"
    if code == EXIT_STOPPED:
        return "stopped safely (exit 130): last.pt saved — press r to resume"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return (
            f"killed by {name}: ended from outside before it could stop cleanly (out of memory, or a kill) — "
            "r resumes from the last checkpoint, if one was saved"
        )
    return f"trainer failed (exit {code}): {failure_cause(tail_text(log_path, 80))}"


def failure_cause(log: str) -> str:
    """The reason a trainer's output gives for failing: alm's `error:` line, else the exception a traceback
    ends with, else its last line that is not progress."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    for line in reversed(lines):
        if _EXCEPTION_LINE.match(line):
            return line
    quiet = [line for line in lines if not line.startswith(("step ", "$ ")) and "tok/s" not in line]
    return quiet[-1] if quiet else "it printed no error (see the Log tab)"
