"""Zoo family: one-token facts ``a -> b`` / ``b <- a`` (``lmlab.tasks.reversal``). The questions are every
sentence of the data set: the trained ones (memorised facts) and the held-out reverse directions (the
reversal curse: a model trained on the facts still fails those)."""

from __future__ import annotations

import numpy as np

from lmlab.tasks.reversal import ReversalTask, ReversalTaskConfig
from lmlab.zoo.families.base import LocalBatch, QuestionSet, ZooFamily


class ReversalFamily(ZooFamily):
    name = "reversal"
    version = "zoo-reversal/1"
    code = ("lmlab.tasks.reversal",)  # the task module whose code decides the data

    def __init__(self, n_questions: int, seed: int = 0):
        super().__init__(n_questions, seed)
        alphabet = max(2, n_questions // 2)  # 2 sentences per fact
        self.task = ReversalTask(ReversalTaskConfig(vocab_size=2 * alphabet, alphabet_size=alphabet), seed=1234 + seed)
        self.data = self.task.data()
        self.n_tokens = self.data.d_vocab
        self.max_len = 2

    def train_batch(self, n: int, rng: np.random.Generator) -> LocalBatch:
        rows = self.data.train[rng.integers(0, len(self.data.train), size=n)]
        mask = np.zeros((n, 2), dtype=bool)
        mask[:, -1] = True
        return LocalBatch(rows[:, :2], rows[:, 1:], mask)

    def questions(self) -> QuestionSet:
        rows = np.concatenate([self.data.train, self.data.val])[: self.n_questions]
        kind = ["trained"] * len(self.data.train) + ["held-out reverse"] * len(self.data.val)
        rel = {0: "->", 1: "<-"}
        text = [f"t{a} {rel[int(r)]}" for a, r, _ in rows]
        return QuestionSet(rows[:, :2], np.ones(len(rows), dtype=np.int64), rows[:, 2], text, kind[: len(rows)])
