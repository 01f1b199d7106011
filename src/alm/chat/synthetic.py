"""A synthetic task with checkable answers (like nanochat's): two-number arithmetic in a few phrasings.

Problems are drawn without replacement from every (a, op, b) with operands up to `max_operand` (subtractions
never go negative), so the train and test splits never share a problem, whatever the phrasing. The same problems
give preference pairs for DPO (the right answer over a near miss) and multiple-choice questions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from alm.errors import UsageError

PHRASINGS = (
    "What is {a} {op} {b}?",
    "Compute {a} {op} {b}.",
    "{a} {op} {b} = ?",
    "How much is {a} {word} {b}?",
)
WORDS = {"+": "plus", "-": "minus"}
NEAR_MISSES = (-10, -2, -1, 1, 2, 10)  # wrong answers a model that almost knows would give


@dataclass(frozen=True)
class Problem:
    question: str
    answer: int

    def messages(self) -> dict[str, Any]:
        """As fine-tuning data: {"messages": [user question, assistant answer]}."""
        return {
            "messages": [
                {"role": "user", "content": self.question},
                {"role": "assistant", "content": str(self.answer)},
            ]
        }

    def task(self) -> dict[str, Any]:
        """As an exact-match task line: {"prompt", "answer"}."""
        return {"prompt": self.question, "answer": str(self.answer)}

    def wrong_answers(self, rng: np.random.Generator, n: int) -> list[int]:
        """n distinct near misses (never negative, never the answer), in random order."""
        candidates = [self.answer + d for d in NEAR_MISSES if self.answer + d >= 0]
        return [int(x) for x in rng.choice(candidates, size=n, replace=False)]

    def preference(self, rng: np.random.Generator) -> dict[str, Any]:
        """As a preference pair: the answer chosen over a near miss."""
        (wrong,) = self.wrong_answers(rng, 1)
        return {"prompt": self.question, "chosen": str(self.answer), "rejected": str(wrong)}

    def choice(self, rng: np.random.Generator, n_choices: int = 4) -> dict[str, Any]:
        """As a multiple-choice task line: {"prompt", "choices", "answer": index of the right choice}."""
        choices = [self.answer, *self.wrong_answers(rng, n_choices - 1)]
        order = rng.permutation(n_choices)
        return {
            "prompt": self.question,
            "choices": [str(choices[i]) for i in order],
            "answer": int(np.flatnonzero(order == 0)[0]),
        }


def _pool(max_operand: int) -> list[tuple[int, str, int]]:
    values = range(max_operand + 1)
    return [(a, "+", b) for a in values for b in values] + [
        (a, "-", b) for a in values for b in values if a >= b
    ]


def arithmetic_splits(
    n_train: int, n_test: int, *, seed: int = 0, max_operand: int = 99
) -> tuple[list[Problem], list[Problem]]:
    """(train, test) problems: disjoint, and the same for the same arguments."""
    pool = _pool(max_operand)
    if n_train < 0 or n_test < 0 or n_train + n_test > len(pool):
        raise UsageError(
            f"cannot draw {n_train} train + {n_test} test problems: there are {len(pool)} with operands up to "
            f"{max_operand}",
            hint="ask for fewer problems",
        )
    rng = np.random.default_rng([seed, max_operand])
    picked = rng.permutation(len(pool))[: n_train + n_test]
    phrasing = rng.integers(len(PHRASINGS), size=picked.size)
    problems = []
    for index, style in zip(picked, phrasing, strict=True):
        a, op, b = pool[int(index)]
        question = PHRASINGS[int(style)].format(a=a, op=op, b=b, word=WORDS[op])
        problems.append(Problem(question, a + b if op == "+" else a - b))
    return problems[n_test:], problems[:n_test]


__all__ = ["PHRASINGS", "Problem", "arithmetic_splits"]
