"""One thread drives the generation engine; requests join and leave it between steps (continuous batching).

Request handlers never touch the engine: they hand a `Ticket` (one or more sequences to generate) to
`Scheduler.submit`, which admits it only while the server holds fewer than `capacity` sequences (decoding plus
waiting for a slot: a bounded queue, never a backlog) and raises `Overloaded` otherwise, or `Draining` once
shutdown has begun. The scheduler thread moves tickets into the engine, runs `engine.step()` while anything is
in it, and hands every piece of text to the ticket's `deliver` callback, on the scheduler thread — the server
passes a callback that forwards it to the request's event loop. `ticket.cancel()` (a client went away) stops its
sequences at the next step, which frees their slots.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from alm.errors import AlmError
from alm.sample.options import SamplingConfig

if TYPE_CHECKING:
    from alm.sample.engine import Engine, GenerationInfo, StopReason

log = logging.getLogger("alm.serve")


class Overloaded(AlmError):
    """The server holds as many sequences as it may: retry later (HTTP 429)."""


class Draining(AlmError):
    """The server is shutting down and takes no new work (HTTP 503)."""


@dataclass(frozen=True)
class Job:
    """One sequence to generate. A text prompt is encoded by the engine (stops at the tokenizer's end of
    document); token ids (a rendered chat) stop at `eos_ids` and are decoded to text as well."""

    prompt: str | Sequence[int]
    cfg: SamplingConfig
    eos_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Update:
    """News for a ticket about its job `index`: a piece of text; at the end `finish` (the stop reason) and
    `info`; or `error`, when generation failed (the ticket's other jobs end with it)."""

    index: int
    text: str = ""
    finish: StopReason | None = None
    info: GenerationInfo | None = None
    error: str | None = None

    @property
    def ended(self) -> bool:
        return self.finish is not None or self.error is not None


@dataclass(eq=False)
class Ticket:
    """A request's jobs, and where their updates go (`deliver` runs on the scheduler thread)."""

    jobs: Sequence[Job]
    deliver: Callable[[Update], object]
    cancelled: threading.Event = field(default_factory=threading.Event)
    pending: set[int] = field(default_factory=set)  # jobs not yet ended (the scheduler's)

    def cancel(self) -> None:
        """Stop generating (from any thread; a no-op once every job has ended)."""
        self.cancelled.set()


class Scheduler:
    def __init__(self, make_engine: Callable[[], Engine], *, capacity: int):
        self._make_engine = make_engine
        self.engine = make_engine()
        self.capacity = capacity
        self._lock = threading.Condition()
        self._inbox: list[Ticket] = []
        self._live: set[Ticket] = set()
        self._held = 0  # sequences admitted and not yet ended
        self._draining = False
        self._stopping = False
        self.busiest = 0  # the most sequences one step has decoded together (batching at work)
        self._thread = threading.Thread(target=self._run, name="alm-serve-scheduler", daemon=True)

    # -- the handlers' side -----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, ticket: Ticket) -> Ticket:
        with self._lock:
            if self._draining:
                raise Draining("the server is shutting down")
            if self._held + len(ticket.jobs) > self.capacity:
                raise Overloaded(
                    f"the server is at capacity ({self._held} of {self.capacity} sequences in progress or queued)"
                )
            ticket.pending = set(range(len(ticket.jobs)))
            self._held += len(ticket.jobs)
            self._inbox.append(ticket)
            self._lock.notify()
        return ticket

    @property
    def held(self) -> int:
        """Sequences decoding or waiting for a slot."""
        return self._held

    @property
    def draining(self) -> bool:
        return self._draining

    def drain(self) -> None:
        """Take no new tickets; the ones held run to their end."""
        with self._lock:
            self._draining = True

    def close(self, timeout: float = 5.0) -> None:
        """Cancel whatever is still running and stop the thread (waiting up to `timeout` seconds)."""
        with self._lock:
            self._draining = self._stopping = True
            for ticket in [*self._inbox, *self._live]:
                ticket.cancel()
            self._lock.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)

    # -- the scheduler thread ---------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._inbox and not self.engine.busy and not self._stopping:
                    self._lock.wait()
                if self._stopping and not self._inbox and not self.engine.busy:
                    return
                arrived, self._inbox = self._inbox, []
            try:
                for ticket in arrived:
                    self._admit(ticket)
                if self.engine.busy:
                    events = self.engine.step()
                    self.busiest = max(self.busiest, len(self.engine.active))
                    for event in events:
                        ticket, index = event.sequence.user
                        info = event.sequence.info
                        if event.token is None:
                            self._deliver(ticket, Update(index, event.text, info.stop_reason, info))
                        elif event.text:
                            ticket.deliver(Update(index, event.text))
            except Exception as exc:  # a bug or a device failure: fail what is in flight, keep serving
                log.exception("generation failed")
                self._fail_all(f"generation failed: {type(exc).__name__}: {exc}")

    def _admit(self, ticket: Ticket) -> None:
        with self._lock:
            self._live.add(ticket)
        for index, job in enumerate(ticket.jobs):
            decode = not isinstance(job.prompt, str)
            try:
                self.engine.submit(
                    job.prompt,
                    job.cfg,
                    cancel=ticket.cancelled,
                    eos_id=job.eos_ids if decode else None,
                    decode=decode,
                    user=(ticket, index),
                )
            except AlmError as exc:  # the handler checks prompts first; this is the backstop
                self._deliver(ticket, Update(index, error=exc.message))

    def _deliver(self, ticket: Ticket, update: Update) -> None:
        """Pass on a job's last update and release its place."""
        with self._lock:
            self._held -= 1
            ticket.pending.discard(update.index)
            if not ticket.pending:
                self._live.discard(ticket)
        ticket.deliver(update)

    def _fail_all(self, message: str) -> None:
        """Every unfinished job gets `message`; the engine is replaced (its state is unknown)."""
        self.engine = self._make_engine()
        for ticket in list(self._live):
            for index in sorted(ticket.pending):
                self._deliver(ticket, Update(index, error=message))


__all__ = ["Draining", "Job", "Overloaded", "Scheduler", "Ticket", "Update"]
