"""Zoo family: a binary switching Markov source of order 3 (``lmlab.tasks.markov``): x_n = x_{n-3} flipped
with probability 0.1. A question is a prefix of random length; its answer is the most likely next symbol
(x_{n-3}), which a model that learnt the source predicts exactly."""

from __future__ import annotations

import numpy as np

from lmlab.tasks.markov import EVAL_STREAM, MarkovConfig, MarkovSource
from lmlab.zoo.families.base import LocalBatch, QuestionSet, ZooFamily, pad_rows

LENGTH = 32


class MarkovFamily(ZooFamily):
    name = "markov"
    version = "zoo-markov/1"
    code = ("lmlab.tasks.markov",)  # the task module whose code decides the data

    def __init__(self, n_questions: int, seed: int = 0):
        super().__init__(n_questions, seed)
        self.source = MarkovSource(MarkovConfig(kind="switching", order=3, delta=0.1), seed=seed)
        self.n_tokens = 2
        self.max_len = LENGTH - 1

    def train_batch(self, n: int, rng: np.random.Generator) -> LocalBatch:
        s = self.source.sample(n, LENGTH, rng).astype(np.int64)
        mask = np.zeros((n, LENGTH - 1), dtype=bool)
        mask[:, self.source.k - 1:] = True  # from here on the next symbol follows the rule
        return LocalBatch(s[:, :-1], s[:, 1:], mask)

    def questions(self) -> QuestionSet:
        rng = self.source.rng(EVAL_STREAM + 7)
        s = self.source.sample(self.n_questions, LENGTH - 1, rng).astype(np.int64)
        k = self.source.k
        lengths = rng.integers(k + 1, LENGTH, size=self.n_questions)
        rows = [s[i, :n] for i, n in enumerate(lengths)]
        answer = np.array([int(np.argmax(self.source.transition[int((r[-k:] * 2 ** np.arange(k - 1, -1, -1)).sum())]))
                           for r in rows])
        text = ["".join(map(str, r)) for r in rows]
        return QuestionSet(pad_rows(rows), lengths - 1, answer, text, ["next symbol"] * len(rows))
