"""What a zoo family provides (local token ids 0..n_tokens-1; the zoo shifts them into its range)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np


@dataclass
class LocalBatch:
    """Training rows: inputs x (n, L), targets y (n, L), loss mask (n, L) bool; L may differ per family."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray


@dataclass
class QuestionSet:
    """Questions: prompt tokens (n, L) padded with -1, the position whose next token is the answer, the
    answer token, a text rendering (for sentence embedders) and a finer label (e.g. trained / held out)."""

    tokens: np.ndarray
    answer_pos: np.ndarray
    answer: np.ndarray
    text: list[str]
    kind: list[str]


class ZooFamily:
    name: ClassVar[str]
    version: ClassVar[str]
    #: modules (besides the family's own) whose code decides its data; part of the zoo cache's key
    code: ClassVar[tuple[str, ...]] = ()
    n_tokens: int
    max_len: int  # longest x of a training row or question

    def __init__(self, n_questions: int, seed: int = 0):
        self.n_questions = n_questions
        self.seed = seed

    def train_batch(self, n: int, rng: np.random.Generator) -> LocalBatch:
        raise NotImplementedError

    def questions(self) -> QuestionSet:
        raise NotImplementedError


def pad_rows(rows: list[np.ndarray], value: int = -1) -> np.ndarray:
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), value, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out
