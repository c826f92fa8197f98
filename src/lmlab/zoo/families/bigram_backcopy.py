"""Zoo family: Bigram-Backcopy on Shakespeare's character bigrams (``lmlab.tasks.bigram_backcopy``). A
question is a prefix ending in a trigger character; its answer is the character before the trigger (the
backcopy rule, deterministic)."""

from __future__ import annotations

import numpy as np

from lmlab.tasks.bigram_backcopy import EVAL_STREAM, BigramBackcopyConfig, BigramBackcopyTask
from lmlab.zoo.families.base import LocalBatch, QuestionSet, ZooFamily, pad_rows

LENGTH = 32


class BigramBackcopyFamily(ZooFamily):
    name = "bigram-backcopy"
    version = "zoo-bigram-backcopy/1"
    code = ("lmlab.tasks.bigram_backcopy",)  # the task module whose code decides the data

    def __init__(self, n_questions: int, seed: int = 0):
        super().__init__(n_questions, seed)
        self.task = BigramBackcopyTask(BigramBackcopyConfig(seq_len=LENGTH), seed=seed)
        self.n_tokens = self.task.d_vocab
        self.max_len = LENGTH - 1

    def train_batch(self, n: int, rng: np.random.Generator) -> LocalBatch:
        s = self.task.sample(n, rng)
        return LocalBatch(s[:, :-1], s[:, 1:], np.ones((n, LENGTH - 1), dtype=bool))

    def questions(self) -> QuestionSet:
        rng = self.task.rng(EVAL_STREAM + 7)
        rows, answers = [], []
        while len(rows) < self.n_questions:
            s = self.task.sample(self.n_questions, rng)
            trig = self.task.is_trigger[s[:, 2:LENGTH - 1]]  # triggers at t >= 2 with a token after them
            for i in range(len(s)):
                ts = np.nonzero(trig[i])[0] + 2
                if len(ts) and len(rows) < self.n_questions:
                    t = int(ts[rng.integers(len(ts))])
                    rows.append(s[i, : t + 1])
                    answers.append(int(s[i, t - 1]))
        vocab = self.task.vocab + ["<bos>", "<d>"]
        text = ["".join(vocab[c] for c in r[1:]) for r in rows]
        return QuestionSet(pad_rows(rows), np.array([len(r) - 1 for r in rows]), np.array(answers), text,
                           ["backcopy"] * len(rows))
