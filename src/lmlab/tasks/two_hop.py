"""In-context two-hop reasoning with distracting chains (Guo et al. 2025, arXiv 2502.13913).

Encoding (version ``two_hop/1``, as in the paper's code ``GuoTianYu2000/twohopIC``)::

    vocabulary: BOS=0, EDGE=1, ANS=2, EOS=3 (only EOS is used, as padding); entities 4..33
    K chains Src -> Brg -> End with 3K distinct entities drawn without replacement
    context: the 2K premises (Src, Brg) and (Brg, End) as adjacent token pairs, interleaved
             uniformly at random while keeping each chain's order (premise 1 before premise 2)
    query:   [Src, End] of one chain picked uniformly, then 3 EOS pads
    x = seq[:-1], y = seq[1:]; the loss counts only at index 4K, where x is Src and y is End.

With K=5 the sequence has 25 tokens, x has 24, chance accuracy is 1/5 and chance loss ln 5.
The paper's example (target chain 13 -> 33 -> 5)::

    9 14 26 8 17 4 21 10 4 18 14 28 10 24 8 20 13 33 33 5 | 13 5 | 3 3 3

>>> task = TwoHopTask(TwoHopTaskConfig())
>>> s = task.sample(2, np.random.default_rng(0))
>>> s.tokens.shape, task.n_ctx, task.answer_index
((2, 25), 24, 20)
>>> bool((s.tokens[:, 21] == s.chains[np.arange(2), s.query_chain, 2]).all())
True

Batches are a pure function of ``(seed, step)``, so training is reproducible and resumable.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lmlab.config import Config, ConfigError
from lmlab.train.loop import Batch

VERSION = "two_hop/1"
BOS, EDGE, ANS, EOS = 0, 1, 2, 3
N_SPECIAL = 4
EVAL_STREAM = 2**31  # seeds for eval sets live far from the training steps


@dataclass(frozen=True)
class TwoHopTaskConfig(Config):
    n_chains: int = 5  # K: one target chain and K-1 distractors
    n_entities: int = 30
    n_pad: int = 3

    def validate(self) -> None:
        if self.n_chains < 1:
            raise ConfigError(f"TwoHopTaskConfig.n_chains must be >= 1, got {self.n_chains}")
        if 3 * self.n_chains > self.n_entities:
            raise ConfigError(
                f"TwoHopTaskConfig.n_entities ({self.n_entities}) must be >= 3 * n_chains ({3 * self.n_chains}): "
                "each chain needs three distinct entities"
            )
        if self.n_pad < 1:
            raise ConfigError(f"TwoHopTaskConfig.n_pad must be >= 1, got {self.n_pad}")


@dataclass
class TwoHopSample:
    """A batch of sequences with the structure needed for analysis.

    ``tokens`` (n, L+1); ``chains`` (n, K, 3) entity ids (Src, Brg, End);
    ``query_chain`` (n,); ``premise_pos`` (n, K, 2): position of the first token of premise 1
    (Src, Brg) and premise 2 (Brg, End) of each chain.
    """

    tokens: np.ndarray
    chains: np.ndarray
    query_chain: np.ndarray
    premise_pos: np.ndarray

    def end_pos(self) -> np.ndarray:
        """(n, K) position of each chain's End token in the context."""
        return self.premise_pos[:, :, 1] + 1


class TwoHopTask:
    version = VERSION

    def __init__(self, cfg: TwoHopTaskConfig, seed: int = 0):
        self.cfg = cfg
        self.seed = seed
        self.d_vocab = N_SPECIAL + cfg.n_entities
        self.context_len = 4 * cfg.n_chains
        self.answer_index = self.context_len  # index in x where Src sits and End is the target
        self.n_ctx = self.context_len + 1 + cfg.n_pad  # length of x

    def sample(self, n: int, rng: np.random.Generator) -> TwoHopSample:
        K = self.cfg.n_chains
        ents = np.argsort(rng.random((n, self.cfg.n_entities)), axis=1)[:, : 3 * K] + N_SPECIAL
        chains = ents.reshape(n, K, 3)
        # Uniform interleaving that keeps each chain's order: a random permutation of the
        # multiset {0,0,1,1,...,K-1,K-1}; the j-th occurrence of c is premise j of chain c.
        labels = np.repeat(np.arange(K), 2)[None, :].repeat(n, axis=0)
        labels = np.take_along_axis(labels, np.argsort(rng.random((n, 2 * K)), axis=1), axis=1)
        onehot = labels[:, :, None] == np.arange(K)[None, None, :]
        occurrence = (np.cumsum(onehot, axis=1) - 1)[onehot].reshape(n, 2 * K)  # 0 or 1
        rows = np.arange(n)[:, None]
        first = chains[rows, labels, occurrence]  # premise (Src,Brg) or (Brg,End): first token
        second = chains[rows, labels, occurrence + 1]
        context = np.stack([first, second], axis=2).reshape(n, 4 * K)
        premise_pos = np.zeros((n, K, 2), dtype=np.int64)
        premise_pos[rows, labels, occurrence] = 2 * np.arange(2 * K)[None, :]
        query = rng.integers(0, K, size=n)
        q_chain = chains[np.arange(n), query]
        tokens = np.concatenate(
            [context, q_chain[:, [0, 2]], np.full((n, self.cfg.n_pad), EOS)], axis=1
        ).astype(np.int64)
        return TwoHopSample(tokens, chains, query, premise_pos)

    def rng(self, step: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence([self.seed, step]))

    def to_batch(self, s: TwoHopSample, trim: bool = False) -> Batch:
        """x, y and the loss mask. ``trim=True`` drops the positions after the answer index: with causal
        attention and the loss only at the answer they change nothing but cost 1/8 of the compute."""
        tokens = torch.from_numpy(s.tokens)
        x, y = tokens[:, :-1], tokens[:, 1:]
        if trim:
            x, y = x[:, : self.answer_index + 1], y[:, : self.answer_index + 1]
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[:, self.answer_index] = True
        return Batch(x, y, mask, positions=torch.tensor([self.answer_index]))

    def batch(self, step: int, batch_size: int, trim: bool = False) -> Batch:
        """Training batch for ``step``: fresh data every step, a pure function of (seed, step)."""
        return self.to_batch(self.sample(batch_size, self.rng(step)), trim=trim)

    def eval_sample(self, n: int, index: int = 0) -> TwoHopSample:
        return self.sample(n, self.rng(EVAL_STREAM + index))
