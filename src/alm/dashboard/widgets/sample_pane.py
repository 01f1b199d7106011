"""Interactive sampling from a run's checkpoints, streamed token by token from a worker thread.

Every `alm sample` option is a knob (from the one spec), and the command line they stand for is shown under
them. The prompt box also takes a whole command line, `alm sample --prompt "…" --temperature 0.7 …`: its flags
override the knobs, which then show what it used. One sample runs at a time; ctrl+c (or esc) cancels it between
tokens. The output follows the newest text; copy (y) or save (w) it when it is done.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widgets import Button, Checkbox, Input, Label, RichLog, Select, Static

from alm.dashboard.sample_command import command_line, parse_sample_line
from alm.dashboard.sampling import SampleRequest, SamplerSession
from alm.dashboard.widgets.knobs import SamplingKnobs
from alm.errors import AlmError, UsageError
from alm.fileio import atomic_write_text
from alm.runs import SAMPLES_DIR
from alm.sample.options import (
    COMPILE,
    NUM_SAMPLES,
    QUANTIZE,
    SAMPLING_OPTIONS,
    check_num_samples,
    sampling_config,
)

PRECEDENCE = "a command line: its flags override the knobs (flags > knobs > alm sample's defaults)"


@dataclass(frozen=True)
class SampleResult:
    request: SampleRequest
    text: str
    note: str  # checkpoint step, seed, token count, speed, why it stopped


class PromptInput(Input):
    """The prompt box: up/down recall earlier prompts, like a shell."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "recall(-1)", "Earlier prompt", show=False),
        Binding("down", "recall(1)", "Later prompt", show=False),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.history: list[str] = []
        self._at = 0

    def remember(self, text: str) -> None:
        if text and (not self.history or self.history[-1] != text):
            self.history.append(text)
        self._at = len(self.history)

    def action_recall(self, delta: int) -> None:
        if not self.history:
            return
        self._at = max(0, min(len(self.history), self._at + delta))
        self.value = self.history[self._at] if self._at < len(self.history) else ""
        self.cursor_position = len(self.value)


class GenerationMessages:
    """Messages a generating worker thread posts to its pane (post_message is thread-safe)."""

    class Piece(Message):
        def __init__(self, text: str, tokens: int, rate: float | None) -> None:
            super().__init__()
            self.text, self.tokens, self.rate = text, tokens, rate

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


def rate_of(info, started: float) -> tuple[int, float | None]:
    """(tokens so far, tokens per second) of a generation that began at `started` (perf_counter)."""
    tokens = int(getattr(info, "new_tokens", 0) or 0)
    elapsed = time.perf_counter() - started
    return tokens, (tokens / elapsed if tokens and elapsed > 0 else None)


def describe(info, cancel: threading.Event, step: int | None, rate: float | None) -> str:
    """The line under a finished generation: step, seed, tokens, speed, why it stopped."""
    parts = [f"step {step}" if step is not None else "", f"seed {getattr(info, 'seed', None)}"]
    if getattr(info, "new_tokens", None) is not None:
        parts.append(f"{info.new_tokens} tokens")
    if rate:
        parts.append(f"{rate:.1f} tok/s")
    if getattr(info, "prompt_trimmed", 0):
        parts.append(f"prompt trimmed by {info.prompt_trimmed} tokens to fit the context")
    reason = "cancelled" if cancel.is_set() else getattr(info, "stop_reason", None)
    if reason == "eos" and not getattr(info, "new_tokens", 0):
        reason = "eos (the model ended the text at once)"
    if reason:
        parts.append(f"stop: {reason}")
    return " · ".join(p for p in parts if p)


class SamplePane(Vertical, GenerationMessages):
    """Knobs, the command line they make, the prompt, the live output and a history of earlier samples."""

    def __init__(self, run_dir: Path, session: SamplerSession | None = None, *, id: str | None = None):
        super().__init__(id=id)
        self.run_dir = run_dir
        self.session = session or SamplerSession(run_dir)
        self.cancel_event = threading.Event()
        self.running = False
        self.training_device: str | None = (
            None  # device type of a live trainer of this run, for the GPU warning
        )
        self._prompt = self._output = ""
        self.history: list[SampleResult] = []
        self.last: SampleResult | None = None

    def compose(self) -> ComposeResult:
        yield SamplingKnobs(
            self.run_dir,
            (*SAMPLING_OPTIONS, NUM_SAMPLES, QUANTIZE, COMPILE),
            prefix="sample",
            id="sample-knobs",
        )
        yield Static("", id="sample-command")
        with Horizontal(id="sample-prompt-row", classes="prompt-row"):
            yield PromptInput(
                placeholder='prompt (enter generates) — or a command line: alm sample --prompt "ROMEO:" …',
                id="sample-prompt",
                compact=True,
            )
            yield Button("Generate", id="sample-go", variant="primary")
            yield Button("Cancel", id="sample-cancel", variant="warning", disabled=True)
            yield Button("Copy", id="sample-copy", disabled=True)
            yield Button("Save", id="sample-save", disabled=True)
        yield Static("", id="sample-warning")
        with VerticalScroll(id="sample-output-box", classes="output-box"):
            yield Static("", id="sample-output")
        yield Static("", id="sample-status", classes="output-status")
        yield Label("history", classes="section-title", id="sample-history-title")
        yield RichLog(id="sample-history", wrap=True, max_lines=2000)

    def on_mount(self) -> None:
        self._show_command()

    @property
    def knobs(self) -> SamplingKnobs:
        return self.query_one("#sample-knobs", SamplingKnobs)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#sample-prompt", PromptInput)

    def refresh_checkpoints(self) -> None:
        self.knobs.refresh_checkpoints()

    # --- the GPU warning --------------------------------------------------------------------------------------
    def set_training_device(self, device_type: str | None) -> None:
        self.training_device = device_type
        self._update_warning()

    def _update_warning(self) -> None:
        device = self.knobs.device
        shares = self.training_device in ("mps", "cuda") and device in ("auto", self.training_device)
        text = (
            f"This run is training on {self.training_device}: sampling there shares the GPU and slows training "
            "(pick device cpu to avoid it)."
            if shares
            else ""
        )
        warning = self.query_one("#sample-warning", Static)
        warning.update(Text(text, style="yellow"))
        warning.display = bool(text)

    # --- the command line the knobs stand for -----------------------------------------------------------------
    @on(Input.Changed)
    @on(Checkbox.Changed)
    @on(Select.Changed)
    def _inputs_changed(self, event: Message) -> None:
        if isinstance(event, Select.Changed) and event.select.id == "sample-device":
            self._update_warning()
        self._show_command()

    def _show_command(self) -> None:
        line = self.prompt.value
        command = self.query_one("#sample-command", Static)
        if _is_command_line(line):
            command.update(Text(PRECEDENCE, style="dim italic"))
            return
        try:
            request, count = self.form_request(line or "…", check=False)
        except AlmError as exc:
            command.update(Text(exc.message, style="red"))
            return
        command.update(Text.assemble(("= ", "dim"), (command_line(self.run_dir.name, request, count), "dim")))

    # --- requests ---------------------------------------------------------------------------------------------
    def form_request(self, prompt: str, *, check: bool = True) -> tuple[SampleRequest, int]:
        """(the request the knobs make for `prompt`, how many samples); bad values are UsageErrors naming the knob."""
        values = self.knobs.values()
        count = values.pop(NUM_SAMPLES.name)
        compile, quantize = values.pop(COMPILE.name), values.pop(QUANTIZE.name)
        checkpoint = self.knobs.checkpoint if check else _quiet_checkpoint(self.knobs)
        request = SampleRequest(
            prompt=prompt,
            checkpoint=checkpoint,
            device=self.knobs.device,
            options=values,
            compile=compile,
            quantize=quantize,
        )
        if check:
            sampling_config(values)
            check_num_samples(count)
        return request, count

    def build_requests(self, line: str) -> list[SampleRequest]:
        """A typed `alm sample …` line starts from the knobs and its flags win (the knobs then show what it
        used); anything else is a prompt for the knobs. One request per sample, seeds seed, seed+1, …"""
        if _is_command_line(line):
            defaults = {**self.knobs.values(), "device": self.knobs.device}
            checkpoint = _quiet_checkpoint(self.knobs)
            if checkpoint is not None:
                defaults["checkpoint"] = checkpoint
            requests = parse_sample_line(line, run_dir=self.run_dir, defaults=defaults)
            first = requests[0]
            shown = {
                NUM_SAMPLES.name: len(requests),
                COMPILE.name: first.compile,
                QUANTIZE.name: first.quantize,
            }
            self.knobs.set_values(
                {**first.options, **shown}, checkpoint=first.checkpoint, device=first.device
            )
            return requests
        if not line.strip():
            raise UsageError(
                "the prompt is empty: type the text to continue",
                hint="to sample from the start of a document, type: alm sample --prompt ''",
            )
        request, count = self.form_request(line)
        seed = request.options.get("seed")
        return [
            dataclasses.replace(
                request, options={**request.options, "seed": None if seed is None else seed + i}
            )
            for i in range(count)
        ]

    # --- running ----------------------------------------------------------------------------------------------
    @on(Input.Submitted, "#sample-prompt")
    @on(Button.Pressed, "#sample-go")
    def generate(self) -> None:
        if self.running:
            self.notify(
                "A sample is already being generated: wait, or cancel it (ctrl+c).", severity="warning"
            )
            return
        line = self.prompt.value
        try:
            requests = self.build_requests(line)
        except AlmError as exc:
            self._show_error(str(exc))
            return
        self.prompt.remember(line)
        self.prompt.value = ""  # typing next starts a new prompt; up recalls this one
        self.start(requests)

    def start(self, requests: list[SampleRequest]) -> None:
        self.running = True
        self.cancel_event = threading.Event()
        self._begin(requests[0])
        self._buttons()
        self._run(requests, self.cancel_event)

    def _buttons(self) -> None:
        self.query_one("#sample-go", Button).disabled = self.running
        self.query_one("#sample-cancel", Button).disabled = not self.running
        done = not self.running and self.last is not None
        self.query_one("#sample-copy", Button).disabled = not done
        self.query_one("#sample-save", Button).disabled = not done

    def _begin(self, request: SampleRequest) -> None:
        self._prompt, self._output = request.prompt, ""
        self.query_one("#sample-output", Static).update(Text(request.prompt, style="bold"))
        self.query_one("#sample-status", Static).update(Text("generating…", style="dim"))

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
        # Runs in a worker thread: talks to the UI only through messages.
        for index, request in enumerate(requests):
            last = index == len(requests) - 1 or cancel.is_set()
            if index:
                self.post_message(self.Started(request))
            pieces: list[str] = []
            started = time.perf_counter()
            rate = None
            try:
                for piece in self.session.stream(request, cancel):
                    pieces.append(piece)
                    tokens, rate = rate_of(self.session.last_info, started)
                    self.post_message(self.Piece(piece, tokens, rate))
            except AlmError as exc:
                self.post_message(self.Finished(request, "".join(pieces), "", error=str(exc)))
                return
            except Exception as exc:  # a bug or a torch failure must not take the dashboard down: show it
                error = f"{type(exc).__name__}: {exc}"
                self.post_message(self.Finished(request, "".join(pieces), "", error=error))
                return
            _, rate = rate_of(self.session.last_info, started)
            loaded = self.session.loaded
            note = describe(self.session.last_info, cancel, loaded.step if loaded else None, rate)
            self.post_message(self.Finished(request, "".join(pieces), note, last=last))
            if last:
                return

    def on_generation_messages_piece(self, message: GenerationMessages.Piece) -> None:
        self._output += message.text
        self.query_one("#sample-output", Static).update(Text.assemble((self._prompt, "bold"), self._output))
        speed = f" · {message.rate:.1f} tok/s" if message.rate else ""
        self.query_one("#sample-status", Static).update(
            Text(f"generating… {message.tokens} tokens{speed} · ctrl+c cancels", style="dim")
        )
        self.query_one("#sample-output-box", VerticalScroll).scroll_end(animate=False)

    def on_generation_messages_started(self, message: GenerationMessages.Started) -> None:
        self._begin(message.request)

    def on_generation_messages_finished(self, message: GenerationMessages.Finished) -> None:
        if message.last or message.error:
            self.running = False
        if message.error:
            self._buttons()
            self._show_error(message.error)
            return
        self.query_one("#sample-output", Static).update(
            Text.assemble((message.request.prompt, "bold"), message.text)
        )
        self.query_one("#sample-status", Static).update(Text(message.note, style="dim"))
        self.query_one("#sample-output-box", VerticalScroll).scroll_end(animate=False)
        result = SampleResult(message.request, message.text, message.note)
        self.history.append(result)
        self.last = result
        self._buttons()
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
        self.query_one("#sample-status", Static).update(Text(text, style="red"))

    # --- keeping the output -----------------------------------------------------------------------------------
    @on(Button.Pressed, "#sample-copy")
    def copy_output(self) -> None:
        if self.last is None:
            self.notify("Nothing generated yet.", severity="warning")
            return
        self.app.copy_to_clipboard(self.last.request.prompt + self.last.text)
        self.notify("sample copied to the clipboard")

    @on(Button.Pressed, "#sample-save")
    def save_output(self) -> Path | None:
        """Write the latest sample, with the command that reproduces it, to runs/NAME/samples/."""
        if self.last is None:
            self.notify("Nothing generated yet.", severity="warning")
            return None
        stamp = time.strftime("%Y%m%d-%H%M%S")
        path = self.run_dir / SAMPLES_DIR / f"sample-{stamp}-{len(self.history)}.txt"
        header = f"# {command_line(self.run_dir.name, self.last.request)}\n# {self.last.note}\n\n"
        try:
            atomic_write_text(path, header + self.last.request.prompt + self.last.text + "\n")
        except OSError as exc:
            self.notify(f"Could not save to {path}: {exc.strerror}", severity="error")
            return None
        self.notify(f"saved {path}")
        return path


def _is_command_line(line: str) -> bool:
    words = line.split(maxsplit=2)
    return words[:2] == ["alm", "sample"] or words[:1] == ["sample"]


def _quiet_checkpoint(knobs: SamplingKnobs) -> str | None:
    try:
        return knobs.checkpoint
    except UsageError:
        return None
