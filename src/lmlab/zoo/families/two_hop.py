"""Zoo family: in-context two-hop reasoning (``lmlab.tasks.two_hop``); the question is the query Src, the
answer the chain's End. Loss at the answer position only, as in the paper."""

from __future__ import annotations

import numpy as np

from lmlab.tasks.two_hop import EVAL_STREAM, TwoHopTask, TwoHopTaskConfig
from lmlab.zoo.families.base import LocalBatch, QuestionSet, ZooFamily


class TwoHopFamily(ZooFamily):
    name = "two-hop"
    version = "zoo-two-hop/1"
    code = ("lmlab.tasks.two_hop",)  # the task module whose code decides the data

    def __init__(self, n_questions: int, seed: int = 0):
        super().__init__(n_questions, seed)
        self.task = TwoHopTask(TwoHopTaskConfig(), seed=seed)
        self.n_tokens = self.task.d_vocab
        self.max_len = self.task.answer_index + 1

    def train_batch(self, n: int, rng: np.random.Generator) -> LocalBatch:
        t = self.task.sample(n, rng).tokens
        L = self.task.answer_index + 1
        x, y = t[:, :L], t[:, 1:L + 1]
        mask = np.zeros_like(x, dtype=bool)
        mask[:, -1] = True
        return LocalBatch(x, y, mask)

    def questions(self) -> QuestionSet:
        t = self.task.sample(self.n_questions, self.task.rng(EVAL_STREAM + 7)).tokens
        L = self.task.answer_index + 1
        x = t[:, :L]
        text = [" ".join(f"e{v}" for v in row) for row in x]
        return QuestionSet(x, np.full(len(x), L - 1), t[:, L], text, ["query"] * len(x))
