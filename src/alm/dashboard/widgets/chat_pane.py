"""Talking to a run's model (`alm.chat.session.ChatSession`): multi-turn, streamed, cancellable with ctrl+c.

Shown for runs whose tokenizer has the chat tokens. A model only pretrained on text has never seen a
conversation, so its replies are noise until it is fine-tuned (`alm sft`); the pane says so for such runs.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Static

from alm.dashboard.sampling import SampleRequest, SamplerSession
from alm.dashboard.widgets.knobs import SamplingKnobs
from alm.dashboard.widgets.sample_pane import GenerationMessages, PromptInput, describe, rate_of
from alm.errors import AlmError, UsageError
from alm.runs import SAMPLES_DIR
from alm.sample.options import QUANTIZE, SAMPLING_OPTIONS, sampling_config

# A reply ends at the model's end-of-turn token: ignoring <|eos|> would only make it ramble past it.
CHAT_OPTIONS = (*(opt for opt in SAMPLING_OPTIONS if opt.name != "ignore_eos"), QUANTIZE)
ROLE_STYLE = {"user": "bold cyan", "assistant": "bold green", "system": "bold magenta"}


class ChatPane(Vertical, GenerationMessages):
    def __init__(self, run_dir: Path, session: SamplerSession, *, fine_tuned: bool, id: str | None = None):
        super().__init__(id=id)
        self.run_dir = run_dir
        self.session = session
        self.fine_tuned = fine_tuned
        self.turns: list[tuple[str, str]] = []  # (role, text) as shown; the session keeps the model's copy
        self.reply = ""
        self.running = False
        self.cancel_event = threading.Event()

    def compose(self) -> ComposeResult:
        yield SamplingKnobs(self.run_dir, CHAT_OPTIONS, prefix="chat", id="chat-knobs")
        yield Input(placeholder="system prompt (optional; empty: none)", id="chat-system", compact=True)
        if not self.fine_tuned:
            yield Static(
                "This run was pretrained, not fine-tuned for chat: expect noise (fine-tune it with alm sft).",
                id="chat-note",
                classes="note",
            )
        with VerticalScroll(id="chat-log-box", classes="output-box"):
            yield Static("", id="chat-log")
        yield Static("", id="chat-status", classes="output-status")
        with Horizontal(id="chat-prompt-row", classes="prompt-row"):
            yield PromptInput(placeholder="message (enter sends)", id="chat-message", compact=True)
            yield Button("Send", id="chat-send", variant="primary")
            yield Button("Cancel", id="chat-cancel", variant="warning", disabled=True)
            yield Button("New chat", id="chat-new")
            yield Button("Save", id="chat-save")

    @property
    def knobs(self) -> SamplingKnobs:
        return self.query_one("#chat-knobs", SamplingKnobs)

    @property
    def prompt(self) -> PromptInput:
        return self.query_one("#chat-message", PromptInput)

    def refresh_checkpoints(self) -> None:
        self.knobs.refresh_checkpoints()

    @on(Input.Submitted, "#chat-message")
    @on(Button.Pressed, "#chat-send")
    def send(self) -> None:
        if self.running:
            self.notify("A reply is being generated: wait, or cancel it (ctrl+c).", severity="warning")
            return
        text = self.prompt.value
        try:
            if not text.strip():
                raise UsageError("the message is empty: type something to say")
            values = self.knobs.values()
            quantize = values.pop(QUANTIZE.name)
            request = SampleRequest(
                prompt=text,
                checkpoint=self.knobs.checkpoint,
                device=self.knobs.device,
                options=values,
                quantize=quantize,
            )
            sampling_config(request.options)
        except AlmError as exc:
            self._status(str(exc), "red")
            return
        self.prompt.remember(text)
        self.prompt.value = ""
        self.turns.append(("user", text))
        self.reply = ""
        self.running = True
        self.cancel_event = threading.Event()
        self._buttons()
        self._show_conversation()
        self._status("replying… ctrl+c cancels", "dim")
        system = self.query_one("#chat-system", Input).value.strip() or None
        self._run(request, self.cancel_event, system)

    @work(thread=True, group="chat", exit_on_error=False)
    def _run(self, request: SampleRequest, cancel: threading.Event, system: str | None) -> None:
        started = time.perf_counter()
        pieces: list[str] = []
        try:
            for piece in self.session.reply(request, cancel, system):
                pieces.append(piece)
                tokens, rate = rate_of(self.session.last_info, started)
                self.post_message(self.Piece(piece, tokens, rate))
        except Exception as exc:  # an AlmError or a torch failure: shown, never fatal
            error = str(exc) if isinstance(exc, AlmError) else f"{type(exc).__name__}: {exc}"
            self.post_message(self.Finished(request, "".join(pieces), "", error=error))
            return
        _, rate = rate_of(self.session.last_info, started)
        loaded = self.session.loaded
        note = describe(self.session.last_info, cancel, loaded.step if loaded else None, rate)
        self.post_message(self.Finished(request, "".join(pieces), note))

    def on_generation_messages_piece(self, message: GenerationMessages.Piece) -> None:
        self.reply += message.text
        self._show_conversation()
        speed = f" · {message.rate:.1f} tok/s" if message.rate else ""
        self._status(f"replying… {message.tokens} tokens{speed} · ctrl+c cancels", "dim")

    def on_generation_messages_finished(self, message: GenerationMessages.Finished) -> None:
        self.running = False
        self._buttons()
        if message.error:
            if not message.text:  # the message never reached the model: take it back
                self.turns.pop()
            self._show_conversation()
            self._status(message.error, "red")
            return
        self.turns.append(("assistant", message.text))
        self.reply = ""
        self._show_conversation()
        self._status(message.note, "dim")

    def _show_conversation(self) -> None:
        parts: list[Text | str] = []
        shown = [*self.turns, ("assistant", self.reply)] if self.running else self.turns
        for role, text in shown:
            parts.append(Text.assemble((f"{role}: ", ROLE_STYLE.get(role, "bold")), text, "\n"))
        self.query_one("#chat-log", Static).update(Text.assemble(*parts) if parts else Text("", style="dim"))
        self.query_one("#chat-log-box", VerticalScroll).scroll_end(animate=False)

    def _status(self, text: str, style: str) -> None:
        self.query_one("#chat-status", Static).update(Text(text, style=style))

    def _buttons(self) -> None:
        self.query_one("#chat-send", Button).disabled = self.running
        self.query_one("#chat-cancel", Button).disabled = not self.running

    @on(Button.Pressed, "#chat-cancel")
    def cancel(self) -> bool:
        if not self.running:
            return False
        self.cancel_event.set()
        return True

    @on(Button.Pressed, "#chat-new")
    def new_chat(self) -> None:
        if self.running:
            self.notify("Cancel the reply first (ctrl+c).", severity="warning")
            return
        self.turns.clear()
        self.session.reset_chat()
        self._show_conversation()
        self._status("new conversation", "dim")

    @on(Button.Pressed, "#chat-save")
    def save(self) -> Path | None:
        """The conversation as one JSONL line of {"messages": [...]}: the fine-tuning format."""
        chat = self.session.chat
        if chat is None or not chat.turns:
            self.notify("Nothing said yet.", severity="warning")
            return None
        path = self.run_dir / SAMPLES_DIR / f"chat-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        try:
            saved = chat.save(path)
        except OSError as exc:
            self.notify(f"Could not save to {path}: {exc.strerror}", severity="error")
            return None
        self.notify(f"saved {saved}")
        return saved

    def on_unmount(self) -> None:
        self.cancel_event.set()
