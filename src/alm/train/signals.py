"""Graceful stop on SIGINT/SIGTERM: the first signal asks the loop to stop after the current optimizer step.

- 1st signal: set `requested`; the loop finishes the step it is in (never a half-accumulated one), saves
  last.pt, prints the resume command and exits 130.
- 2nd signal: outside a save, stop at once (KeyboardInterrupt; the previous checkpoints stay valid). During a
  save (`critical()`), it is deferred until the atomic rename is done, then raised.
- 3rd signal during a save: exit immediately. Files stay valid because every save is a rename of a complete
  temp file; an orphaned temp file is removed by the next save.
Handlers write with os.write: printing through Rich from inside a signal handler could deadlock on its lock.

A process that exits when training stops (the CLI: `StopRequest(exiting=True)`) ignores further signals once a
stop was requested: a late second Ctrl+C would otherwise land in the interpreter's shutdown and end it with a
KeyboardInterrupt traceback from an atexit callback, or kill it (-2 instead of 130) once the interpreter has
reset Python-level handlers to the default — which it does not do to SIG_IGN. Under a supervisor that stops
every process when one fails (torchrun: SIGTERM to the survivors, SIGKILL 30 s later), an exiting process whose
training failed ignores them too, so that it lives to say why (a rank that lost its peer) instead of dying
silently with -15 while its error is on the way to the terminal. Before training starts
(data preparation, model build) `interrupt_on_sigterm()` makes SIGTERM stop the command like Ctrl+C does — with
a message and exit 130 — instead of killing it silently with 143.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType

HANDLED = (signal.SIGINT, signal.SIGTERM)
EXIT_INTERRUPTED = 130


class StopRequest:
    """Counts stop signals; the training loop polls `requested` between optimizer steps."""

    def __init__(self, *, announce: bool = True, exiting: bool = False, supervised: bool = False):
        self.count = 0
        self.exiting = exiting  # the process exits once training stops: see the module docstring
        self.supervised = supervised  # torchrun kills this process 30 s after its stop signal
        self.signum: int | None = None
        self.announce = announce
        self._critical = 0
        self._deferred = False
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        return self.count > 0

    @property
    def reason(self) -> str:
        return "SIGTERM" if self.signum == signal.SIGTERM else "Ctrl+C"

    def request(self, signum: int = signal.SIGINT) -> None:
        """Record a stop request (what a signal does); also usable from code and tests."""
        self._handle(signum, None)

    def _say(self, text: str) -> None:
        if self.announce:
            with contextlib.suppress(OSError):
                os.write(2, f"\n{text}\n".encode())

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        self.signum = self.signum or signum
        if self.count == 1:
            self._say("stopping after this step and saving a checkpoint (press Ctrl+C again to stop at once)")
        elif self._critical:
            if self.count >= 3:
                self._say("forced exit; checkpoints on disk are intact (each save is an atomic rename)")
                os._exit(EXIT_INTERRUPTED)
            self._deferred = True
            self._say("saving a checkpoint; will stop as soon as it is written (Ctrl+C again to force)")
        else:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def critical(self) -> Iterator[None]:
        """A section (a checkpoint save) that a second signal must not interrupt."""
        self._critical += 1
        try:
            yield
        finally:
            self._critical -= 1
        if not self._critical and self._deferred:
            self._deferred = False
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequest]:
        """Install the handlers (main thread only; elsewhere signals keep their defaults) and restore them."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for signum in HANDLED:
            self._previous[signum] = signal.getsignal(signum)
            signal.signal(signum, self._handle)
        failed = False
        try:
            yield self
        except BaseException:
            failed = True
            raise
        finally:
            ignore = self.exiting and (self.requested or (failed and self.supervised))
            for signum, handler in self._previous.items():
                signal.signal(signum, signal.SIG_IGN if ignore else handler)  # type: ignore[arg-type]
            self._previous.clear()


@contextlib.contextmanager
def interrupt_on_sigterm(*, supervised: bool = False) -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt, as Ctrl+C does (main thread only; elsewhere a no-op). `supervised`
    (under torchrun): a failure leaving the block ignores stop signals from then on, as `StopRequest` does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException:
        if supervised:  # e.g. rank 0 failed while planning: this rank says so before torchrun's SIGTERM lands
            for signum in HANDLED:
                signal.signal(signum, signal.SIG_IGN)
        raise
    finally:
        # Unless replaced since: a trainer that stopped leaves SIGTERM ignored for the rest of the exit.
        if signal.getsignal(signal.SIGTERM) is signal.default_int_handler:
            signal.signal(signal.SIGTERM, previous)
