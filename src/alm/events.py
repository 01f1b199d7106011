"""The `events.jsonl` schema (docs/CONTRACTS.md): one dataclass per event type, the writer and the readers.

Torch-free. Each event is one JSON line, `{"schema": 1, "type": ..., "time": ..., <fields>}`, flushed as it is
written so readers (the dashboard, `alm runs`) see it at once. Non-finite floats are written as `null` (a NaN
loss is reported through a `warning` event, and the file stays strict JSON).

Readers are lenient, so that a file written by another version still reads: unknown fields are ignored, a missing
or mistyped field takes its default, and a record of an unknown type becomes an `UnknownEvent` that folds skip.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar, Union, get_args, get_origin, get_type_hints

from alm.errors import DataError

SCHEMA = 1


@dataclass(frozen=True, kw_only=True)
class Event:
    TYPE: ClassVar[str] = ""
    time: float | None = field(default_factory=time.time)  # unix seconds; None when a record lacks it

    @property
    def type(self) -> str:
        return self.TYPE


@dataclass(frozen=True, kw_only=True)
class StartEvent(Event):
    """A trainer started (or resumed: a resumed run appends a new start)."""

    TYPE: ClassVar[str] = "start"
    run: str = ""
    pid: int | None = None
    config: dict[str, Any] = field(default_factory=dict)  # the resolved {model, train, data}
    device: dict[str, Any] = field(default_factory=dict)  # device, type, name, precision, dtype, ...
    params: dict[str, Any] = field(default_factory=dict)  # total, non_embedding
    total_steps: int | None = None
    resumed_from: int | None = None  # the checkpoint's step when resuming
    command: list[str] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)  # on resume: {dotted key: [old, new]}
    world_size: int = 1
    parallel: str = "none"  # none | ddp | fsdp (train.parallel as resolved for this launch)
    backend: str | None = None  # the process group's backend for the training tensors: gloo | nccl
    global_batch: int | None = None  # sequences a step, all ranks: batch_size × grad_accum × world_size
    ranks: list[dict[str, Any]] = field(default_factory=list)  # per rank: device, host, memory (bytes)
    train_tokens: int | None = None  # tokens in the training split: epochs seen = tokens / train_tokens
    planned_epochs: float | None = None  # epochs the run will have seen at total_steps
    early_stop_patience: int = 0  # evals without a new best val loss before the run stops; 0: off


@dataclass(frozen=True, kw_only=True)
class StepEvent(Event):
    """Training figures at a log step (every `log_interval` steps and when the run stops)."""

    TYPE: ClassVar[str] = "step"
    step: int | None = None
    tokens: int | None = None  # seen so far, all ranks
    epochs: float | None = None  # tokens / the training split's tokens
    loss: float | None = None
    loss_ema: float | None = None
    lr: float | None = None
    grad_norm: float | None = None  # before clipping
    tok_per_s: float | None = None
    step_time: float | None = None  # seconds per step since the last log, evals and saves excluded
    router: dict[str, Any] | None = None  # per-layer lists, for routed FFNs
    memory: dict[str, Any] = field(default_factory=dict)  # bytes
    rank_memory: list[dict[str, Any]] | None = None  # under torchrun: every rank's `memory`, in rank order
    metrics: dict[str, Any] | None = None  # the objective's scalar figures (DPO: reward_margin, ...)


@dataclass(frozen=True, kw_only=True)
class EvalEvent(Event):
    TYPE: ClassVar[str] = "eval"
    step: int | None = None
    val_loss: float | None = None
    val_ppl: float | None = None
    val_bpb: float | None = None
    best_val_loss: float | None = None  # after this evaluation
    metrics: dict[str, Any] | None = None  # the objective's held-out figures (DPO: reward_accuracy, ...)

    @property
    def is_best(self) -> bool:
        return self.val_loss is not None and self.val_loss == self.best_val_loss


@dataclass(frozen=True, kw_only=True)
class SampleEvent(Event):
    TYPE: ClassVar[str] = "sample"
    step: int | None = None
    prompt: str = ""
    text: str = ""


@dataclass(frozen=True, kw_only=True)
class CheckpointEvent(Event):
    TYPE: ClassVar[str] = "checkpoint"
    step: int | None = None
    path: str = ""
    kind: str = "step"  # last | best | step


@dataclass(frozen=True, kw_only=True)
class WarningEvent(Event):
    TYPE: ClassVar[str] = "warning"
    step: int | None = None
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class StopEvent(Event):
    TYPE: ClassVar[str] = "stop"
    step: int | None = None
    reason: str = ""  # finished | early_stop | interrupted | nan | error
    resume_command: str | None = None  # when continuing makes sense
    detail: str = ""  # why, for people, where the reason alone does not say (early_stop)


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    TYPE: ClassVar[str] = "error"
    message: str = ""


@dataclass(frozen=True, kw_only=True)
class UnknownEvent(Event):
    """A record of a type this version does not know (written by a newer one); folds skip it."""

    name: str = ""

    @property
    def type(self) -> str:
        return self.name


EVENT_CLASSES: dict[str, type[Event]] = {
    cls.TYPE: cls
    for cls in (
        StartEvent,
        StepEvent,
        EvalEvent,
        SampleEvent,
        CheckpointEvent,
        WarningEvent,
        StopEvent,
        ErrorEvent,
    )
}


def json_safe(value: Any) -> Any:
    """Replace NaN/Inf (anywhere in nested data) by None so every line is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def encode(event: Event) -> dict[str, Any]:
    """The JSON object written for `event`: schema, type and time first, then its fields."""
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event) if f.name != "time"}
    return json_safe({"schema": SCHEMA, "type": event.type, "time": event.time, **fields})


def decode(record: dict[str, Any]) -> Event:
    """The typed event for one JSON object (see the module docstring for how lenient this is)."""
    kind = str(record.get("type"))
    when = _read(float, record.get("time"))
    cls = EVENT_CLASSES.get(kind)
    if cls is None:
        return UnknownEvent(name=kind, time=when)
    values = {}
    for name, hint in _field_types(cls).items():
        value = _read(hint, record.get(name))
        if value is not None:
            values[name] = value
    return cls(time=when, **values)


@functools.cache
def _field_types(cls: type[Event]) -> dict[str, Any]:
    hints = get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "time"}


def _read(hint: Any, value: Any) -> Any:
    """`value` if it has the type `hint` asks for (ints also as floats), else None (the field's default)."""
    if value is None:
        return None
    if get_origin(hint) in (Union, types.UnionType):
        kinds = [a for a in get_args(hint) if a is not type(None)]
        hint = kinds[0] if kinds else Any
    kind = get_origin(hint) or hint
    if kind is Any:
        return value
    if isinstance(value, bool) and kind is not bool:
        return None
    if kind is float:
        return float(value) if isinstance(value, int | float) else None
    if kind is int:
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return value if isinstance(value, int) else None
    return value if isinstance(value, kind) else None


class EventWriter:
    """Appends events to one file, a line each, flushed at once. The file is created by the first event, so a
    writer made for a run that then fails to start leaves no trace."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._fh: IO[str] | None = None

    def write(self, event: Event) -> None:
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - held open until close()
        self._fh.write(json.dumps(encode(event), allow_nan=False, separators=(",", ":")) + "\n")
        self._fh.flush()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """(the event records in `data`, how many non-empty lines were not one): complete lines only."""
    records: list[dict[str, Any]] = []
    bad = 0
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            bad += 1
            continue
        if isinstance(record, dict) and isinstance(record.get("type"), str):
            records.append(record)
        else:
            bad += 1
    return records, bad


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """Every event record of an events.jsonl as written (plain JSON objects), in order.

    A half-written last line (the trainer is mid-write, or was killed) and malformed lines are skipped; records
    of unknown types are kept for the caller to ignore. A missing file has no events.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    return parse_lines(data)[0]


def read_events(path: str | Path) -> list[Event]:
    """The events of an events.jsonl, typed (`decode`)."""
    return [decode(record) for record in read_records(path)]


__all__ = [
    "EVENT_CLASSES",
    "SCHEMA",
    "CheckpointEvent",
    "ErrorEvent",
    "EvalEvent",
    "Event",
    "EventWriter",
    "SampleEvent",
    "StartEvent",
    "StepEvent",
    "StopEvent",
    "UnknownEvent",
    "WarningEvent",
    "decode",
    "encode",
    "json_safe",
    "parse_lines",
    "read_events",
    "read_records",
]
