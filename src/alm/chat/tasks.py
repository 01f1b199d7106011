"""Task evals for chat models: exact match on prompt -> answer (greedy) and multiple choice by log-likelihood.

A task is a JSONL file, one example a line, all of one kind:

    {"prompt": "What is 2 + 3?", "answer": "5"}                                  exact match
    {"prompt": "What is 2 + 3?", "choices": ["4", "5", "6"], "answer": 1}        multiple choice (0-based index)

A prompt may also be a list of messages. Prompts render in the chat format followed by <|assistant|>.
Exact match: the greedy reply (up to <|end|>), without surrounding whitespace, equals the answer.
Multiple choice: the choice whose tokens and <|end|> are the likeliest reply, by summed log-probability
(lm-evaluation-harness's `acc`); a tie goes to the first. Built-in tasks by name: see `BUILTIN_TASKS`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch

from alm.chat.batches import Example, collate
from alm.chat.data import Record, read_records
from alm.chat.dpo import model_logprobs
from alm.chat.format import ChatTokens, Message, render_prompt
from alm.chat.reply import reply_tokens
from alm.chat.synthetic import arithmetic_splits
from alm.errors import DataError, UsageError
from alm.sample import SamplingConfig

if TYPE_CHECKING:
    from alm.model import Transformer
    from alm.tokenizer import Tokenizer

TaskKind = Literal["exact", "choice"]
TASK_HINT = (
    'each line must be {"prompt", "answer"} (exact match) or {"prompt", "choices": [...], "answer": index} '
    "(multiple choice), all lines of one kind"
)
ARITHMETIC_TEST_SIZE = 200  # the built-in arithmetic test split; `alm data chat-example` writes the same one


@dataclass(frozen=True)
class TaskExample:
    prompt: tuple[Message, ...]
    answer: str | int  # the text (exact) or the index of the right choice (choice)
    choices: tuple[str, ...] = ()
    line: int = 0


@dataclass(frozen=True)
class Task:
    name: str
    kind: TaskKind
    examples: list[TaskExample]


@dataclass(frozen=True)
class TaskResult:
    task: str
    kind: TaskKind
    examples: int
    correct: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.examples if self.examples else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "kind": self.kind,
            "examples": self.examples,
            "correct": self.correct,
            "accuracy": self.accuracy,
        }


def _task_example(line: Record) -> TaskExample:
    record = line.record
    if "prompt" not in record or "answer" not in record:
        raise line.fail(f"a task line needs prompt and answer (keys: {', '.join(sorted(record))})", TASK_HINT)
    prompt = line.messages("prompt", "user")
    answer = record["answer"]
    if "choices" not in record:
        if not isinstance(answer, str):
            raise line.fail(f"'answer' must be a string, not {type(answer).__name__}", TASK_HINT)
        return TaskExample(prompt, answer, (), line.number)
    choices = record["choices"]
    if not isinstance(choices, list) or len(choices) < 2 or not all(isinstance(c, str) for c in choices):
        raise line.fail("'choices' must be a list of at least two strings", TASK_HINT)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise line.fail(
            f"'answer' must be the index of the right choice (0..{len(choices) - 1}), got {answer!r}"
        )
    return TaskExample(prompt, answer, tuple(choices), line.number)


def load_task(path: str | Path) -> Task:
    """A task from a JSONL file (see the module doc); its name is the file's stem."""
    examples = [_task_example(line) for line in read_records(path, hint=TASK_HINT)]
    if not examples:
        raise DataError(f"{path} holds no task examples", hint=TASK_HINT)
    kinds = {"choice" if example.choices else "exact" for example in examples}
    if len(kinds) > 1:
        raise DataError(f"{path} mixes exact-match and multiple-choice lines", hint=TASK_HINT)
    return Task(Path(path).stem, "choice" if kinds == {"choice"} else "exact", examples)


def _arithmetic(kind: TaskKind) -> Task:
    _, test = arithmetic_splits(0, ARITHMETIC_TEST_SIZE)
    rng = np.random.default_rng(0)
    examples = []
    for problem in test:
        record = problem.choice(rng) if kind == "choice" else problem.task()
        prompt: tuple[Message, ...] = ({"role": "user", "content": record["prompt"]},)
        examples.append(TaskExample(prompt, record["answer"], tuple(record.get("choices", ()))))
    return Task("arithmetic" if kind == "exact" else "arithmetic-choice", kind, examples)


BUILTIN_TASKS: dict[str, Callable[[], Task]] = {
    "arithmetic": lambda: _arithmetic("exact"),
    "arithmetic-choice": lambda: _arithmetic("choice"),
}


def resolve_task(name_or_path: str | Path) -> Task:
    """A task JSONL file, or a built-in task by name."""
    if str(name_or_path) in BUILTIN_TASKS and not Path(name_or_path).is_file():
        return BUILTIN_TASKS[str(name_or_path)]()
    if not Path(name_or_path).is_file():
        raise UsageError(
            f"no task file or built-in task named {str(name_or_path)!r}",
            hint=f"give a .jsonl task file or one of: {', '.join(BUILTIN_TASKS)}",
        )
    return load_task(name_or_path)


def _exact(model, tokenizer, tokens: ChatTokens, example: TaskExample, max_new_tokens: int, device) -> bool:
    cfg = SamplingConfig(greedy=True, max_new_tokens=max_new_tokens)
    ids = list(reply_tokens(model, render_prompt(example.prompt, tokenizer), cfg, tokens, device=device))
    return tokenizer.decode(ids).strip() == str(example.answer).strip()


def _choice(model, tokenizer, tokens: ChatTokens, example: TaskExample, device, source: str) -> bool:
    prompt = render_prompt(example.prompt, tokenizer)
    rows = []
    for choice in example.choices:
        reply = [*tokenizer.encode(choice), tokens.end]
        ids = np.asarray(prompt + reply, dtype=np.int64)
        mask = np.arange(ids.size) >= len(prompt)
        rows.append(Example(ids, mask, example.line))
    longest = max(row.inputs for row in rows)
    if longest > model.config.max_seq_len:
        raise DataError(
            f"{source}:{example.line}: a choice with its prompt is {longest + 1} tokens, more than the model's "
            f"context of {model.config.max_seq_len}"
        )
    x, y = collate(rows, tokenizer.pad_id, longest)
    scores = model_logprobs(model, x.to(device), y.to(device))
    return int(scores.argmax().item()) == example.answer


def evaluate_task(
    model: Transformer,
    tokenizer: Tokenizer,
    task: Task,
    *,
    device: torch.device | str,
    max_new_tokens: int = 32,
    limit: int | None = None,
    progress: Callable[[int, int], object] | None = None,
) -> TaskResult:
    """Score `task` (the first `limit` examples if given); `progress(done, total)` is called after each."""
    tokens = ChatTokens.of(tokenizer)
    examples = task.examples[:limit] if limit is not None else task.examples
    correct = 0
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for done, example in enumerate(examples, 1):
                if task.kind == "choice":
                    correct += _choice(model, tokenizer, tokens, example, device, task.name)
                else:
                    correct += _exact(model, tokenizer, tokens, example, max_new_tokens, device)
                if progress is not None:
                    progress(done, len(examples))
    finally:
        model.train(was_training)
    return TaskResult(task.name, task.kind, len(examples), correct)


__all__ = [
    "BUILTIN_TASKS",
    "Task",
    "TaskExample",
    "TaskResult",
    "evaluate_task",
    "load_task",
    "resolve_task",
]
