"""Interactive sampling from a run's checkpoints, streamed token by token from a worker thread.

The prompt box also takes a whole command line, `alm sample --prompt "…" --temperature 0.7 …`, parsed with the
same option names as the CLI. One sample runs at a time; Esc cancels it between tokens.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Button, Input, Label, RichLog, Select, Static

from alm.dashboard.sample_command import parse_sample_line
from alm.dashboard.sampling import SampleRequest, SamplerSession, checkpoint_choices
from alm.dashboard.trainer import DEVICES
from alm.errors import AlmError, UsageError


@dataclass(frozen=True)
class SampleResult:
    request: SampleRequest
    text: str
    note: str  # checkpoint step, seed, token count, why it stopped


class SamplePane(Vertical):
    """Checkpoint picker, sampling knobs, prompt, live output and a history of earlier samples."""

    class Piece(Message):
        def __init__(self, text: str) -> None:
            super().__init__()
            self.text = text

    class Started(Message):
        def __init__(self, request: SampleRequest) -> None:
            super().__init__()
            self.request = request

    class Finished(Message):
        def __init__(
            self, request: SampleRequest, text: str, note: str, error: str | None = None, last: bool = True
        ) -> None:
            super().__init__()
            self.request, self.text, self.note, self.error, self.last = request, text, note, error, last

    def __init__(self, run_dir: Path, *, id: str | None = None):
        super().__init__(id=id)
        self.run_dir = run_dir
        self.session = SamplerSession(run_dir)
        self.cancel_event = threading.Event()
        self.running = False
        self.training_device: str | None = (
            None  # device type of a live trainer of this run, for the GPU warning
        )
        self._prompt = self._output = ""
        self._choices: list[str] = []
        self.history: list[SampleResult] = []

    def compose(self) -> ComposeResult:
        with Horizontal(id="sample-knobs"):
            yield Label("checkpoint")
            yield Select([], prompt="none yet", id="sample-checkpoint", allow_blank=True, compact=True)
            yield Label("temp")
            yield Input("0.8", id="sample-temperature", type="number", compact=True)
            yield Label("top-k")
            yield Input("0", id="sample-top-k", type="integer", compact=True)
            yield Label("top-p")
            yield Input("1.0", id="sample-top-p", type="number", compact=True)
            yield Label("max tokens")
            yield Input("200", id="sample-max-tokens", type="integer", compact=True)
            yield Label("device")
            yield Select(
                [(d, d) for d in DEVICES], value="auto", id="sample-device", allow_blank=False, compact=True
            )
        with Horizontal(id="sample-prompt-row"):
            yield Input(
                placeholder='prompt — or a command line: alm sample --prompt "ROMEO:" --temperature 0.7',
                id="sample-prompt",
            )
            yield Button("Generate", id="sample-go", variant="primary", compact=True)
            yield Button("Cancel", id="sample-cancel", compact=True, disabled=True)
        yield Static("", id="sample-warning")
        yield Static("", id="sample-output")
        yield Label("history", classes="section-title")
        yield RichLog(id="sample-history", wrap=True, max_lines=2000)

    def on_mount(self) -> None:
        self.refresh_checkpoints()

    # --- inputs -----------------------------------------------------------------------------------------------
    def refresh_checkpoints(self) -> None:
        """Offer the checkpoints now on disk, keeping the current choice when it still exists."""
        select = self.query_one("#sample-checkpoint", Select)
        choices = checkpoint_choices(self.run_dir)
        current = select.value
        if choices != self._choices:
            self._choices = choices
            select.set_options([(c, c) for c in choices])
            if current in choices:
                select.value = current
            elif choices:
                select.value = choices[0]

    def set_training_device(self, device_type: str | None) -> None:
        self.training_device = device_type
        self._update_warning()

    @on(Select.Changed, "#sample-device")
    def _device_changed(self) -> None:
        self._update_warning()

    def _update_warning(self) -> None:
        device = self.query_one("#sample-device", Select).value
        shares = self.training_device in ("mps", "cuda") and device in ("auto", self.training_device)
        text = (
            f"This run is training on {self.training_device}: sampling there shares the GPU and slows training "
            "(pick device cpu to avoid it)."
            if shares
            else ""
        )
        self.query_one("#sample-warning", Static).update(Text(text, style="yellow"))

    def form_request(self, prompt: str) -> SampleRequest:
        """A request from the knobs; bad numbers are a UsageError naming the field."""

        def number(widget_id: str, kind: type) -> float | int:
            raw = self.query_one(f"#{widget_id}", Input).value.strip()
            try:
                return kind(raw)
            except ValueError:
                label = widget_id.removeprefix("sample-").replace("-", " ")
                raise UsageError(f"{label}: {raw!r} is not a valid {kind.__name__}") from None

        checkpoint = self.query_one("#sample-checkpoint", Select).value
        if checkpoint == Select.NULL:
            raise UsageError("this run has no checkpoint yet", hint="wait for the first checkpoint event")
        options = {
            "temperature": number("sample-temperature", float),
            "top_k": number("sample-top-k", int),
            "top_p": number("sample-top-p", float),
            "max_new_tokens": number("sample-max-tokens", int),
        }
        device = str(self.query_one("#sample-device", Select).value)
        return SampleRequest(prompt=prompt, checkpoint=str(checkpoint), device=device, options=options)

    def build_requests(self, line: str) -> list[SampleRequest]:
        """A typed `alm sample …` line is parsed like the CLI; anything else is a prompt for the knobs above."""
        words = line.split(maxsplit=2)
        if words[:2] == ["alm", "sample"] or words[:1] == ["sample"]:
            return parse_sample_line(line, run_dir=self.run_dir)
        return [self.form_request(line)]

    # --- running ----------------------------------------------------------------------------------------------
    @on(Input.Submitted, "#sample-prompt")
    @on(Button.Pressed, "#sample-go")
    def generate(self) -> None:
        if self.running:
            self.notify(
                "A sample is already being generated: wait, or cancel it with Esc.", severity="warning"
            )
            return
        line = self.query_one("#sample-prompt", Input).value
        try:
            requests = self.build_requests(line)
        except AlmError as exc:
            self._show_error(str(exc))
            return
        self.start(requests)

    def start(self, requests: list[SampleRequest]) -> None:
        self.running = True
        self.cancel_event = threading.Event()
        self._begin(requests[0])
        self.query_one("#sample-go", Button).disabled = True
        self.query_one("#sample-cancel", Button).disabled = False
        self._run(requests, self.cancel_event)

    def _begin(self, request: SampleRequest) -> None:
        self._prompt, self._output = request.prompt, ""
        self.query_one("#sample-output", Static).update(Text(request.prompt, style="bold"))

    @on(Button.Pressed, "#sample-cancel")
    def cancel(self) -> bool:
        """Ask the running sample to stop after the current token; return whether one was running."""
        if not self.running:
            return False
        self.cancel_event.set()
        return True

    def on_unmount(self) -> None:
        self.cancel_event.set()  # a thread cannot be killed: ask it to stop so quitting never waits on it

    @work(thread=True, group="sample", exit_on_error=False)
    def _run(self, requests: list[SampleRequest], cancel: threading.Event) -> None:
        # Runs in a worker thread: talks to the UI only through messages (post_message is thread-safe).
        for index, request in enumerate(requests):
            last = index == len(requests) - 1 or cancel.is_set()
            if index:
                self.post_message(self.Started(request))
            pieces: list[str] = []
            try:
                for piece in self.session.stream(request, cancel):
                    pieces.append(piece)
                    self.post_message(self.Piece(piece))
            except AlmError as exc:
                self.post_message(self.Finished(request, "".join(pieces), "", error=str(exc)))
                return
            except Exception as exc:  # a bug or a torch failure must not take the dashboard down: show it
                error = f"{type(exc).__name__}: {exc}"
                self.post_message(self.Finished(request, "".join(pieces), "", error=error))
                return
            self.post_message(self.Finished(request, "".join(pieces), self._note(cancel), last=last))
            if last:
                return

    def _note(self, cancel: threading.Event) -> str:
        info = self.session.last_info
        loaded = self.session.loaded
        parts = [f"step {loaded.step}" if loaded else "", f"seed {getattr(info, 'seed', None)}"]
        if getattr(info, "new_tokens", None) is not None:
            parts.append(f"{info.new_tokens} tokens")
        if getattr(info, "prompt_trimmed", 0):
            parts.append(f"prompt trimmed by {info.prompt_trimmed} tokens to fit the context")
        reason = "cancelled" if cancel.is_set() else getattr(info, "stop_reason", None)
        if reason:
            parts.append(f"stop: {reason}")
        return " · ".join(p for p in parts if p)

    def on_sample_pane_piece(self, message: Piece) -> None:
        self._output += message.text
        self.query_one("#sample-output", Static).update(Text.assemble((self._prompt, "bold"), self._output))

    def on_sample_pane_started(self, message: Started) -> None:
        self._begin(message.request)

    def on_sample_pane_finished(self, message: Finished) -> None:
        if message.last or message.error:
            self.running = False
            self.query_one("#sample-go", Button).disabled = False
            self.query_one("#sample-cancel", Button).disabled = True
        if message.error:
            self._show_error(message.error)
            return
        self.query_one("#sample-output", Static).update(
            Text.assemble((message.request.prompt, "bold"), message.text, "\n", (message.note, "dim"))
        )
        self.history.append(SampleResult(message.request, message.text, message.note))
        self.query_one("#sample-history", RichLog).write(
            Text.assemble(
                (message.request.describe(), "cyan"),
                "  ",
                (message.note, "dim"),
                "\n",
                (message.request.prompt, "bold"),
                message.text,
                "\n",
            )
        )

    def _show_error(self, text: str) -> None:
        self.query_one("#sample-output", Static).update(Text(text, style="red"))
