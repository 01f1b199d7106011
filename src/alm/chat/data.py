"""Chat datasets: JSONL files in the formats TRL reads, validated with the line number of every problem.

One JSON object a line:

    {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]}
    {"prompt": "What is 2 + 2?", "completion": "4"}                              # or both message lists
    {"prompt": "What is 2 + 2?", "chosen": "4", "rejected": "5"}                 # or all three message lists

A plain-string prompt is one user message and a plain-string completion/chosen/rejected one assistant message.
Roles are system (first message only), user and assistant. Other keys on a line (ids, sources) are ignored, as
TRL does. Fine-tuning data (`load_conversations`) takes the first two forms; preference data
(`load_preferences`) the third. Only the completion's assistant turns are trained (and scored by DPO).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from alm.chat.format import ROLES, Message
from alm.errors import DataError, UsageError

T = TypeVar("T")
FORMAT_HINT = (
    'each line must be one JSON object: {"messages": [{"role", "content"}, ...]}, {"prompt", "completion"} '
    'or, for preferences, {"prompt", "chosen", "rejected"}'
)


@dataclass(frozen=True)
class Conversation:
    """Messages to fine-tune on; assistant turns from message `train_from` on are trained."""

    messages: tuple[Message, ...]
    train_from: int = 0
    line: int = 0  # where it came from, for errors found later (e.g. too long for the context)


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred and a dispreferred completion."""

    prompt: tuple[Message, ...]
    chosen: tuple[Message, ...]
    rejected: tuple[Message, ...]
    line: int = 0

    def conversations(self) -> tuple[Conversation, Conversation]:
        """(prompt + chosen, prompt + rejected), each training only its completion."""
        start = len(self.prompt)
        return (
            Conversation(self.prompt + self.chosen, start, self.line),
            Conversation(self.prompt + self.rejected, start, self.line),
        )


class Record:
    """One JSONL line being validated; `fail` makes a DataError naming the file and line."""

    def __init__(self, path: Path, number: int, record: dict[str, Any]):
        self.path, self.number, self.record = path, number, record

    def fail(self, message: str, hint: str | None = None) -> DataError:
        return DataError(f"{self.path}:{self.number}: {message}", hint=hint)

    def messages(self, key: str, default_role: str | None) -> tuple[Message, ...]:
        """Field `key` as messages: a string is one message of `default_role` (if it has one)."""
        value = self.record[key]
        if isinstance(value, str) and default_role is not None:
            return ({"role": default_role, "content": value},)
        if not isinstance(value, list):
            kind = "a list of messages" if default_role is None else "a string or a list of messages"
            raise self.fail(f"'{key}' must be {kind}, not {type(value).__name__}")
        if not value:
            raise self.fail(f"'{key}' is an empty list of messages")
        out: list[Message] = []
        for i, item in enumerate(value):
            where = f"'{key}'[{i}]"
            if not isinstance(item, dict) or "role" not in item or "content" not in item:
                raise self.fail(f'{where} must be an object with "role" and "content"')
            role, content = item["role"], item["content"]
            if role not in ROLES:
                raise self.fail(
                    f"{where} has unknown role {role!r}; roles are {', '.join(ROLES)}",
                    hint="rename the role or drop the message",
                )
            if not isinstance(content, str):
                raise self.fail(f"{where} content must be a string, not {type(content).__name__}")
            out.append({"role": role, "content": content})
        return tuple(out)

    def check_order(self, messages: tuple[Message, ...], what: str) -> None:
        for i, message in enumerate(messages):
            if message["role"] == "system" and i > 0:
                raise self.fail(f"{what}: a system message may only come first (found one at message {i})")
        if all(m["role"] == "system" for m in messages):
            raise self.fail(f"{what}: no user or assistant message, only a system prompt")


def read_records(path: str | Path, hint: str = FORMAT_HINT) -> Iterator[Record]:
    """Each non-blank line of a JSONL file as a Record; a missing file, bad JSON or a non-object line is an error
    (with `hint`, which says what a line should hold)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"data file not found: {path}", hint=hint)
    try:
        with path.open(encoding="utf-8-sig") as fh:
            for number, text in enumerate(fh, 1):
                if not text.strip():
                    continue
                try:
                    record = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})", hint=hint) from None
                if not isinstance(record, dict):
                    raise DataError(
                        f"{path}:{number}: expected a JSON object, got {type(record).__name__}", hint=hint
                    )
                yield Record(path, number, record)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not UTF-8 text ({exc.reason})", hint="convert the file to UTF-8") from None


def _conversation(line: Record) -> Conversation:
    record = line.record
    if "messages" in record:
        messages = line.messages("messages", None)
        line.check_order(messages, "messages")
        conversation = Conversation(messages, 0, line.number)
    elif "prompt" in record and "completion" in record:
        prompt, completion = line.messages("prompt", "user"), line.messages("completion", "assistant")
        line.check_order(prompt + completion, "prompt + completion")
        conversation = Conversation(prompt + completion, len(prompt), line.number)
    else:
        keys = ", ".join(sorted(record)) or "none"
        hint = "this looks like preference data (for DPO)" if "chosen" in record else FORMAT_HINT
        raise line.fail(f'no "messages" nor "prompt" + "completion" (keys: {keys})', hint=hint)
    trained = conversation.messages[conversation.train_from :]
    if not any(m["role"] == "assistant" for m in trained):
        raise line.fail(
            "no assistant message to learn from", hint="end each example with the assistant's answer"
        )
    return conversation


def _preference(line: Record) -> PreferencePair:
    missing = [key for key in ("prompt", "chosen", "rejected") if key not in line.record]
    if missing:
        keys = ", ".join(sorted(line.record)) or "none"
        raise line.fail(
            f"preference data needs prompt, chosen and rejected; missing {', '.join(missing)} (keys: {keys})",
            hint=FORMAT_HINT,
        )
    prompt = line.messages("prompt", "user")
    chosen, rejected = line.messages("chosen", "assistant"), line.messages("rejected", "assistant")
    for name, completion in (("chosen", chosen), ("rejected", rejected)):
        line.check_order(prompt + completion, f"prompt + {name}")
        if not any(m["role"] == "assistant" for m in completion):
            raise line.fail(f"'{name}' has no assistant message to score")
    if chosen == rejected:
        raise line.fail("chosen and rejected are the same, so there is nothing to prefer")
    return PreferencePair(prompt, chosen, rejected, line.number)


def _load(path: str | Path, parse: Callable[[Record], T], what: str) -> list[T]:
    items = [parse(line) for line in read_records(path)]
    if not items:
        raise DataError(f"{path} holds no {what}", hint=FORMAT_HINT)
    return items


def load_conversations(path: str | Path) -> list[Conversation]:
    """Every conversation in a messages or prompt/completion JSONL file (the forms may be mixed)."""
    return _load(path, _conversation, "conversations")


def load_preferences(path: str | Path) -> list[PreferencePair]:
    """Every preference pair in a prompt/chosen/rejected JSONL file."""
    return _load(path, _preference, "preference pairs")


def write_jsonl(path: str | Path, records: list[dict[str, Any]]) -> Path:
    """Records as JSON lines (UTF-8, one object a line), written atomically."""
    from alm.fileio import atomic_write_text

    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


__all__ = [
    "FORMAT_HINT",
    "Conversation",
    "PreferencePair",
    "Record",
    "load_conversations",
    "load_preferences",
    "read_records",
    "write_jsonl",
]
